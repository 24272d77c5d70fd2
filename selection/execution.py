"""The execution matrix: every distinct candidate, and the unpatched base, against every test, in sandboxes.

One container per candidate row by default: the patch is applied, the tests run one after another with
`Sandbox.reset()` and the patch re-applied between them. Reset kills leftover processes, restores
tracked files and removes untracked ones created since the start; what survives it lies outside the
repository (/tmp) or is ignored by it (__pycache__), so every test writes its files again, and a test
that breaks the repository costs a new container, not the next test's cell. `reuse=False` starts one
container per (candidate, test) pair instead: the same cells, at the price benchmarks/matrix_reuse.py
measures.

Cells are cached by (image, patch hash, test id) in a `MatrixCache` as they finish (the image by its
content: `cache_context`), so a killed run resumes, and a candidate whose cells are all cached starts no
container. Infrastructure failures and patches that do not apply become cells with an `error`, never
verdicts, and are not cached as results.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, Field

from patchfleet.errors import InfrastructureError, SandboxError
from patchfleet.executor import Executor, LocalExecutor
from patchfleet.sandbox.base import Network, Sandbox, SandboxSpec
from patchfleet.selection.matrix_cache import MatrixCache
from patchfleet.selection.model import (
    BASE,
    Candidate,
    CandidateFlag,
    Cell,
    Matrix,
    TestCase,
    content_hash,
)
from patchfleet.selection.outputs import cap_output, normalise_output, output_hash

PATCH_ERROR = "patch does not apply"
# Every test runs with these, in both modes, so that a cell does not depend on which tests ran before it
# in the same container or on chance: no bytecode written (a module compiled by an earlier test would
# not print its compile-time SyntaxWarnings again: seen on sympy), and one hash seed (set and dict
# order in printed output). The agent's own commands run without bytecode too (agent/config).
# Cached cells were made with these: changing them means a new cache folder.
TEST_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
# Compare only mtime and size against the index, not inode and ctime, which differ in every new
# container: otherwise the first `git reset --hard` re-reads the whole tree (4-5 s on sympy, against 0.3 s).
FAST_STAT = "git config core.checkStat minimal && git config core.trustctime false"
LOG_CAP = 4096  # characters of the apply log kept per candidate
# Part of every cache key beside the image: a cell depends on how tests are run, not only on what runs.
# Bump CELL_FORMAT when running changes in a way TEST_ENV does not show.
CELL_FORMAT = 1
ERROR = "error"

Log = Callable[[str], None]


class SandboxStarter(Protocol):
    """What run_matrix needs of a backend (DockerBackend satisfies it)."""

    def start(self, spec: SandboxSpec) -> Sandbox: ...


class CandidateCheck(BaseModel):
    """What applying one candidate at the base commit showed: how it applied, and its changed files.

    `files` (path -> content after the patch, None when deleted) is kept in memory only; the cache
    stores the flags and `ast_key` computed from it."""

    candidate_id: str
    applied: bool
    method: str | None = None  # a PatchMethod value, "base" for the BASE row, "empty"
    log: str = ""
    flags: tuple[CandidateFlag, ...] = ()
    ast_key: str | None = None
    files: dict[str, str | None] = Field(default_factory=dict, exclude=True)


class MatrixStats(BaseModel):
    """What producing one matrix cost: containers started, cells run and taken from the cache."""

    containers: int = 0
    cells_run: int = 0
    cells_cached: int = 0
    cell_errors: int = 0
    wall_time: float = 0.0
    # seconds summed over workers, by phase: where the time of a matrix goes
    phase_seconds: dict[str, float] = Field(default_factory=dict)


class MatrixRun(BaseModel):
    """A matrix, the apply checks of its candidates (and BASE), and what it cost."""

    matrix: Matrix
    checks: dict[str, CandidateCheck] = Field(default_factory=dict)
    stats: MatrixStats = Field(default_factory=MatrixStats)

    def annotated(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates with the flags and `ast_key` their checks found."""
        out = []
        for candidate in candidates:
            check = self.checks.get(candidate.id)
            if check is None:
                out.append(candidate)
                continue
            flags = tuple(dict.fromkeys((*candidate.flags, *check.flags)))
            out.append(
                candidate.model_copy(update={"flags": flags, "ast_key": check.ast_key or candidate.ast_key})
            )
        return out


