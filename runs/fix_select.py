"""What the select stage of `patchfleet fix` and `demo` receives (`SelectionJob`, `Selector`), the
repository's own test command as a test (`suite_tests`), running candidates against tests in fresh
sandboxes (`execute`, which the demo's hidden-test evaluation uses), and a small pure policy over the
suite and the votes (`suite_vote_policy`) with the selection pipeline's file shapes
(`write_selection_files`), which the report can re-score offline like any policy.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from patchfleet.agent import AgentConfig
from patchfleet.atomic import write_json_atomic, write_text_atomic
from patchfleet.data.task import Task
from patchfleet.sandbox.base import SandboxSpec
from patchfleet.selection.execution import SandboxStarter
from patchfleet.selection.model import (
    BASE,
    Candidate,
    CandidateFlag,
    Cell,
    Contract,
    Decision,
    Matrix,
    SelectionInputs,
    TestCase,
    TestKind,
    content_hash,
)

OUTPUT_TAIL = 4000
_CHANGED_PY = re.compile(r"^\+\+\+ b/(\S+\.py)$", re.M)
CHECK_SYNTAX = "python3 -c 'import ast, sys\nfor f in sys.argv[1:]: ast.parse(open(f).read(), f)'"


@dataclass(frozen=True)
class SelectionJob:
    """Everything the select stage of one issue receives; `select_task` adapters take it too."""

    task: Task
    candidates: list[Candidate]
    image: str
    backend: SandboxStarter  # a DockerBackend, or one with the run config's limits (DockerConfig.limited)
    test_cmd: str  # "" when the repository has no test suite we could find
    out_dir: Path  # <run>/<task id>/
    trajectories: list[Path] = field(default_factory=list)
    agent: AgentConfig | None = None  # the model config, for a verifier or test-writing trajectories
    test_timeout: float = 600.0
    workers: int = 2


Selector = Callable[[SelectionJob], Decision]


def suite_tests(job: SelectionJob) -> list[TestCase]:
    """The repository's own test command as one REGRESSION test (pass/fail), when there is one."""
    if not job.test_cmd:
        return []
    return [
        TestCase.make(
            instance_id=job.task.id,
            kind=TestKind.REGRESSION,
            contract=Contract.PASS_FAIL,
            command=job.test_cmd,
            origin="the repository's test suite",
            timeout=job.test_timeout,
        )
    ]


def execute(
    job: SelectionJob, tests: list[TestCase], *, with_base: bool = True
) -> tuple[dict[str, list[CandidateFlag]], Matrix]:
    """Every candidate (and BASE) against every test, each candidate in its own fresh sandbox."""
    rows = ([(BASE, "")] if with_base else []) + [(c.id, c.patch) for c in job.candidates]
    with ThreadPoolExecutor(max_workers=max(1, job.workers), thread_name_prefix="select") as pool:
        checked = list(pool.map(lambda row: _check(job, tests, *row), rows))
    flags = {cid: f for cid, f, _ in checked}
    return flags, Matrix(instance_id=job.task.id, cells=[cell for _, _, cells in checked for cell in cells])


def _check(
    job: SelectionJob, tests: list[TestCase], candidate_id: str, patch: str
) -> tuple[str, list[CandidateFlag], list[Cell]]:
    labels = {"role": "select", "task": job.task.id, "candidate": candidate_id}
    flags: list[CandidateFlag] = []
    cells: list[Cell] = []
    with job.backend.start(SandboxSpec(image=job.image, labels=labels)) as sandbox:
        if patch:
            if not sandbox.apply_patch(patch).applied:
                return candidate_id, [CandidateFlag.DOES_NOT_APPLY], []
            changed = _CHANGED_PY.findall(patch)
            if changed:
                parsed = sandbox.exec(f"{CHECK_SYNTAX} {' '.join(map(shlex.quote, changed))}", timeout=60)
                if not parsed.ok:
                    flags.append(CandidateFlag.SYNTAX_ERROR)
        for test in tests:
            for path, content in test.files.items():
                sandbox.write_file(path, content)
            result = sandbox.exec(test.command, timeout=test.timeout)
            output = result.output[-OUTPUT_TAIL:]
            cells.append(
                Cell(
                    instance_id=job.task.id,
                    candidate_id=candidate_id,
                    test_id=test.id,
                    exit_code=result.exit_code,
                    output=output,
                    output_hash=content_hash(output),
                    duration=result.duration,
                    timed_out=result.timed_out,
                )
            )
    return candidate_id, flags, cells


def suite_vote_policy(inputs: SelectionInputs) -> Decision:
    """Patches that apply and parse first, then those that pass the suite, then the most trajectories
    (votes), then the smallest change (CodeMonkeys' tie-break)."""
    tests = [t.id for t in inputs.tests]

    def passes(candidate: Candidate) -> int:
        row = inputs.matrix.row(candidate.id)
        return sum(1 for t in tests if (cell := row.get(t)) is not None and cell.exit_code == 0)

    def key(candidate: Candidate) -> tuple[int, int, int, int, str]:
        sound = candidate.usable and CandidateFlag.SYNTAX_ERROR not in candidate.flags
        return (-int(sound), -passes(candidate), -len(candidate.sources), candidate.size, candidate.id)

    ranked = sorted(inputs.candidates, key=key)
    scores = {
        c.id: {"tests_passed": passes(c), "tests": len(tests), "votes": len(c.sources), "size": c.size}
        for c in ranked
    }
    base_row = inputs.matrix.row(BASE)
    base_passes = sum(1 for t in tests if (cell := base_row.get(t)) is not None and cell.exit_code == 0)
    reasons = [f"{len(inputs.candidates)} distinct patch(es) from the trajectories"]
    if tests:
        reasons.append(f"the base commit passes {base_passes}/{len(tests)} repository test command(s)")
    else:
        reasons.append("no repository test suite: ranked by votes and size only")
    for c in inputs.candidates:
        if c.flags:
            reasons.append(f"{c.id}: set aside ({', '.join(c.flags)})")
        elif tests and passes(c) < len(tests):
            reasons.append(f"{c.id}: fails the repository tests")
    chosen = next((c for c in ranked if c.usable and CandidateFlag.SYNTAX_ERROR not in c.flags), None)
    if chosen is not None:
        s = scores[chosen.id]
        reasons.append(
            f"chosen {chosen.id}: passes {s['tests_passed']}/{s['tests']} test command(s), proposed by "
            f"{s['votes']} trajectorie(s), {s['size']} changed line(s)"
        )
    else:
        reasons.append("no usable candidate")
    return Decision(
        instance_id=inputs.instance_id,
        policy="suite-vote",
        chosen=chosen.id if chosen else None,
        ranking=[c.id for c in ranked],
        reasons=reasons,
        scores=scores,
    )


def write_selection_files(out_dir: Path, inputs: SelectionInputs, decision: Decision) -> None:
    """The per-task files in the selection pipeline's shapes (matrix one cell a line)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "candidates.json", [c.model_dump(mode="json") for c in inputs.candidates])
    write_json_atomic(out_dir / "tests.json", [t.model_dump(mode="json") for t in inputs.tests])
    lines = "".join(cell.model_dump_json() + "\n" for cell in inputs.matrix.cells)
    write_text_atomic(out_dir / "matrix.jsonl", lines)
    write_json_atomic(out_dir / "decision.json", decision.model_dump(mode="json"))
