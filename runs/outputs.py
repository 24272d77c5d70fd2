"""A batch run's outputs: each task's `prediction.json` (its presence marks the task done), the run's
`preds.jsonl` (canonical: SWE-bench format plus the chosen candidate's id and sources) and `preds.json`
(the dict sb-cli takes), and `summary.json`, all counted from the files."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from patchfleet.agent.trajectory import read_state
from patchfleet.atomic import write_json_atomic, write_text_atomic
from patchfleet.data.task import Task
from patchfleet.runs.budget import Budget
from patchfleet.runs.layout import RunLayout, is_infrastructure, read_json
from patchfleet.selection.model import Candidate, Decision

if TYPE_CHECKING:
    from patchfleet.runs.batch import TaskResult


def write_prediction(
    layout: RunLayout,
    instance_id: str,
    run_name: str,
    decision: Decision,
    candidates: list[Candidate],
    complete: bool,
) -> dict[str, Any]:
    """The task's final answer (its presence, with `complete`, marks the task done for resume)."""
    chosen = next((c for c in candidates if c.id == decision.chosen), None)
    document = {
        "instance_id": instance_id,
        "model_name_or_path": run_name,
        "model_patch": chosen.patch if chosen else "",
        "candidate_id": decision.chosen,
        "policy": decision.policy,
        "sources": [s.model_dump(mode="json") for s in chosen.sources] if chosen else [],
        "complete": complete,
    }
    write_json_atomic(layout.prediction(instance_id), document)
    return document


def write_predictions(layout: RunLayout, tasks: list[Task]) -> list[dict[str, Any]]:
    """preds.jsonl (canonical, with the chosen candidate's sources) and preds.json (what sb-cli takes)."""
    rows = [doc for task in tasks if isinstance(doc := read_json(layout.prediction(task.id)), dict)]
    write_text_atomic(
        layout.out / "preds.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    )
    keep = ("instance_id", "model_name_or_path", "model_patch")
    write_json_atomic(layout.out / "preds.json", {r["instance_id"]: {k: r[k] for k in keep} for r in rows})
    return rows


def summarize(
    layout: RunLayout,
    run_id: str,
    tasks: list[Task],
    results: list[TaskResult],
    budget: Budget,
    evaluation: dict[str, Any] | None,
    wall_time: float,
) -> dict[str, Any]:
    """Counts from the files: tasks by status, trajectories by outcome with infrastructure failures apart
    (final ones, and attempts that were retried), costs, and the evaluation's figures."""
    outcomes: Counter[str] = Counter()
    agent_failures: Counter[str] = Counter()
    infra_failures: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    for task in tasks:
        for path in layout.task_dir(task.id).glob("*.traj.json"):
            state = read_state(path)
            outcomes[state.exit_status] += 1
            if is_infrastructure(state.error):
                infra_failures[state.exit_status] += 1
            elif state.error_kind in ("agent", "config", "internal"):
                agent_failures[state.exit_status] += 1
        for path in layout.attempts_dir(task.id).glob("*.traj.json"):
            retried[read_state(path).exit_status] += 1
    summary: dict[str, Any] = {
        "run_id": run_id,
        "tasks": len(tasks),
        "task_status": dict(Counter(r.status for r in results)),
        "resumed_tasks": sum(r.resumed for r in results),
        "task_errors": {r.instance_id: r.error for r in results if r.error},
        "trajectories": dict(outcomes),
        "agent_failures": dict(agent_failures),
        "infrastructure_failures": dict(infra_failures),
        "earlier_attempts": dict(retried),  # killed mid-run ("Running") or infrastructure failures, redone
        "predictions": sum(1 for r in results if r.status in ("done", "incomplete")),
        "cost": round(budget.spent, 6),
        "budget": budget.limit,
        "wall_time": round(wall_time, 3),
        "stage_time": _stage_times(layout, tasks, results),
    }
    if evaluation is not None:
        summary["evaluation"] = {
            k: evaluation.get(k)
            for k in ("resolved_instances", "unresolved_instances", "error_instances", "submitted_instances")
        }
        summary["evaluation"]["resolved_ids"] = evaluation.get("resolved_ids")
    return summary


def _stage_times(layout: RunLayout, tasks: list[Task], results: list[TaskResult]) -> dict[str, dict]:
    """Each task's stage times: this run's, else those its `task.json` kept from the run that did the
    work (a task resumed as done did nothing now, and its time must not read as zero)."""
    now = {r.instance_id: r.stage_time for r in results if r.stage_time}
    times = {}
    for task in tasks:
        recorded = (read_json(layout.task_file(task.id), {}) or {}).get("timings")
        if task.id in now or recorded:
            times[task.id] = now.get(task.id) or recorded
    return times
