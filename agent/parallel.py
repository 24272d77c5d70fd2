"""N trajectories of one task at once, each in its own sandbox, with diversity across them.

Threads, because each trajectory mostly waits (on the provider or on the container). Concurrency is
bounded by limiters passed in by the caller (so one run can share them across tasks): one on LLM
calls, one on live sandboxes. A trajectory that fails is recorded with its error class and kind
(infrastructure, agent, config, internal) and never stops the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from patchfleet.agent.config import AgentConfig, LitellmModelConfig, ModelConfig
from patchfleet.agent.loop import Agent, ErrorInfo
from patchfleet.agent.model import Limiter, Model
from patchfleet.agent.trajectory import TRAJECTORY_FORMAT
from patchfleet.atomic import write_json_atomic
from patchfleet.data.task import Task
from patchfleet.errors import ConfigError
from patchfleet.sandbox.base import Sandbox

SandboxFactory = Callable[[int], AbstractContextManager[Sandbox]]


class PromptVariant(BaseModel):
    """A named change of the prompts, e.g. extra instructions that push towards a different strategy."""

    model_config = ConfigDict(extra="forbid")

    name: str
    extra_instructions: str = ""
    system: str | None = None  # replaces the system template
    instance: str | None = None  # replaces the instance template


class ParallelConfig(BaseModel):
    """Diversity knobs are lists cycled over the N trajectories (index i takes item i % len)."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(10, ge=1)
    max_workers: int | None = None  # threads; default n
    temperatures: list[float] = Field(default_factory=list)  # litellm models only
    models: list[ModelConfig] = Field(default_factory=list)  # default: the agent config's model
    prompt_variants: list[PromptVariant] = Field(default_factory=list)
    # Trajectory i starts i/n of this many seconds late. N trajectories started together with similar step
    # times stay in lockstep: every reply arrives at once and their work queues for the CPUs (and the
    # provider's rate limit) in one burst each step. About one model latency spreads them out.
    start_spread_s: float = Field(0.0, ge=0.0)


@dataclass(frozen=True)
class TrajectorySpec:
    """Everything that differs between the trajectories of one task."""

    index: int
    agent: AgentConfig
    model: ModelConfig
    variant: str | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class TrajectoryOutcome:
    index: int
    path: Path
    exit_status: str
    submission: str = ""
    model: str = ""
    variant: str | None = None
    temperature: float | None = None
    steps: int = 0
    cost: float = 0.0
    error: ErrorInfo | None = None

    @property
    def submitted(self) -> bool:
        return self.exit_status == "Submitted"

    @classmethod
    def failure(
        cls, spec: TrajectorySpec, path: Path, error: ErrorInfo, model: str | None = None
    ) -> TrajectoryOutcome:
        """A trajectory that ended in `error`; `model` defaults to what the spec names."""
        return cls(
            spec.index,
            path,
            error.cls,
            model=model or model_label(spec),
            variant=spec.variant,
            temperature=spec.temperature,
            error=error,
        )


def model_label(spec: TrajectorySpec) -> str:
    """The model's name as the spec gives it, before any model is built."""
    return getattr(spec.model, "model", spec.model.type)


def plan(agent: AgentConfig, parallel: ParallelConfig) -> list[TrajectorySpec]:
    """The N trajectory specs: models, temperatures and prompt variants cycled across indices."""
    models = list(parallel.models) or ([agent.model] if agent.model is not None else [])
    if not models:
        raise ConfigError("no model configured: set agent.model or parallel.models")
    specs = []
    for i in range(parallel.n):
        model = models[i % len(models)]
        temperature = None
        if parallel.temperatures:
            temperature = parallel.temperatures[i % len(parallel.temperatures)]
            if isinstance(model, LitellmModelConfig):
                model = model.model_copy(update={"temperature": temperature})
        config = agent
        variant = None
        if parallel.prompt_variants:
            chosen = parallel.prompt_variants[i % len(parallel.prompt_variants)]
            variant = chosen.name
            replaced = {"system": chosen.system, "instance": chosen.instance}
            templates = agent.templates.model_copy(
                update={key: text for key, text in replaced.items() if text is not None}
            )
            config = agent.model_copy(
                update={"templates": templates, "extra_instructions": chosen.extra_instructions}
            )
        specs.append(TrajectorySpec(i, config, model, variant, temperature))
    return specs


