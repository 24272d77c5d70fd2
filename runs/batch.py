"""`patchfleet batch`: tasks -> image -> N trajectories -> candidates (+ other systems' predictions) ->
selection (`runs.select.Selector`, i.e. `selection.pipeline.select_task`) -> predictions (-> evaluation)
-> summary, resumable after `kill -9` at any moment.

Resume reads the files, never the database: a task with a complete `prediction.json` is done; a
trajectory whose file says it finished is not run again; a partial one (killed mid-run) or one that ended
in an infrastructure failure is moved to `attempts/` and run again. Trajectories start only within the
global budget (`runs.budget`), and so do selection's test writers and judgements, each within a
reservation of its cost limit. Infrastructure failures are retried (tenacity) and counted apart from
agent outcomes; a failure of one task (image, selection, a bug) is recorded in its `task.json` and never
stops the others. The ledger is rebuilt from the files at start and updated after every stage.
"""

from __future__ import annotations

import fcntl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, retry_if_result, stop_after_attempt, wait_exponential

from patchfleet.agent.config import ModelConfig, ReplayModelConfig
from patchfleet.agent.loop import ErrorInfo
from patchfleet.agent.model import KnownPrompt, Limiter, Model, Reply, call_bound
from patchfleet.agent.parallel import TrajectoryOutcome, TrajectorySpec, plan, run_trajectory, set_aside
from patchfleet.agent.trajectory import TrajectoryState, read_state
from patchfleet.atomic import write_json_atomic
from patchfleet.data.task import EvalSpec, Task
from patchfleet.errors import ConfigError, ImageBuildError, InfrastructureError, PatchfleetError, SandboxError
from patchfleet.executor import Executor, LocalExecutor, NodeLimit
from patchfleet.runs.budget import SPEND_LOG, Budget, TaskSpending, logged_spending
from patchfleet.runs.candidate_eval import chosen_ids, pool_figures
from patchfleet.runs.config import RunConfig
from patchfleet.runs.layout import (
    CANDIDATES_FILE,
    DECISION_FILE,
    OUTCOMES_FILE,
    RunLayout,
    is_infrastructure,
    read_json,
)
from patchfleet.runs.ledger import Ledger
from patchfleet.runs.outputs import summarize, write_prediction, write_predictions
from patchfleet.runs.progress import RunProgress
from patchfleet.runs.report import write_report
from patchfleet.runs.trajectories import row
from patchfleet.sandbox.config import DockerConfig
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.images import ImageBuilder, image_spec
from patchfleet.sandbox.official import OfficialImages
from patchfleet.selection.candidates import load_candidates_from_outcomes, merge_candidates
from patchfleet.selection.model import Candidate, Decision

NOT_STARTED = "BudgetExhausted"  # exit status of a trajectory the budget did not allow to start


class SelectionFailed(PatchfleetError):
    """The select stage of a task failed (its message says why); the task is retried on resume."""


@dataclass(frozen=True)
class SelectJob:
    """What the select stage of one task receives."""

    task: Task
    candidates: list[Candidate]
    image: str
    backend: DockerBackend | None
    out_dir: Path  # <run>/selection/<task id>/
    config: RunConfig
    trajectories: list[Path] = field(default_factory=list)
    # what the agents' sandboxes got with `image` (an official image's conda env; ours need none)
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[], object] | None = None  # on a remote node, before a container: the image there
    image_id: str | None = None  # an official image's content id (its name can move): its cells' key
    budget: TaskSpending | None = None  # the run's budget, for the units that call a model


Selector = Callable[[SelectJob], Decision]


@dataclass
class Services:
    """What a run talks to; built from the config by `services`, or given by tests."""

    backend: DockerBackend
    builder: ImageBuilder
    recipe: Callable[[Task], Any]
    select: Selector
    progress: RunProgress = field(default_factory=RunProgress)
    official: OfficialImages | None = None  # official SWE-bench images, used where found
    evaluate: Callable[[list[Task], dict[str, EvalSpec], Path], dict[str, Any]] | None = None
    # where trajectories, matrix rows and evaluations run; with a remote one (Ray), backend, builder
    # and official are `executor.OnNode`s, so that a unit uses the engine of the node it lands on
    executor: Executor = field(default_factory=LocalExecutor)