def cache_context(image: str, sandbox_env: dict[str, str] | None = None, image_id: str | None = None) -> str:
    """The image as the cache keys it, plus how tests run in it (environment, format). Our images' tags
    are content hashes: the tag. An image whose name can point at other content (an official one, re-pulled
    or rebuilt under the same name) is keyed by its content id, `image_id`, as its verdicts are
    (`runs.evaluation.official_verdict_key`); its sandbox environment (conda's) is keyed too."""
    how = content_hash(json.dumps(TEST_ENV, sort_keys=True), str(CELL_FORMAT), length=8)
    context = f"{image_id or image}#{how}"
    if sandbox_env:  # only then: the cells of our images keep their keys
        context += f"+{content_hash(json.dumps(sandbox_env, sort_keys=True), length=8)}"
    return context


def patch_hash(patch: str) -> str:
    """The cache key of a patch: its exact text (whitespace can decide whether it applies)."""
    return content_hash("patch", patch)


@dataclass
class _Row:
    candidate_id: str
    patch: str
    tests: list[TestCase]  # the tests whose cells are not cached
    check: CandidateCheck | None  # from the cache, or None
    cells: list[Cell] = field(default_factory=list)
    # what running the row cost; kept on the row, which comes back from wherever it ran
    containers: int = 0
    phases: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Runner:
    """Runs rows; holds nothing that changes, so a copy can run rows in another process (Ray)."""

    instance_id: str
    image: str
    backend: SandboxStarter
    cache: MatrixCache
    reuse: bool
    log: Log | None
    base_commit: str | None
    prepare: Callable[[], object] | None = None  # before each container start (the image, on a node)
    sandbox_env: dict[str, str] = field(default_factory=dict)  # every container's (official: conda's)
    image_id: str | None = None  # the image's content id when its name is not one (official images)

    @property
    def context(self) -> str:
        return cache_context(self.image, self.sandbox_env, self.image_id)

    @contextlib.contextmanager
    def _timed(self, row: _Row, phase: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            row.phases[phase] = row.phases.get(phase, 0.0) + time.monotonic() - started

    def _start(self, row: _Row) -> Sandbox:
        spec = SandboxSpec(
            image=self.image,
            labels={"role": "selection", "task": self.instance_id, "candidate": row.candidate_id},
            network=Network.NONE,
            base_commit=self.base_commit,
            env=dict(self.sandbox_env),
        )
        row.containers += 1
        with self._timed(row, "start"):
            if self.prepare is not None:
                self.prepare()
            return self.backend.start(spec)

    def _say(self, message: str) -> None:
        if self.log is not None:
            self.log(f"{self.instance_id}: {message}")

    def run_row(self, row: _Row) -> _Row:
        """Fill `row.check` and `row.cells` for the row's uncached tests, caching each as it is known;
        returns the row (a copy of it when it ran in another process).

        Only the sandbox's failures become error cells; the cache's own (a full disk) propagate."""
        self._fill(row)
        return row

    def _fill(self, row: _Row) -> None:
        if row.check is not None and not row.check.applied:
            row.cells = [self._error_cell(row, test, PATCH_ERROR) for test in row.tests]
            return
        if not row.tests and row.check is not None:
            return
        sandbox: Sandbox | None = None
        fresh = False  # the sandbox holds the patch as first applied, no test has run in it yet
        key = patch_hash(row.patch)
        try:
            # an empty test list still needs one container: the check is not cached (a merged export)
            for test in row.tests or [None]:
                if not fresh:
                    try:
                        sandbox, new_check = self._prepare(sandbox, row)
                    except (InfrastructureError, OSError) as exc:
                        sandbox = None
                        self._say(f"{row.candidate_id}: infrastructure failure ({exc})")
                        if test is not None:
                            row.cells.append(self._error_cell(row, test, f"{type(exc).__name__}: {exc}"))
                        continue
                    if new_check is not None:
                        self.cache.put_check(
                            self.instance_id,
                            self.context,
                            key,
                            new_check.model_dump(mode="json"),
                        )
                        row.check = new_check
                    if row.check is not None and not row.check.applied:
                        row.cells = [self._error_cell(row, t, PATCH_ERROR) for t in row.tests]
                        return
                if test is None:
                    return
                fresh = False
                try:
                    with self._timed(row, "test"):
                        cell = self._run_test(sandbox, row, test)
                except (InfrastructureError, OSError) as exc:
                    row.cells.append(self._error_cell(row, test, f"{type(exc).__name__}: {exc}"))
                    self._say(
                        f"{row.candidate_id}: infrastructure failure ({exc}); next test in a new container"
                    )
                    sandbox = self._close(row, sandbox)
                    continue
                self.cache.put_cell(self.context, key, cell)
                row.cells.append(cell)
                if not self.reuse:
                    sandbox = self._close(row, sandbox)
        finally:
            self._close(row, sandbox)

    def _prepare(self, sandbox: Sandbox | None, row: _Row) -> tuple[Sandbox, CandidateCheck | None]:
        """A sandbox with the row's patch on a clean tree, and the check when it is new: `sandbox` reset
        and re-patched, or a new container when there is none or the reset failed (a test may have
        broken the repository or the container; that must not cost the next test its cell)."""
        if sandbox is not None:
            try:
                with self._timed(row, "reset"):
                    sandbox.reset()
                    self._reapply(sandbox, row)
                return sandbox, None
            except (InfrastructureError, OSError) as exc:
                self._say(f"{row.candidate_id}: reset failed ({exc}); going on in a new container")
                self._close(row, sandbox)
        sandbox = self._start(row)
        try:
            if self.reuse:
                with self._timed(row, "start"):
                    sandbox.exec(FAST_STAT, timeout=60)  # in .git/config: only git itself sees it
            with self._timed(row, "apply"):
                return sandbox, self._apply_and_check(sandbox, row)
        except BaseException:
            self._close(row, sandbox)
            raise

    def _close(self, row: _Row, sandbox: Sandbox | None) -> None:
        if sandbox is not None:
            # the reaper removes what could not be closed here; the cells are recorded either way
            with self._timed(row, "close"), contextlib.suppress(InfrastructureError, OSError):
                sandbox.close()
        return None

    def _apply_and_check(self, sandbox: Sandbox, row: _Row) -> CandidateCheck | None:
        """Apply the row's patch in a new sandbox; return the check when it was not known before."""
        if row.check is not None:
            self._reapply(sandbox, row)
            return None
        if row.candidate_id == BASE:
            return CandidateCheck(candidate_id=BASE, applied=True, method="base")
        return self._check(sandbox, row)

    def _check(self, sandbox: Sandbox, row: _Row) -> CandidateCheck:
        from patchfleet.selection import normalize

        result = sandbox.apply_patch(row.patch)
        method = result.method.value if result.method else ("empty" if result.applied else None)
        if not result.applied:
            return CandidateCheck(
                candidate_id=row.candidate_id,
                applied=False,
                log=result.log[-LOG_CAP:],
                flags=(CandidateFlag.DOES_NOT_APPLY,),
            )
        files: dict[str, str | None] = {}
        for path, exists in normalize.changed_files(row.patch).items():
            try:
                files[path] = sandbox.read_file(path).decode("utf-8", "surrogateescape") if exists else None
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                files[path] = None
        broken = any(not normalize.parses(path, text) for path, text in files.items())
        return CandidateCheck(
            candidate_id=row.candidate_id,
            applied=True,
            method=method,
            log=result.log[-LOG_CAP:],
            flags=(CandidateFlag.SYNTAX_ERROR,) if broken else (),
            ast_key=normalize.ast_key(files),
            files=files,
        )

    def _reapply(self, sandbox: Sandbox, row: _Row) -> None:
        if row.patch.strip():
            result = sandbox.apply_patch(row.patch)
            if not result.applied:
                raise SandboxError(f"the patch applied once but not again:\n{result.log[-LOG_CAP:]}")

    def _run_test(self, sandbox: Sandbox, row: _Row, test: TestCase) -> Cell:
        for path, content in test.files.items():
            sandbox.write_file(path, content)
        result = sandbox.exec(test.command, timeout=test.timeout, env=TEST_ENV)
        normalised = normalise_output(result.output)
        cell = Cell(
            instance_id=self.instance_id,
            candidate_id=row.candidate_id,
            test_id=test.id,
            exit_code=result.exit_code,
            output=cap_output(normalised),
            output_hash=output_hash(normalised),
            duration=round(result.duration, 3),
            timed_out=result.timed_out,
        )
        return cell

    def _error_cell(self, row: _Row, test: TestCase, error: str) -> Cell:
        return Cell(
            instance_id=self.instance_id,
            candidate_id=row.candidate_id,
            test_id=test.id,
            exit_code=None,
            error=error,
        )


def run_matrix(
    instance_id: str,
    candidates: Sequence[Candidate],
    tests: Sequence[TestCase],
    *,
    image: str,
    backend: SandboxStarter,
    cache: MatrixCache,
    reuse: bool = True,
    workers: int = 2,
    log: Log | None = None,
    base_commit: str | None = None,
    executor: Executor | None = None,
    prepare: Callable[[], object] | None = None,
    sandbox_env: dict[str, str] | None = None,
    image_id: str | None = None,
) -> MatrixRun:
    """Run every distinct candidate and BASE against every test; cached cells are not run again.

    backend: anything with `start(SandboxSpec) -> Sandbox` (a DockerBackend). reuse: one container per
    candidate with reset between tests (True) or one per (candidate, test) pair (False).
    workers: candidate rows run in parallel. base_commit: None takes the image's HEAD.
    executor: where rows run (default: threads of this process; a Ray executor sends each row, a
    container and its tests, to a node of the cluster). prepare: called before each container start
    (with Ray: makes sure the image is on the row's node). sandbox_env: every container's environment
    (an official image's conda env), part of the cells' cache key. image_id: the image's content id
    when its name is not a content hash (an official image): the cells' key instead of the name.
    """
    started = time.monotonic()
    distinct = list({c.id: c for c in reversed(candidates)}.values())[::-1]  # first of each id, in order
    tests = list({t.id: t for t in tests}.values())
    env = dict(sandbox_env or {})
    runner = _Runner(instance_id, image, backend, cache, reuse, log, base_commit, prepare, env, image_id)
    rows: list[_Row] = []
    cached: list[Cell] = []
    for candidate_id, patch in [(BASE, ""), *((c.id, c.patch) for c in distinct)]:
        key = patch_hash(patch)
        found = cache.get_check(instance_id, runner.context, key)
        check = CandidateCheck.model_validate({**found, "candidate_id": candidate_id}) if found else None
        row = _Row(candidate_id, patch, [], check)
        for test in tests:
            cell = cache.get_cell(instance_id, runner.context, key, test.id)
            if cell is None or (check is not None and not check.applied):
                row.tests.append(test)
            else:
                cached.append(
                    cell.model_copy(update={"candidate_id": candidate_id, "instance_id": instance_id})
                )
        rows.append(row)
    todo = [row for row in rows if row.tests or row.check is None]
    if todo:
        ran = (executor or LocalExecutor()).map(runner.run_row, todo, workers=max(1, workers))
        by_id = {row.candidate_id: row for row in ran}
        rows = [by_id.get(row.candidate_id, row) for row in rows]
    phases: dict[str, float] = {}
    for row in rows:
        for phase, seconds in row.phases.items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    by_key = {(c.candidate_id, c.test_id): c for c in cached}
    by_key.update({(c.candidate_id, c.test_id): c for row in rows for c in row.cells})
    cells = [
        by_key[(row.candidate_id, t.id)] for row in rows for t in tests if (row.candidate_id, t.id) in by_key
    ]
    errors = sum(1 for c in cells if c.error)
    stats = MatrixStats(
        containers=sum(row.containers for row in rows),
        phase_seconds={k: round(v, 3) for k, v in sorted(phases.items())},
        cells_run=sum(1 for row in rows for c in row.cells if c.error is None),
        cells_cached=len(cached),
        cell_errors=errors,
        wall_time=round(time.monotonic() - started, 3),
    )
    if log is not None:
        log(
            f"{instance_id}: {len(rows)} rows x {len(tests)} tests: {stats.cells_run} run, "
            f"{stats.cells_cached} cached, {errors} errors, {stats.containers} containers"
        )
    checks = {row.candidate_id: row.check for row in rows if row.check is not None}
    return MatrixRun(matrix=Matrix(instance_id=instance_id, cells=cells), checks=checks, stats=stats)