def default_model_factory(spec: TrajectorySpec, limiter: Limiter | None) -> Model:
    return spec.model.build(limiter=limiter)


def trajectory_path(out_dir: Path, task_id: str, index: int) -> Path:
    return out_dir / task_id / f"{index}.traj.json"


ATTEMPTS_DIR = "attempts"  # beside a task's trajectory files: the files of earlier attempts


def set_aside(path: Path) -> None:
    """Keep an earlier file of this trajectory (its cost was spent; its steps are evidence) under
    `attempts/` beside it, instead of letting the next attempt replace it."""
    if not path.exists():
        return
    folder = path.parent / ATTEMPTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    index = path.name.split(".")[0]
    number = 1 + sum(1 for _ in folder.glob(f"{index}.*.traj.json"))
    path.replace(folder / f"{index}.{number}.traj.json")


def run_parallel(
    task: Task,
    agent: AgentConfig,
    parallel: ParallelConfig,
    *,
    sandbox_factory: SandboxFactory,
    out_dir: Path,
    llm_limiter: Limiter | None = None,
    sandbox_limiter: Limiter | None = None,
    model_factory: Callable[[TrajectorySpec, Limiter | None], Model] = default_model_factory,
) -> list[TrajectoryOutcome]:
    """Run the planned trajectories; outcomes come back in index order, failures included."""
    specs = plan(agent, parallel)

    def one(spec: TrajectorySpec) -> TrajectoryOutcome:
        delay = parallel.start_spread_s * spec.index / parallel.n
        return run_trajectory(
            task, spec, sandbox_factory, out_dir, llm_limiter, sandbox_limiter, model_factory, delay
        )

    workers = parallel.max_workers or parallel.n
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trajectory") as pool:
        return list(pool.map(one, specs))


def run_trajectory(
    task: Task,
    spec: TrajectorySpec,
    sandbox_factory: SandboxFactory,
    out_dir: Path,
    llm_limiter: Limiter | None,
    sandbox_limiter: Limiter | None,
    model_factory: Callable[[TrajectorySpec, Limiter | None], Model],
    delay: float = 0.0,
) -> TrajectoryOutcome:
    """One planned trajectory, its failure included; public so that a scheduler (runs/batch.py) can run
    the trajectories of a plan one by one (resume, budget) instead of all at once."""
    path = trajectory_path(out_dir, task.id, spec.index)
    info: dict[str, Any] = {
        "trajectory_index": spec.index,
        "prompt_variant": spec.variant,
        "temperature": spec.temperature,
    }
    model_name = model_label(spec)
    try:
        model = model_factory(spec, llm_limiter)
        model_name = model.name
        with sandbox_limiter or nullcontext(), sandbox_factory(spec.index) as sandbox:
            time.sleep(delay)  # here, not before the sandbox: start times vary, the first calls must not
            result = Agent(spec.agent, model, sandbox, trajectory_path=path, info=info).run(task)
    except Exception as exc:  # noqa: BLE001 - isolate this trajectory; the failure is recorded below
        error = ErrorInfo.of(exc)
        if not path.exists():  # the agent never started: still leave a file that says why
            _write_failure(path, task.id, error, info)
        return TrajectoryOutcome.failure(spec, path, error, model_name)
    return TrajectoryOutcome(
        spec.index,
        path,
        result.exit_status,
        submission=result.submission,
        model=model_name,
        variant=spec.variant,
        temperature=spec.temperature,
        steps=result.steps,
        cost=result.cost,
        error=result.error,
    )


def _write_failure(path: Path, task_id: str, error: ErrorInfo, info: dict[str, Any]) -> None:
    write_json_atomic(
        path,
        {
            "trajectory_format": TRAJECTORY_FORMAT,
            "instance_id": task_id,
            "messages": [],
            "info": {"exit_status": error.cls, "submission": "", "error": error.to_json(), **info},
        },
    )