@dataclass
class TaskResult:
    instance_id: str
    status: str  # done, incomplete (budget), error
    resumed: bool = False
    error: dict[str, str] | None = None
    stage_time: dict[str, float] = field(default_factory=dict)


# -- the run ----------------------------------------------------------------------------------------


def run_batch(
    config: RunConfig,
    tasks: list[Task],
    eval_specs: dict[str, EvalSpec],
    services: Services,
    *,
    other_candidates: dict[str, list[Candidate]] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the batch; returns the summary, also written to `<out>/summary.json`."""
    started = time.monotonic()
    out = config.outputs.dir
    layout = RunLayout(out)
    with run_lock(out):
        return _run(config, layout, tasks, eval_specs, services, other_candidates or {}, started)


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """One process per run folder: two would run the same trajectories and clobber each other's files.
    An advisory lock, so a killed process (even `kill -9`) releases it."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ConfigError(f"another patchfleet batch is running in {out}") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(
    config: RunConfig,
    layout: RunLayout,
    tasks: list[Task],
    eval_specs: dict[str, EvalSpec],
    services: Services,
    other_candidates: dict[str, list[Candidate]],
    started: float,
) -> dict[str, Any]:
    out = layout.out
    run_id = _start_run_file(layout, config)
    ledger = Ledger(config.ledger_url())
    try:
        ledger.rebuild(out)  # whatever a killed run left in the files, the index agrees with it
        specs = plan(config.agent, config.parallel)
        if config.budget is not None:
            _check_cost_limits(config)
        spent = sum(_spent_in_files(layout, task.id) for task in tasks)
        budget = Budget(config.budget, spent=spent)
        services.progress.start(len(tasks), len(tasks) * len(specs), config.budget, spent)
        # tasks are orchestrated here, in threads, whatever the executor: only their units go elsewhere
        runner = TaskRunner(config, layout, run_id, ledger, budget, services, specs, other_candidates)
        with ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="task") as pool:
            results = list(pool.map(runner.run_task, tasks))
        predictions = write_predictions(layout, tasks)
        evaluation = None
        if config.evaluate and services.evaluate is not None:
            services.progress.phase("evaluation", f"{len(predictions)} predictions")
            evaluation = services.evaluate(tasks, eval_specs, out / "eval")
            services.progress.phase_done("evaluation", f"{evaluation.get('resolved_instances')} resolved")
        summary = summarize(layout, run_id, tasks, results, budget, evaluation, time.monotonic() - started)
        if evaluation is not None:  # every candidate's verdict, when the evaluation graded them
            summary["candidates"] = pool_figures(layout, tasks, chosen_ids(layout, tasks))
        summary["executor"] = services.executor.describe()
        write_json_atomic(out / "summary.json", summary)
        write_report(out)  # the run's one page, from the files just written
        return summary
    finally:
        ledger.close()
        services.executor.close()
        services.progress.close()


def _start_run_file(layout: RunLayout, config: RunConfig) -> str:
    """The run's id, kept across resumes, and its config as last started."""
    previous = read_json(layout.run_file, {}) or {}
    run_id = previous.get("run_id") or uuid.uuid4().hex[:12]
    document = {
        "run_id": run_id,
        "started_at": previous.get("started_at") or datetime.now(UTC).isoformat(),
        "resumed_at": datetime.now(UTC).isoformat() if previous else None,
        "config": config.public(),
    }
    write_json_atomic(layout.run_file, document)
    return run_id


def _check_cost_limits(config: RunConfig) -> None:
    """Under a budget, every unit that calls a model reserves its own cost limit: none may be unlimited."""
    from patchfleet.runs.select import test_writer_agent

    if not config.agent.limits.cost_limit:
        raise ConfigError("--budget needs a per-trajectory cost limit (agent.limits.cost_limit > 0)")
    writer = test_writer_agent(config.selection, config.agent.model)
    if writer is not None and not writer.limits.cost_limit:
        raise ConfigError("--budget needs a cost limit per test writer (limits.cost_limit of its config > 0)")
    if config.selection.verifier is not None and not config.selection.verifier.cost_limit:
        raise ConfigError("--budget needs a cost limit per judgement (selection.verifier.cost_limit > 0)")


