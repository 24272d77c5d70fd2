"""Where a batch run keeps its files, and how to read the state of a trajectory from its file.

The files are the source of truth (the ledger indexes them, resume reads them), so both the batch and the
ledger go through this one map of the output folder:

    <out>/run.json                      run id, resolved config (secrets masked), start time
    <out>/<instance>/task.json          stage and status of the task (error with its kind)
    <out>/<instance>/<i>.traj.json      trajectory i (written by the agent at every step)
    <out>/<instance>/attempts/          earlier attempts of a trajectory: killed, or infrastructure failures
    <out>/<instance>/outcomes.json      one row per trajectory, once all of them ended
    <out>/<instance>/prediction.json    the chosen patch: the task is done
    <out>/<instance>/spend.jsonl        what selection's model calls (test writers, judgements) spent
    <out>/selection/<instance>/         candidates, tests, matrix.jsonl, verifier, decision (.json)
    <out>/cells/                        the selection's cell cache (runs.select.Selector)
    <out>/preds.jsonl, preds.json, summary.json, eval/
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchfleet.agent.parallel import ATTEMPTS_DIR, trajectory_path

RUN_FILE = "run.json"
TASK_FILE = "task.json"
OUTCOMES_FILE = "outcomes.json"
PREDICTION_FILE = "prediction.json"
DECISION_FILE = "decision.json"
CANDIDATES_FILE = "candidates.json"
TESTS_FILE = "tests.json"
MATRIX_FILE = "matrix.jsonl"
VERIFIER_FILE = "verifier.json"
SELECTION_DIR = "selection"  # as runs/select.py lays it out


@dataclass(frozen=True)
class RunLayout:
    out: Path

    @property
    def run_file(self) -> Path:
        return self.out / RUN_FILE

    def task_dir(self, instance_id: str) -> Path:
        return self.out / instance_id

    def task_file(self, instance_id: str) -> Path:
        return self.task_dir(instance_id) / TASK_FILE

    def trajectory(self, instance_id: str, index: int) -> Path:
        return trajectory_path(self.out, instance_id, index)

    def attempts_dir(self, instance_id: str) -> Path:
        return self.task_dir(instance_id) / ATTEMPTS_DIR

    def selection_dir(self, instance_id: str) -> Path:
        return self.out / SELECTION_DIR / instance_id

    def prediction(self, instance_id: str) -> Path:
        return self.task_dir(instance_id) / PREDICTION_FILE

    def task_ids(self) -> list[str]:
        """Instances that have a task file, sorted."""
        return sorted(p.parent.name for p in self.out.glob(f"*/{TASK_FILE}"))


# the Docker SDK's errors that escape our tree (a container removed under a running trajectory: NotFound)
DOCKER_ERRORS = frozenset({"NotFound", "APIError", "DockerException", "ConnectionError", "ReadTimeout"})


def is_infrastructure(error: dict[str, str] | None) -> bool:
    """An infrastructure failure: our tree says so, or the Docker SDK's own errors escaped it (a container
    removed under a running trajectory surfaces as docker's NotFound)."""
    if not error:
        return False
    return error.get("kind") == "infrastructure" or error.get("class") in DOCKER_ERRORS


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def read_jsonl(path: Path) -> list[Any]:
    """Rows of a JSONL file; a torn last line (a writer killed mid-append) is skipped."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows
