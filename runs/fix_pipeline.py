"""The select stage of `patchfleet fix` and `demo` through the selection pipeline
(`selection.pipeline.select_task`): harvested, candidate, regression and generated tests, the matrix, the
verifier and every policy, stored beside the task's trajectories (`<run>/<task id>/`) where the report and
`inspect` read them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from patchfleet.agent import AgentConfig, LitellmModelConfig
from patchfleet.data.sources import RepoSource
from patchfleet.runs.fix_select import SelectionJob, Selector, suite_tests
from patchfleet.selection.matrix_cache import MatrixCache
from patchfleet.selection.model import Decision
from patchfleet.selection.pipeline import SelectionConfig, SelectionEnv, select_task
from patchfleet.selection.verifier import Verifier, VerifierConfig

if TYPE_CHECKING:
    from patchfleet.runs.fix import FixConfig

CELLS_DIR = "cells"
TEST_WRITERS_DIR = "test-writers"


def pipeline_selector(
    config: SelectionConfig,
    *,
    source: RepoSource | None = None,
    verifier: Verifier | None = None,
    test_writer: AgentConfig | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> Selector:
    """A `Selector` for `run_fix`; cells are cached under `<run>/cells` so a rerun executes nothing twice."""

    def select(job: SelectionJob) -> Decision:
        task = job.task
        read_base = None
        if source is not None:
            read_base = lambda path: source.read_file(task.repo, task.base_commit, path)  # noqa: E731
        env = SelectionEnv(
            image=job.image,
            backend=job.backend,
            cache=MatrixCache(job.out_dir.parent / CELLS_DIR),
            read_base=read_base,
            log=log,
            verifier=verifier,
            test_writer=test_writer,
            work_dir=job.out_dir / TEST_WRITERS_DIR,
        )
        result = select_task(
            task,
            job.candidates,
            env=env,
            config=config,
            out_dir=job.out_dir.parent,
            trajectories=job.trajectories,
            extra_tests=suite_tests(job),  # the detected (or --test-cmd) suite: a regression test
        )
        return result.decision

    return select


def verifier_for(model: LitellmModelConfig, cache_dir: Path | None = None) -> Verifier:
    """The execution-free judge on the run's own model (logprobs when the provider returns them)."""
    return Verifier(VerifierConfig(model=model, cache_dir=cache_dir))


def selection_cost(task_dir: Path) -> float:
    """Dollars the select stage spent: verifier judgements and test-writing trajectories."""
    total = 0.0
    verifier = task_dir / "verifier.json"
    if verifier.is_file():
        rows = json.loads(verifier.read_text())
        rows = rows.values() if isinstance(rows, dict) else rows
        total += sum(float(row.get("cost") or 0.0) for row in rows if isinstance(row, dict))
    for path in (task_dir / TEST_WRITERS_DIR).rglob("*.traj.json"):
        try:
            stats = json.loads(path.read_text()).get("info", {}).get("model_stats", {})
        except (OSError, json.JSONDecodeError):
            continue
        total += float(stats.get("instance_cost") or 0.0)
    return total


def pipeline_for(
    config: FixConfig,
    *,
    source: RepoSource | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> Selector:
    """The pipeline as `config.selection` says; the judge is `selection.verifier` when configured, else the
    run's own model (unless `config.verifier` is off); test writers use the run's model unless
    `selection.test_writer` names another."""
    from patchfleet.selection.generate import load_test_writer_config

    selection, agent = config.selection, config.agent
    cache = config.out_dir / "verifier-cache"
    judge = None
    if selection.verifier is not None:
        judge = Verifier(
            selection.verifier.model_copy(update={"cache_dir": selection.verifier.cache_dir or cache})
        )
    elif config.verifier and isinstance(agent.model, LitellmModelConfig):
        judge = verifier_for(agent.model, cache)
    writer = None
    if selection.generated_tests and agent.model is not None:
        writer = load_test_writer_config().model_copy(
            update={"model": agent.model, "scratch_dir": agent.scratch_dir}
        )
    return pipeline_selector(selection, source=source, verifier=judge, test_writer=writer, log=log)