def _spent_in_files(layout: RunLayout, instance_id: str) -> float:
    """What a task already cost in earlier runs: every trajectory file and attempt, plus selection's spend
    log (an older run's folder, without one: its booked stages)."""
    folder = layout.task_dir(instance_id)
    files = [*folder.glob("*.traj.json"), *layout.attempts_dir(instance_id).glob("*.traj.json")]
    log = folder / SPEND_LOG
    stages = (read_json(layout.task_file(instance_id), {}) or {}).get("costs") or {}
    booked = logged_spending(log) if log.exists() else stages
    return sum(read_state(path).cost for path in files) + sum(float(v or 0) for v in booked.values())


@dataclass
class TaskRunner:
    """Runs the tasks of one run in threads of this process; each trajectory is a unit of
    `services.executor` (here, or a Ray task: runs/ray_executor.py), within this process's budget."""

    config: RunConfig
    layout: RunLayout
    run_id: str
    ledger: Ledger
    budget: Budget
    services: Services
    specs: list[TrajectorySpec]
    others: dict[str, list[Candidate]]
    llm_limiter: Limiter | NodeLimit | None = None
    sandbox_limiter: Limiter | NodeLimit | None = None

    def __post_init__(self) -> None:
        # threads of this process share a semaphore; units elsewhere (Ray) one per node
        local = self.services.executor.in_process
        if self.config.max_llm_calls:
            size = self.config.max_llm_calls
            self.llm_limiter = (
                threading.BoundedSemaphore(size) if local else NodeLimit(f"llm:{self.run_id}", size)
            )
        if self.config.max_sandboxes:
            size = self.config.max_sandboxes
            self.sandbox_limiter = (
                threading.BoundedSemaphore(size) if local else NodeLimit(f"sandboxes:{self.run_id}", size)
            )
        self._on_step = self.services.executor.relay(self.services.progress.step)

    # -- one task -----------------------------------------------------------------------------------
    def run_task(self, task: Task) -> TaskResult:
        progress = self.services.progress
        done = read_json(self.layout.prediction(task.id))
        if isinstance(done, dict) and done.get("complete", True):
            for spec in self.specs:
                state = read_state(self.layout.trajectory(task.id, spec.index))
                progress.trajectory_done(task.id, spec.index, state.exit_status or "missing", resumed=True)
            progress.task_done(task.id, "done", "from an earlier run", resumed=True)
            return TaskResult(task.id, "done", resumed=True)
        status: dict[str, Any] = {"instance_id": task.id, "status": "running", "stage": "image", "costs": {}}
        result = TaskResult(task.id, "running")
        spending = TaskSpending(self.budget, self.layout.task_dir(task.id) / SPEND_LOG, progress.add_cost)
        try:
            image, env = self._stage(task, status, result, "image", lambda: self._image(task))
            status["image"] = image
            outcomes = self._stage(
                task, status, result, "trajectories", lambda: self._trajectories(task, image, env)
            )
            candidates = self._stage(task, status, result, "candidates", lambda: self._candidates(task))
            job = SelectJob(
                task,
                candidates,
                image,
                self.services.backend,
                self.layout.selection_dir(task.id),
                self.config,
                [o.path for o in outcomes if o.path.exists()],
                env=env,  # selection runs in the image (and env) the agents had
                prepare=self._prepare(task),
                image_id=self._content_id(task, image),
                budget=spending,  # without a limit too: what selection spends is in the run's cost
            )
            decision = self._stage(task, status, result, "selection", lambda: self._select(job))
            if spending.refused:
                refused = spending.refused
                status["budget"] = f"the run's budget did not allow {refused} selection unit(s) to start"
            complete = not any(o.exit_status == NOT_STARTED for o in outcomes) and not spending.refused
            write_prediction(self.layout, task.id, self.config.outputs.run_id, decision, candidates, complete)
            result.status = "done" if complete else "incomplete"
            status |= {"status": result.status, "stage": "done", "chosen": decision.chosen}
        except Exception as exc:  # noqa: BLE001 - one task's failure is recorded; the others go on
            error = ErrorInfo.of(exc).to_json()
            result.status, result.error = "error", error
            status |= {"status": "error", "error": error}
        if spending.log.exists():  # everything selection ever spent on the task, this run's and earlier
            status["selection_costs"] = logged_spending(spending.log)
            status["costs"]["selection"] = sum(status["selection_costs"].values())
        status["timings"] = result.stage_time
        write_json_atomic(self.layout.task_file(task.id), status)
        self.ledger.index_task(self.run_id, self.layout.out, task.id)
        detail = (result.error or {}).get("message", "")[:120] if result.error else status.get("budget", "")
        progress.task_done(task.id, result.status, detail)
        return result

    def _stage(
        self, task: Task, status: dict[str, Any], result: TaskResult, stage: str, work: Callable[[], Any]
    ):
        status["stage"] = stage
        write_json_atomic(self.layout.task_file(task.id), status, durable=False)
        self.services.progress.task(task.id, stage)
        started = time.monotonic()
        try:
            return work()
        finally:
            result.stage_time[stage] = round(time.monotonic() - started, 3)
            self.ledger.index_task(self.run_id, self.layout.out, task.id)

    def _image(self, task: Task) -> tuple[str, dict[str, str]]:
        """The task's image and the environment its sandboxes need: the official image where the run
        uses them and one is found (its conda env), else ours, whose build is retried when a sandbox
        fails to start."""
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, SandboxError)),
            stop=stop_after_attempt(self.config.retry.attempts),
            wait=wait_exponential(multiplier=self.config.retry.initial_wait, max=self.config.retry.max_wait),
            before_sleep=lambda state: self.services.progress.retry(
                task.id, "the image", type(state.outcome.exception()).__name__
            ),
            reraise=True,
        )
        services = self.services
        return retrying(lambda: ensure_image(services.builder, services.official, services.recipe, task))

    # -- trajectories -------------------------------------------------------------------------------
    def _trajectories(self, task: Task, image: str, env: dict[str, str]) -> list[TrajectoryOutcome]:
        specs = task_plan(self.config, task.id)
        workers = self.config.parallel.max_workers or len(specs)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trajectory") as pool:
            outcomes = list(pool.map(lambda spec: self._trajectory(task, image, env, spec), specs))
        document = {"instance_id": task.id, "image": image, "trajectories": [row(o) for o in outcomes]}
        write_json_atomic(self.layout.task_dir(task.id) / OUTCOMES_FILE, document)
        return outcomes

    def _trajectory(
        self, task: Task, image: str, env: dict[str, str], spec: TrajectorySpec
    ) -> TrajectoryOutcome:
        path = self.layout.trajectory(task.id, spec.index)
        state = read_state(path)
        progress = self.services.progress
        if state.finished and not is_infrastructure(state.error):
            progress.trajectory_done(task.id, spec.index, state.exit_status, resumed=True)
            return outcome_from_state(spec, state)
        outcome = _retrying(
            self.config, lambda: self._attempt(task, image, env, spec), self._before_retry(task, spec)
        )
        progress.trajectory_done(
            task.id, spec.index, outcome.exit_status, kind=outcome.error.kind if outcome.error else None
        )
        return outcome

    def _attempt(
        self, task: Task, image: str, env: dict[str, str], spec: TrajectorySpec
    ) -> TrajectoryOutcome:
        """One run of one trajectory within a budget reservation; an earlier file is kept in attempts/."""
        path = self.layout.trajectory(task.id, spec.index)
        set_aside(path)
        reservation = self.config.agent.limits.cost_limit if self.config.budget is not None else 0.0
        if not self.budget.reserve(reservation):
            return TrajectoryOutcome.failure(
                spec,
                path,
                ErrorInfo(NOT_STARTED, "budget", "the run's budget does not allow another trajectory"),
            )
        spent = 0.0
        executor = self.services.executor
        job = TrajectoryJob(
            task,
            spec,
            image,
            env,
            self.run_id,
            self.layout.out,
            self.config.sandbox,
            self.services.backend,
            self._on_step,
            llm_limiter=self.llm_limiter,
            sandbox_limiter=self.sandbox_limiter,
        )
        if not executor.in_process:  # the node may lack the image (built or pulled here): it makes sure
            job = replace(job, prepare=self._prepare(task))
        try:
            try:
                outcome = executor.run(run_trajectory_job, job)
            except InfrastructureError as exc:  # the worker or its node died: retried as any other
                outcome = TrajectoryOutcome.failure(spec, path, ErrorInfo.of(exc))
            # a trajectory whose worker died reports nothing, but its file says what it spent until then
            spent = max(outcome.cost, read_state(path).cost)
            return outcome
        finally:
            self.budget.settle(reservation, spent)

    def _prepare(self, task: Task) -> Callable[[], object] | None:
        """For units on other nodes: the task's image made sure of there, by the same decision (official
        or ours) as here, and an official one with the content it has here (the cells' key); None when
        units run in this process, where `_image` already did."""
        if self.services.executor.in_process:
            return None
        services = self.services
        here = services.official.for_task(task.id) if services.official is not None else None
        image_id = here.image_id if here is not None else None
        return partial(ensure_image, services.builder, services.official, services.recipe, task, image_id)

    def _content_id(self, task: Task, image: str) -> str | None:
        """The content id of the task's official image when `image` is one (found once per process by
        `OfficialImages`); None for ours, whose names are content hashes."""
        official = self.services.official
        found = official.for_task(task.id) if official is not None else None
        return found.image_id if found is not None and found.name == image else None

    def _before_retry(self, task: Task, spec: TrajectorySpec) -> Callable[[TrajectoryOutcome], None]:
        def report(outcome: TrajectoryOutcome) -> None:
            self.services.progress.retry(task.id, f"trajectory {spec.index}", outcome.exit_status)

        return report

    # -- candidates and selection -------------------------------------------------------------------
    def _candidates(self, task: Task) -> list[Candidate]:
        loaded = load_candidates_from_outcomes(self.layout.task_dir(task.id) / OUTCOMES_FILE)
        ours = loaded.candidates.get(task.id, [])
        return merge_candidates(ours, self.others.get(task.id, []))

    def _select(self, job: SelectJob) -> Decision:
        """The selector's decision; selectors that write no files (a simple policy) get them written."""
        decision = self.services.select(job)
        folder = job.out_dir
        if not (folder / CANDIDATES_FILE).exists():
            write_json_atomic(folder / CANDIDATES_FILE, [c.model_dump(mode="json") for c in job.candidates])
        if not (folder / DECISION_FILE).exists():
            write_json_atomic(folder / DECISION_FILE, decision.model_dump(mode="json"))
        return decision


