"""The execution matrix on a real repository in real containers: cells, flags, behaviour hashes, the
cache (a second run starts no container), and one container per row giving the same cells as one per pair."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from patchfleet.selection.execution import (
    PATCH_ERROR,
    run_matrix,
)
from patchfleet.selection.matrix_cache import MatrixCache
from patchfleet.selection.model import (
    BASE,
    Candidate,
    CandidateFlag,
    Contract,
    TestCase,
    TestKind,
    content_hash,
)
from patchfleet.selection.outputs import behaviour_hash

pytestmark = pytest.mark.docker

INSTANCE = "local__calc-1"


class CountingBackend:
    """The real backend, counting the containers it starts (an honest wrapper, no patching)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.started = 0
        self._lock = threading.Lock()

    def start(self, spec):
        with self._lock:
            self.started += 1
        return self.backend.start(spec)


def _patch(run_git, sample_repo: Path, tmp_path: Path, name: str, old: str, new: str) -> str:
    """A real `git diff` of calc.py with `old` replaced by `new`."""
    clone = tmp_path / name
    shutil.copytree(sample_repo, clone)
    source = clone / "calc.py"
    source.write_text(source.read_text().replace(old, new))
    return run_git(clone, "diff")


def _candidate(patch: str) -> Candidate:
    return Candidate(id=content_hash(patch), instance_id=INSTANCE, patch=patch)


@pytest.fixture
def candidates(run_git, sample_repo, tmp_path) -> dict[str, Candidate]:
    right = _patch(run_git, sample_repo, tmp_path, "right", "return a - b", "return a + b")
    variant = _patch(run_git, sample_repo, tmp_path, "variant", "return a - b", "return b + a")
    wrong = _patch(run_git, sample_repo, tmp_path, "wrong", "return a - b", "return a * b")
    syntax = _patch(run_git, sample_repo, tmp_path, "syntax", "return a - b", "return a +")
    broken = right.replace("-    return a - b", "-    return a / b")
    return {
        name: _candidate(patch)
        for name, patch in [
            ("right", right),
            ("variant", variant),
            ("wrong", wrong),
            ("syntax", syntax),
            ("broken", broken),
        ]
    }


def _tests() -> dict[str, TestCase]:
    exit_code = TestCase.make(
        instance_id=INSTANCE,
        kind=TestKind.GENERATED,
        contract=Contract.EXIT_CODE,
        command="PYTHONPATH=. python3 /tmp/sel/check_add.py",
        files={
            "/tmp/sel/check_add.py": "import sys\nfrom calc import add\n"
            "sys.exit(0 if add(2, 3) == 5 else 2)\n"
        },
        timeout=30,
    )
    behaviour = TestCase.make(
        instance_id=INSTANCE,
        kind=TestKind.HARVESTED,
        contract=Contract.BEHAVIOUR,
        command="PYTHONPATH=. python3 /tmp/sel/reproduce.py",
        files={
            # volatile parts (an address, a timing, a pid) that normalisation must strip
            "/tmp/sel/reproduce.py": (
                "import os, time\nfrom calc import add\nstart = time.time()\nprint(add(2, 3))\n"
                "print(object())\n"
                "print(f'pid {os.getpid()} took {time.time() - start + 0.001:.4f} seconds')\n"
            )
        },
        timeout=30,
    )
    regression = TestCase.make(
        instance_id=INSTANCE,
        kind=TestKind.REGRESSION,
        contract=Contract.PASS_FAIL,
        command="python3 -c 'import test_calc; test_calc.test_add()'",
        timeout=30,
    )
    return {"exit": exit_code, "behaviour": behaviour, "regression": regression}


