"""Every candidate of a batch graded with the hidden tests, not only the chosen one, and the figures that
needs: oracle (any candidate resolves), random pick (a source drawn at random), each source alone.

The chosen patch's verdict says how good the selector is; the pool's verdicts say how good it could have
been and what picking blindly gives, which is what an ensemble over other systems' patches is judged by.
Verdicts go through the evaluator's cache, so a patch proposed by several sources (or already evaluated as
the chosen prediction) runs once, and a resumed run grades only what it has not. Each task's verdicts are
written to `<out>/<id>/evaluation.json` ({candidate id: resolved}, null for an evaluation error), which the
report reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from patchfleet.atomic import write_json_atomic
from patchfleet.data.task import EvalSpec, Prediction, Task
from patchfleet.executor import Executor, LocalExecutor
from patchfleet.runs.layout import CANDIDATES_FILE, RunLayout, read_json
from patchfleet.selection.model import Candidate, CandidateSource

EVALUATION_FILE = "evaluation.json"  # as runs/report.py reads it
RUN_ID = "candidates"  # their logs: <eval>/logs/run_evaluation/candidates/<candidate id>/<instance>/


class Grader(Protocol):
    def evaluate(
        self, task: Task, spec: EvalSpec, prediction: Prediction, *, run_id: str | None = None
    ) -> Any: ...


def task_candidates(layout: RunLayout, instance_id: str) -> list[Candidate]:
    """The candidates the select stage saw (stored with the task's selection files)."""
    raw = read_json(layout.selection_dir(instance_id) / CANDIDATES_FILE, []) or []
    return [Candidate.model_validate(c) for c in raw]


def evaluate_candidates(
    grader: Grader,
    layout: RunLayout,
    tasks: list[Task],
    specs: dict[str, EvalSpec],
    *,
    workers: int = 1,
    log: Callable[[str], None] = lambda line: None,
    executor: Executor | None = None,
) -> dict[str, dict[str, bool | None]]:
    """Grade every stored candidate of every task; returns and writes {task: {candidate: resolved}}.
    Each grading is a unit of `executor` (default: `workers` threads here; Ray: a node each)."""
    jobs = [
        (task, candidate)
        for task in tasks
        if task.id in specs
        for candidate in task_candidates(layout, task.id)
        if candidate.patch.strip()
    ]

    def grade(job: tuple[Task, Candidate]) -> tuple[str, str, bool | None]:
        task, candidate = job
        prediction = Prediction(
            instance_id=task.id, model_patch=candidate.patch, model_name_or_path=candidate.id
        )
        try:
            outcome = grader.evaluate(task, specs[task.id], prediction, run_id=RUN_ID)
        except Exception as exc:  # noqa: BLE001 - a bug in one candidate's evaluation must not sink the others
            log(f"{task.id} candidate {candidate.id}: internal error ({type(exc).__name__}: {exc})")
            return task.id, candidate.id, None
        verdict = "error" if outcome.error else "resolved" if outcome.resolved else "unresolved"
        log(
            f"{task.id} candidate {candidate.id}: {verdict}"
            + (f" ({outcome.error})" if outcome.error else "")
        )
        return task.id, candidate.id, None if outcome.error else bool(outcome.resolved)

    verdicts: dict[str, dict[str, bool | None]] = {t.id: {} for t in tasks if t.id in specs}
    for task_id, candidate_id, resolved in (executor or LocalExecutor()).map(grade, jobs, workers=workers):
        verdicts[task_id][candidate_id] = resolved
    for task_id, flags in verdicts.items():
        if flags:
            write_json_atomic(layout.task_dir(task_id) / EVALUATION_FILE, flags)
    return verdicts


def chosen_ids(layout: RunLayout, tasks: list[Task]) -> dict[str, str | None]:
    """Each task's chosen candidate, from its `prediction.json`."""
    found = {t.id: read_json(layout.prediction(t.id)) for t in tasks}
    return {k: v.get("candidate_id") for k, v in found.items() if isinstance(v, dict)}


def pool_figures(layout: RunLayout, tasks: list[Task], chosen: dict[str, str | None]) -> dict[str, Any]:
    """Over the tasks whose candidates were graded: how many the chosen patch, any candidate (oracle) and
    a source picked at random resolve, each source (submission or trajectory model) alone, and errors."""
    graded = oracle = picked = errors = 0
    random_pick = 0.0
    by_source: Counter[str] = Counter()
    proposed: Counter[str] = Counter()
    for task in tasks:
        flags = read_json(layout.task_dir(task.id) / EVALUATION_FILE)
        if not isinstance(flags, dict) or not flags:
            continue
        graded += 1
        errors += sum(1 for v in flags.values() if v is None)
        oracle += any(flags.values())
        picked += bool(flags.get(chosen.get(task.id) or ""))
        sources = [
            (source_name(s, task.id), flags.get(c.id))
            for c in task_candidates(layout, task.id)
            for s in c.sources
        ]
        if sources:
            random_pick += sum(bool(ok) for _, ok in sources) / len(sources)
        for name, ok in sources:
            proposed[name] += 1
            by_source[name] += bool(ok)
    return {
        "tasks": graded,
        "chosen_resolved": picked,
        "oracle_resolved": oracle,
        "random_pick_resolved": round(random_pick, 3),  # expected count: one source drawn per task
        "evaluation_errors": errors,
        "by_source": {
            name: {"resolved": by_source[name], "proposed": proposed[name]} for name in sorted(proposed)
        },
    }


def source_name(source: CandidateSource, instance_id: str) -> str:
    """A source's name across tasks: a submission's as it is, a trajectory's model without the task's id
    (a replay model is named after its recording, `replay:<instance id>.traj`)."""
    if source.kind != "trajectory":
        return source.name
    return "trajectory " + source.name.replace(instance_id, "{instance_id}")