@dataclass(frozen=True)
class TrajectoryJob:
    """One trajectory as a unit of work: all it needs, picklable when the executor is remote (then the
    backend is an `OnNode`, `on_step` a relay and the limiters `NodeLimit`s)."""

    task: Task
    spec: TrajectorySpec
    image: str
    env: dict[str, str]
    run_id: str
    out: Path
    sandbox: DockerConfig
    backend: Any  # a DockerBackend, or an OnNode of one
    on_step: Callable[[str, int, int, float], None]  # (task, trajectory, calls, cost): progress
    prepare: Callable[[], object] | None = None  # before the sandbox starts: the image, on this node
    llm_limiter: Limiter | None = None
    sandbox_limiter: Limiter | None = None


def run_trajectory_job(job: TrajectoryJob) -> TrajectoryOutcome:
    """Run one trajectory wherever the executor put it; its failures are in the outcome."""
    task = job.task

    def sandbox(index: int):
        if job.prepare is not None:  # here, so that an image that fails is this trajectory's failure
            job.prepare()
        labels = {"role": "agent", "task": task.id, "trajectory": str(index), "run": job.run_id}
        return job.backend.start(job.sandbox.spec(job.image, labels, env=job.env))

    def model(spec: TrajectorySpec, limiter: Limiter | None) -> Model:
        def on_reply(reply: Reply, calls: int) -> None:
            job.on_step(task.id, spec.index, calls, reply.cost)

        return ReportingModel(spec.model.build(limiter=limiter), on_reply)

    return run_trajectory(task, job.spec, sandbox, job.out, job.llm_limiter, job.sandbox_limiter, model)


