"""N parallel trajectories per task, each in its own Docker sandbox, and an outcomes file per task: what
`patchfleet trajectories` (runs/trajectories_command.py) runs. Wiring only: images, sandboxes and the
agent do the work.

A task whose image cannot be made fails its own trajectories (each row says why) and never the others;
a failed trajectory is an outcome, never an exception (see `agent.parallel`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from patchfleet.agent import (
    AgentConfig,
    ErrorInfo,
    ParallelConfig,
    TrajectoryOutcome,
    plan,
    run_parallel,
)
from patchfleet.agent.model import Limiter
from patchfleet.agent.parallel import trajectory_path
from patchfleet.agent.preflight import check_model
from patchfleet.atomic import write_json_atomic
from patchfleet.data.recipes import Recipe
from patchfleet.data.task import Task
from patchfleet.errors import ConfigError
from patchfleet.sandbox.config import DockerConfig
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.images import ImageBuilder, image_spec
from patchfleet.sandbox.official import OfficialImages

OUTCOMES_FILE = "outcomes.json"


def parallel_config(n: int, temperatures: str | None, start_spread: float = 0.0) -> ParallelConfig:
    try:
        values = [float(t) for t in temperatures.split(",") if t.strip()] if temperatures else []
        return ParallelConfig(n=n, temperatures=values, start_spread_s=start_spread)
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"--temperatures {temperatures!r}: {exc}") from exc


def check_models(agent: AgentConfig, parallel: ParallelConfig) -> None:
    """Fail before any image is built when no trajectory could run: no model, or one litellm does not
    know, without a price (a run whose costs read as zero would bypass its budgets; see agent/pricing.py)
    or without its API key, or a replay file that does not exist (agent/preflight.py)."""
    if agent.model is None and not parallel.models:
        raise ConfigError("no model configured: pass --model (and --api-base), or set `model` in --config")
    for spec in plan(agent, parallel):
        check_model(spec.model)


def run_tasks(
    tasks: Sequence[Task],
    agent: AgentConfig,
    parallel: ParallelConfig,
    *,
    backend: DockerBackend,
    builder: ImageBuilder,
    recipe: Callable[[Task], Recipe],
    out_dir: Path,
    workers: int = 1,
    llm_limiter: Limiter | None = None,
    sandbox_limiter: Limiter | None = None,
    official: OfficialImages | None = None,
    sandbox_config: DockerConfig | None = None,
) -> list[dict[str, Any]]:
    """Every task's outcomes document, in task order; `workers` tasks at once share the limiters."""
    one = functools.partial(
        run_task,
        agent=agent,
        parallel=parallel,
        backend=backend,
        builder=builder,
        recipe=recipe,
        out_dir=out_dir,
        llm_limiter=llm_limiter,
        sandbox_limiter=sandbox_limiter,
        official=official,
        sandbox_config=sandbox_config,
    )
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="task") as pool:
        return list(pool.map(one, tasks))


def run_task(
    task: Task,
    agent: AgentConfig,
    parallel: ParallelConfig,
    *,
    backend: DockerBackend,
    builder: ImageBuilder,
    recipe: Callable[[Task], Recipe],
    out_dir: Path,
    llm_limiter: Limiter | None = None,
    sandbox_limiter: Limiter | None = None,
    official: OfficialImages | None = None,
    sandbox_config: DockerConfig | None = None,
) -> dict[str, Any]:
    """One task: its image (the official one when `official` finds it, else ours), its N trajectories
    in sandboxes with `sandbox_config`'s network and limits, then `<out>/<id>/outcomes.json`."""
    sandbox_config = sandbox_config or DockerConfig()
    image = ""
    try:
        found = official.for_task(task.id) if official is not None else None
        # an official image's conda env `testbed` is passed to every sandbox (see sandbox/official.py)
        if found is not None:
            image, env = found.name, found.env
        else:
            image, env = builder.ensure(image_spec(task, recipe(task))), {}

        def sandbox(index: int):
            labels = {"role": "agent", "task": task.id, "trajectory": str(index)}
            return backend.start(sandbox_config.spec(image, labels, env=env))

        outcomes = run_parallel(
            task,
            agent,
            parallel,
            sandbox_factory=sandbox,
            out_dir=out_dir,
            llm_limiter=llm_limiter,
            sandbox_limiter=sandbox_limiter,
        )
    except Exception as exc:  # noqa: BLE001 - recorded in every row of this task; other tasks go on
        outcomes = failed(task, agent, parallel, out_dir, ErrorInfo.of(exc))
    document = {"instance_id": task.id, "image": image, "trajectories": [row(o) for o in outcomes]}
    write_json_atomic(out_dir / task.id / OUTCOMES_FILE, document)
    return document


def failed(
    task: Task, agent: AgentConfig, parallel: ParallelConfig, out_dir: Path, error: ErrorInfo
) -> list[TrajectoryOutcome]:
    """The outcomes of trajectories that never started (e.g. the image failed to build)."""
    return [
        TrajectoryOutcome.failure(spec, trajectory_path(out_dir, task.id, spec.index), error)
        for spec in plan(agent, parallel)
    ]


def row(outcome: TrajectoryOutcome) -> dict[str, Any]:
    return {
        "index": outcome.index,
        "exit_status": outcome.exit_status,
        "steps": outcome.steps,
        "cost": outcome.cost,
        "model": outcome.model,
        "temperature": outcome.temperature,
        "variant": outcome.variant,
        "error": outcome.error.to_json() if outcome.error else None,
        "trajectory": str(outcome.path) if outcome.path.exists() else None,
        "patch": outcome.submission,
    }
