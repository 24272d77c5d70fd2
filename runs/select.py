"""`patchfleet select`: pick one patch per instance from any number of candidate sources.

Wiring only: candidates come from predictions files and `patchfleet trajectories` outputs
(`selection.candidates`), each task's image is the one evaluation and the agent use, and
`selection.pipeline.select_task` does the work. Outputs under `--out`: `preds.jsonl` (SWE-bench format
plus the chosen candidate's id and sources), `preds.json` (the dict sb-cli takes), `decisions.jsonl`, and
per instance the stored inputs (candidates, tests, matrix, verifier scores, every policy's decision).
One instance that fails is recorded in `decisions.jsonl` with its error; the others go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from patchfleet.agent.config import AgentConfig
from patchfleet.atomic import write_json_atomic, write_text_atomic
from patchfleet.data.recipes import Recipe
from patchfleet.data.sources import RepoSource
from patchfleet.data.task import Task
from patchfleet.errors import PatchfleetError
from patchfleet.executor import Executor, LocalExecutor, OnNode
from patchfleet.sandbox.images import ImageBuilder, ImageSpec, image_spec
from patchfleet.selection.execution import SandboxStarter
from patchfleet.selection.matrix_cache import MatrixCache
from patchfleet.selection.model import Candidate, content_hash
from patchfleet.selection.pipeline import SelectionConfig, SelectionEnv, select_task
from patchfleet.selection.units import Spending
from patchfleet.selection.verifier import Verifier

PREDS_JSONL = "preds.jsonl"
PREDS_JSON = "preds.json"
DECISIONS_JSONL = "decisions.jsonl"
SELECTION_DIR = "selection"
CELLS_DIR = "cells"
MODEL_NAME = "patchfleet"

Log = Callable[[str], None]


@dataclass
class Selector:
    """Everything selection needs that is the same for every instance of a run."""

    backend: SandboxStarter
    builder: ImageBuilder
    recipe: Callable[[Task], Recipe]
    source: RepoSource | None
    config: SelectionConfig
    out_dir: Path
    log: Log = field(default=lambda line: None)
    verifier: Verifier | None = None  # one per run: its disk cache and cost are shared
    test_writer: AgentConfig | None = None  # the test-writing agent when generated tests are on
    # where matrix rows, regression discovery, test writers and judgements run; a remote one needs the
    # backend and the verifier as `executor.OnNode`s (`node_verifier`)
    executor: Executor = field(default_factory=LocalExecutor)

    def __post_init__(self) -> None:
        self.cache = MatrixCache(self.out_dir / CELLS_DIR)

    def select(
        self,
        task: Task,
        candidates: Sequence[Candidate],
        trajectories: Sequence[Path] = (),
        *,
        image: str | None = None,
        env: dict[str, str] | None = None,
        prepare: Callable[[], object] | None = None,
        image_id: str | None = None,
        budget: Spending | None = None,
    ) -> dict[str, Any]:
        """One instance's decision as a `decisions.jsonl` row; an error is a row, never an exception.

        image, env, prepare: the image the caller decided on (a batch: the one its agents ran in, maybe
        an official one), the environment its sandboxes need, and how a remote node makes sure of it;
        without `image`, ours is built here. image_id: the content id of an image whose name can move (an
        official one), the key of its matrix cells. budget: the run's, in which test writers and judgements
        spend (a batch's)."""
        row: dict[str, Any] = {"instance_id": task.id, "candidates": len(candidates)}
        if not candidates:
            return {**row, "chosen": None, "reasons": ["no candidate patch for this instance"]}
        try:
            if image is None:
                spec = image_spec(task, self.recipe(task))
                image = self.builder.ensure(spec)
                # a row that runs on another node makes sure the image is there too (a no-op where it is)
                prepare = None if self.executor.in_process else partial(_ensure, self.builder, spec)
            selection_env = SelectionEnv(
                image=image,
                image_id=image_id,
                sandbox_env=dict(env or {}),
                backend=self.backend,
                cache=self.cache,
                read_base=self._reader(task),
                log=self.log,
                verifier=self.verifier,
                test_writer=self.test_writer,
                work_dir=self.out_dir / "test-writers",
                executor=self.executor,
                prepare=prepare,
                budget=budget,
            )
            files = [*trajectories, *_trajectory_files(candidates)]
            result = select_task(
                task,
                candidates,
                env=selection_env,
                config=self.config,
                out_dir=self.out_dir / SELECTION_DIR,
                trajectories=list(dict.fromkeys(files)),
            )
        except PatchfleetError as exc:
            return {**row, "chosen": None, "error": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # noqa: BLE001 - a bug in one instance must not sink the run
            return {**row, "chosen": None, "error": f"internal: {type(exc).__name__}: {exc}"}
        decision = result.decision
        return {
            **row,
            "policy": decision.policy,
            "chosen": decision.chosen,
            "ranking": decision.ranking,
            "reasons": decision.reasons,
            "scores": decision.scores,
            "others": {name: d.chosen for name, d in result.others.items()},
            "tests": len(result.inputs.tests),
            "containers": result.containers,
            "timings": result.timings,
        }

    def _reader(self, task: Task):
        if self.source is None:
            return None
        return lambda path: self.source.read_file(task.repo, task.base_commit, path)


def node_verifier(verifier: Verifier, executor: Executor) -> Verifier:
    """`verifier` as units of `executor` use it: itself here; for a remote executor an `OnNode` that each
    node builds from the same config (its own client; the disk cache is the run's, shared)."""
    if executor.in_process:
        return verifier
    key = f"verifier:{content_hash(verifier.config.model_dump_json(), length=16)}"
    return OnNode(key, partial(Verifier, verifier.config), value=verifier)  # type: ignore[return-value]


def _ensure(builder: ImageBuilder, spec: ImageSpec) -> str:
    return builder.ensure(spec)  # `builder` is an OnNode there: that node's own builder


def test_writer_agent(selection: SelectionConfig, run_model: Any) -> AgentConfig | None:
    """The test-writing agent (its own prompt, `agent/config/test_writer.yaml`) with the judge-independent
    model: `selection.test_writer`, else the run's agent model; None when generated tests are off."""
    if not selection.generated_tests:
        return None
    from patchfleet.selection.generate import load_test_writer_config

    writer = load_test_writer_config()
    return writer.model_copy(update={"model": selection.test_writer or run_model})


def _trajectory_files(candidates: Sequence[Candidate]) -> list[Path]:
    return [Path(s.trajectory) for c in candidates for s in c.sources if s.trajectory]


def trajectory_files(folders: Sequence[Path], instance_id: str) -> list[Path]:
    """`<folder>/<instance_id>.traj.json` (mini-swe-agent's layout) or `<folder>/<instance_id>/*.traj.json`
    (ours), for each folder that has them."""
    found: list[Path] = []
    for folder in folders:
        single = folder / f"{instance_id}.traj.json"
        if single.is_file():
            found.append(single)
        found.extend(sorted((folder / instance_id).glob("*.traj.json")))
    return found


def prediction_row(task_id: str, decision: dict[str, Any], candidates: Sequence[Candidate]) -> dict:
    """The SWE-bench prediction of one decision, with the chosen candidate's id and sources."""
    chosen = next((c for c in candidates if c.id == decision.get("chosen")), None)
    return {
        "instance_id": task_id,
        "model_name_or_path": MODEL_NAME,
        "model_patch": chosen.patch if chosen else "",
        "candidate_id": chosen.id if chosen else None,
        "sources": [s.model_dump(mode="json") for s in chosen.sources] if chosen else [],
    }


def write_outputs(out_dir: Path, predictions: list[dict[str, Any]], decisions: list[dict[str, Any]]) -> None:
    """preds.jsonl (canonical), preds.json (sb-cli's dict) and decisions.jsonl, each replaced atomically."""
    write_text_atomic(out_dir / PREDS_JSONL, "".join(json.dumps(p) + "\n" for p in predictions))
    write_json_atomic(
        out_dir / PREDS_JSON,
        {p["instance_id"]: {k: v for k, v in p.items() if k != "sources"} for p in predictions},
    )
    write_text_atomic(
        out_dir / DECISIONS_JSONL, "".join(json.dumps(d, default=str) + "\n" for d in decisions)
    )


def run_selection(
    selector: Selector,
    tasks: Sequence[Task],
    candidates: dict[str, list[Candidate]],
    *,
    trajectory_folders: Sequence[Path] = (),
    progress: Callable[[Task, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Select for every task in order, rewriting the outputs after each one (a killed run keeps what
    it finished; run again, finished stages are read back and cells come from the cache)."""
    predictions, decisions = [], []
    for task in tasks:
        found = candidates.get(task.id, [])
        decision = selector.select(task, found, trajectory_files(trajectory_folders, task.id))
        decisions.append(decision)
        predictions.append(prediction_row(task.id, decision, found))
        write_outputs(selector.out_dir, predictions, decisions)
        if progress is not None:
            progress(task, decision)
    return decisions