def ensure_image(
    builder: ImageBuilder,
    official: OfficialImages | None,
    recipe: Callable[[Task], Any],
    task: Task,
    image_id: str | None = None,
) -> tuple[str, dict[str, str]]:
    """The task's image on this machine, and the environment its sandboxes need: the official image where
    the run uses them and one is found (its conda env), else ours, built where missing.

    image_id: on another node, the content id the official image has where the run decided on it; an
    official image here with other content under the same name (or none) is an `ImageBuildError`, since
    the task's units, and the cells keyed by that id, must all see the same image."""
    found = official.for_task(task.id) if official is not None else None
    if image_id is not None and (found is None or found.image_id != image_id):
        here = f"is {found.image_id}" if found is not None else "is not here"
        name = found.name if found is not None else f"the official image of {task.id}"
        raise ImageBuildError(
            f"{name} {here} on this node, {image_id} where the run started: give every node the same image"
        )
    if found is not None:
        return found.name, dict(found.env)
    return builder.ensure(image_spec(task, recipe(task))), {}


def task_plan(config: RunConfig, instance_id: str) -> list[TrajectorySpec]:
    """The task's trajectory specs; a replay model's path may name `{instance_id}` (one recording per
    task, e.g. `.../trajectories/<run>/{instance_id}.traj.json`)."""
    agent = config.agent.model_copy(update={"model": for_task(config.agent.model, instance_id)})
    models = [for_task(m, instance_id) for m in config.parallel.models]
    return plan(agent, config.parallel.model_copy(update={"models": models}))