def test_matrix_cells_flags_clusters_cache_and_reuse(docker_backend, repo_image, candidates, tmp_path):
    tests = _tests()
    backend = CountingBackend(docker_backend)
    cache = MatrixCache(tmp_path / "cache")
    lines: list[str] = []
    run = run_matrix(
        INSTANCE,
        list(candidates.values()),
        list(tests.values()),
        image=repo_image,
        backend=backend,
        cache=cache,
        workers=2,
        log=lines.append,
    )
    matrix = run.matrix
    ids = {name: c.id for name, c in candidates.items()}

    # one container per row, except the patch that does not apply: its check's container only
    assert backend.started == run.stats.containers == 6, [c.error for c in matrix.cells][:2]
    exit_test, behaviour, regression = tests["exit"].id, tests["behaviour"].id, tests["regression"].id
    assert matrix.get(BASE, exit_test).exit_code == 2
    assert matrix.get(ids["right"], exit_test).exit_code == 0
    assert matrix.get(ids["variant"], exit_test).exit_code == 0
    assert matrix.get(ids["wrong"], exit_test).exit_code == 2
    assert matrix.get(ids["syntax"], exit_test).exit_code == 1
    assert matrix.get(BASE, regression).exit_code != 0
    assert matrix.get(ids["right"], regression).exit_code == 0
    broken_cell = matrix.get(ids["broken"], exit_test)
    assert broken_cell.exit_code is None and broken_cell.error == PATCH_ERROR
    assert len(matrix.cells) == 6 * 3

    # normalised: no address, pid or timing left, so equal behaviour hashes equal
    right_out = matrix.get(ids["right"], behaviour).output
    assert right_out.startswith("5\n<object object at 0x?>\npid <pid> took <t> seconds"), right_out

    # behaviour: equal changes hash equal (evidence.py clusters by these), another change does not
    def signature(candidate_id, test):
        found = matrix.get(candidate_id, test if isinstance(test, str) else test.id)
        return (found.exit_code, behaviour_hash(found.output, found.output_hash))

    assert signature(ids["right"], tests["behaviour"]) == signature(ids["variant"], tests["behaviour"])
    assert signature(ids["right"], tests["behaviour"]) != signature(ids["wrong"], tests["behaviour"])
    # the same failure as BASE's (same traceback, same exit code) is no change of behaviour
    assert signature(ids["wrong"], regression) == signature(BASE, regression)
    assert signature(ids["right"], regression) != signature(BASE, regression)

    # checks: how each applied, the flags and the AST key
    checks = run.checks
    assert checks[ids["right"]].method == "git apply" and checks[ids["right"]].flags == ()
    assert checks[ids["syntax"]].flags == (CandidateFlag.SYNTAX_ERROR,)
    assert not checks[ids["broken"]].applied and checks[ids["broken"]].flags == (
        CandidateFlag.DOES_NOT_APPLY,
    )
    assert "calc.py" in checks[ids["right"]].files
    assert checks[ids["right"]].ast_key and checks[ids["right"]].ast_key != checks[ids["variant"]].ast_key
    annotated = {c.id: c for c in run.annotated(list(candidates.values()))}
    assert not annotated[ids["broken"]].usable
    assert CandidateFlag.SYNTAX_ERROR in annotated[ids["syntax"]].flags
    assert any("containers" in line for line in lines)

    # second run over the same cache: every cell and check cached, no container started
    again = CountingBackend(docker_backend)
    rerun = run_matrix(
        INSTANCE,
        list(candidates.values()),
        list(tests.values()),
        image=repo_image,
        backend=again,
        cache=MatrixCache(tmp_path / "cache"),
    )
    assert again.started == 0 and rerun.stats.containers == 0
    assert rerun.stats.cells_cached == 5 * 3
    assert _comparable(rerun.matrix) == _comparable(matrix)
    assert rerun.annotated(list(candidates.values()))[3].flags == (CandidateFlag.SYNTAX_ERROR,)

    # one container per (candidate, test) pair: the same cells (durations aside)
    pairs = CountingBackend(docker_backend)
    subset = [candidates["right"], candidates["broken"]]
    fresh = run_matrix(
        INSTANCE,
        subset,
        list(tests.values()),
        image=repo_image,
        backend=pairs,
        cache=MatrixCache(tmp_path / "pairs"),
        reuse=False,
    )
    assert pairs.started == 2 * 3 + 1  # BASE and right once per test; broken's check once
    assert _comparable(fresh.matrix) == {
        key: value for key, value in _comparable(matrix).items() if key[0] in {BASE, *(c.id for c in subset)}
    }


def test_export_and_merge_carry_cells_to_another_cache(docker_backend, repo_image, candidates, tmp_path):
    """A second machine merges the first one's export and needs no container for those cells."""
    tests = [_tests()["exit"]]
    first = MatrixCache(tmp_path / "first")
    run_matrix(INSTANCE, [candidates["right"]], tests, image=repo_image, backend=docker_backend, cache=first)
    export = tmp_path / "matrix.jsonl.gz"
    assert first.export(export) == 2 + 2  # BASE and right: one check and one cell each
    second = MatrixCache(tmp_path / "second")
    assert second.merge(export) == 4
    assert second.merge(export) == 0
    counting = CountingBackend(docker_backend)
    run = run_matrix(INSTANCE, [candidates["right"]], tests, image=repo_image, backend=counting, cache=second)
    assert counting.started == 0
    assert run.matrix.get(candidates["right"].id, tests[0].id).exit_code == 0


def _comparable(matrix) -> dict[tuple[str, str], tuple]:
    return {
        (c.candidate_id, c.test_id): (c.exit_code, c.output, c.output_hash, c.timed_out, c.error)
        for c in matrix.cells
    }


def test_a_test_that_breaks_the_repository_does_not_cost_the_next_test_its_cell(
    docker_backend, repo_image, tmp_path
):
    breaker = TestCase.make(
        instance_id=INSTANCE,
        kind=TestKind.HARVESTED,
        contract=Contract.BEHAVIOUR,
        command="rm -rf .git && echo gone",
    )
    check = _tests()["exit"]
    counting = CountingBackend(docker_backend)
    run = run_matrix(
        INSTANCE,
        [],
        [breaker, check],
        image=repo_image,
        backend=counting,
        cache=MatrixCache(tmp_path / "cache"),
    )
    assert run.matrix.get(BASE, breaker.id).output == "gone"
    assert run.matrix.get(BASE, check.id).exit_code == 2  # base behaviour, in a fresh container
    assert counting.started == 2 and run.stats.cell_errors == 0