def for_task(model: ModelConfig | None, instance_id: str) -> Any:
    if isinstance(model, ReplayModelConfig) and "{instance_id}" in str(model.path):
        return model.model_copy(update={"path": Path(str(model.path).replace("{instance_id}", instance_id))})
    return model


def _retrying(
    config: RunConfig,
    attempt: Callable[[], TrajectoryOutcome],
    before_retry: Callable[[TrajectoryOutcome], None],
) -> TrajectoryOutcome:
    """Run `attempt` again while it ends in an infrastructure failure, up to the configured attempts."""

    def infrastructure(outcome: TrajectoryOutcome) -> bool:
        return outcome.error is not None and is_infrastructure(outcome.error.to_json())

    retrying = Retrying(
        retry=retry_if_result(infrastructure),
        stop=stop_after_attempt(config.retry.attempts),
        wait=wait_exponential(multiplier=config.retry.initial_wait, max=config.retry.max_wait),
        before_sleep=lambda state: before_retry(state.outcome.result()),
        retry_error_callback=lambda state: state.outcome.result(),
    )
    return retrying(attempt)


def outcome_from_state(spec: TrajectorySpec, state: TrajectoryState) -> TrajectoryOutcome:
    error = state.error
    return TrajectoryOutcome(
        spec.index,
        state.path,
        state.exit_status,
        submission=state.submission,
        model=state.model,
        variant=state.variant,
        temperature=state.temperature,
        steps=state.steps,
        cost=state.cost,
        error=ErrorInfo(error.get("class", ""), error.get("kind", ""), error.get("message", ""))
        if error
        else None,
    )


class ReportingModel:
    """A model that tells the progress display about every reply (step count and cost)."""

    def __init__(self, inner: Model, on_reply: Callable[[Reply, int], None]) -> None:
        self.inner = inner
        self.stats = inner.stats
        self.on_reply = on_reply

    @property
    def name(self) -> str:
        return self.inner.name

    def query(self, messages: list[dict[str, Any]], **kwargs: Any) -> Reply:
        reply = self.inner.query(messages, **kwargs)
        self.on_reply(reply, self.stats.calls)
        return reply

    def bound(
        self, messages: list[dict[str, Any]], *, known: KnownPrompt | None = None, **kwargs: Any
    ) -> float | None:
        """The inner model's bound: the trajectory's cost limit stays hard through this wrapper."""
        return call_bound(self.inner, messages, known=known, **kwargs)


# -- a selector without sandboxes -----------------------------------------------------------------------


def majority_select(job: SelectJob) -> Decision:
    """The candidate proposed by the most sources (trajectories and other systems); ties go to the smaller
    patch, then the id. A baseline, and the selector of tests that need no sandbox."""
    ranking = sorted(job.candidates, key=lambda c: (-len(c.sources), c.size, c.id))
    reasons = [f"{c.id}: {len(c.sources)} source(s), {c.size} changed line(s)" for c in ranking]
    if not ranking:
        reasons = ["no trajectory or predictions file proposed a non-empty patch"]
    return Decision(
        instance_id=job.task.id,
        policy="majority",
        chosen=ranking[0].id if ranking else None,
        ranking=[c.id for c in ranking],
        reasons=reasons,
        scores={c.id: {"sources": len(c.sources), "size": c.size} for c in ranking},
    )
