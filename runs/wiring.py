"""From a `RunConfig` to a running batch: load the tasks and other systems' candidates, connect Docker,
pick the recipes, the selector and the evaluator, then call `runs.batch.run_batch`. Everything that can
be wrong with the input fails here, before any image is built (a `ConfigError`, exit code 2 in the CLI).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchfleet.agent.preflight import check_model
from patchfleet.data.loaders import load_predictions, load_tasks
from patchfleet.data.recipes import load_specs, recipe_for
from patchfleet.data.sources import CloneUrl, LocalCheckout, MirrorFolder, RepoSource
from patchfleet.data.task import EvalSpec, Task
from patchfleet.errors import ConfigError
from patchfleet.executor import Executor, LocalExecutor, OnNode
from patchfleet.runs.batch import SelectionFailed, SelectJob, Selector, Services, run_batch, task_plan
from patchfleet.runs.candidate_eval import evaluate_candidates
from patchfleet.runs.config import RunConfig, model_shorthands
from patchfleet.runs.layout import RunLayout
from patchfleet.runs.progress import RunProgress
from patchfleet.runs.validate import official_images
from patchfleet.sandbox.images import ImageBuilder
from patchfleet.sandbox.official import OfficialImages
from patchfleet.sandbox.trust import HostTrust
from patchfleet.selection.candidates import load_candidates_from_predictions, merge_loaded
from patchfleet.selection.model import Candidate, Decision


def repo_source(config: RunConfig) -> RepoSource:
    data = config.data
    if data.mirrors and data.local:
        raise ConfigError("give --mirrors or --local, not both")
    if data.local:
        return LocalCheckout(path=data.local)
    return MirrorFolder(root=data.mirrors, layout=data.layout) if data.mirrors else CloneUrl()


def load_run_tasks(config: RunConfig, warn: Callable[[str], None]) -> tuple[list[Task], dict[str, EvalSpec]]:
    if not config.data.dataset:
        raise ConfigError("no dataset: pass --dataset (or set data.dataset in --config)")
    loaded = load_tasks(config.data.dataset, instance_ids=config.data.instance_ids or None)
    for error in loaded.errors:
        warn(f"skipped: {error}")
    if loaded.missing_ids:
        raise ConfigError(
            f"unknown or invalid instance id(s) in {config.data.dataset}: {', '.join(loaded.missing_ids)}"
        )
    if not loaded.tasks:
        raise ConfigError(f"no task to run in {config.data.dataset}")
    return loaded.tasks, loaded.eval_specs


def other_candidates(config: RunConfig, warn: Callable[[str], None]) -> dict[str, list[Candidate]]:
    """Other systems' predictions files as candidates, by instance (ensembling)."""
    for path in config.data.candidates:
        if not Path(path).is_file():
            raise ConfigError(f"--candidates {path}: no such file")
    loaded = merge_loaded(*(load_candidates_from_predictions(p) for p in config.data.candidates))
    for error in loaded.errors:
        warn(f"candidates: {error}")
    return loaded.candidates


def build_services(
    config: RunConfig,
    *,
    select: Selector | None = None,
    progress: RunProgress | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> Services:
    from patchfleet.runs.evaluation import Evaluator, run_evaluation

    executor = make_executor(config)
    log = executor.relay(log)  # units running on other nodes log through the driver
    source = repo_source(config)
    specs = load_specs(config.data.recipes)
    backend = config.sandbox.backend(HostTrust.from_env())

    def recipe(task: Task):
        return recipe_for(task, source, specs)

    builder = ImageBuilder(backend, repo_source=source, allow_pull=config.sandbox.allow_pull, log=log)
    official = OfficialImages(builder, config.images)
    if not executor.in_process:  # what units use of the machine they land on: its own on each node
        node = NodeKit(config, log)
        backend = OnNode(node.key("backend"), node.make_backend, value=backend)
        builder = OnNode(node.key("builder"), node.make_builder, value=builder)
        official = OnNode(node.key("official"), node.make_official, value=official)
    if select is None:
        select = pipeline_selector(config, backend, builder, recipe, source, log, executor)

    def evaluate(tasks: list[Task], eval_specs: dict[str, EvalSpec], out: Path) -> dict[str, Any]:
        predictions, errors = load_predictions(config.outputs.dir / "preds.jsonl")
        for error in errors:
            log(f"predictions: {error}")
        evaluator = Evaluator(
            backend,
            source,
            out,
            recipes=recipe,
            allow_pull=config.sandbox.allow_pull,
            network=config.eval_network,
            cpus=config.eval_cpus,
            memory=config.eval_memory,
            log=log,
            # the same choice as the agents' and selection's images (`OfficialImages.for_task`); a verdict
            # in an official image has its own key (`official_verdict_key`, on the image id)
            images=config.images,
            specs=specs,
        )
        summary = run_evaluation(
            evaluator,
            tasks,
            eval_specs,
            predictions,
            workers=config.eval_workers,
            run_id=config.outputs.run_id,
            executor=executor,
        )
        # every candidate too, through the same verdict cache: the report's oracle and random figures
        layout = RunLayout(config.outputs.dir)
        evaluate_candidates(
            evaluator, layout, tasks, eval_specs, workers=config.eval_workers, executor=executor, log=log
        )
        return summary

    return Services(
        backend=backend,
        builder=builder,
        recipe=recipe,
        select=select,
        progress=progress or RunProgress(),
        official=official,
        evaluate=evaluate,
        executor=executor,
    )


def make_executor(config: RunConfig) -> Executor:
    if config.executor == "ray":
        from patchfleet.runs.ray_executor import RayExecutor

        return RayExecutor(config.ray_address)
    return LocalExecutor()


@dataclass(frozen=True)
class NodeKit:
    """How any node makes its own backend, image builder and official images from the run config: the
    factories of the `OnNode`s that Ray units carry (each made once per worker process)."""

    config: RunConfig
    log: Callable[[str], None]

    def key(self, kind: str) -> str:
        settings = self.config.model_dump_json(include={"sandbox", "data", "images"})
        return f"{kind}:{hashlib.sha256(settings.encode()).hexdigest()[:16]}"

    def make_backend(self) -> Any:
        return self.config.sandbox.backend(HostTrust.from_env())  # this node's engine and CA bundle

    def make_builder(self) -> ImageBuilder:
        backend = OnNode(self.key("backend"), self.make_backend).get()
        allow_pull = self.config.sandbox.allow_pull
        return ImageBuilder(
            backend, repo_source=repo_source(self.config), allow_pull=allow_pull, log=self.log
        )

    def make_official(self) -> OfficialImages:
        return OfficialImages(OnNode(self.key("builder"), self.make_builder).get(), self.config.images)


def pipeline_selector(
    config: RunConfig,
    backend: Any,
    builder: ImageBuilder,
    recipe: Callable[[Task], Any],
    source: RepoSource,
    log: Callable[[str], None],
    executor: Executor | None = None,
) -> Selector:
    """The selection pipeline through `runs.select.Selector` (shared with `patchfleet select`): tests,
    matrix, verifier and policies; files under `<out>/selection/<id>/`, cells in `<out>/cells/`."""
    from patchfleet.runs.select import Selector as PipelineSelector
    from patchfleet.runs.select import node_verifier, test_writer_agent
    from patchfleet.selection.verifier import Verifier

    verifier = None
    if config.selection.verifier is not None:
        judge = config.selection.verifier
        if judge.cache_dir is None:
            judge = judge.model_copy(update={"cache_dir": config.outputs.dir / "verifier-cache"})
        verifier = node_verifier(Verifier(judge), executor or LocalExecutor())  # judged where units run
    selector = PipelineSelector(
        backend=config.sandbox.limited(backend),  # the run config's limits in every selection sandbox
        builder=builder,
        recipe=recipe,
        source=source,
        config=config.selection,
        out_dir=config.outputs.dir,
        log=log,
        verifier=verifier,
        test_writer=test_writer_agent(config.selection, config.agent.model),
        executor=executor or LocalExecutor(),
    )

    def select(job: SelectJob) -> Decision:
        # the image the task's agents ran in (official or ours, decided once by `batch.ensure_image`)
        row = selector.select(
            job.task,
            job.candidates,
            job.trajectories,
            image=job.image,
            env=job.env,
            prepare=job.prepare,
            image_id=job.image_id,
            budget=job.budget,
        )
        if row.get("error"):
            raise SelectionFailed(row["error"])
        return Decision(
            instance_id=job.task.id,
            policy=row.get("policy") or config.selection.policy,
            chosen=row.get("chosen"),
            ranking=row.get("ranking") or [],
            reasons=row.get("reasons") or [],
            scores=row.get("scores") or {},
        )

    return select


def run(
    config: RunConfig,
    *,
    select: Selector | None = None,
    progress: RunProgress | None = None,
    warn: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Check everything, then run (or resume) the batch; returns its summary."""
    if config.executor == "ray":
        from patchfleet.runs.ray_executor import connect

        connect(config.ray_address)  # an unreachable cluster fails here, before any work
    config.selection.check()
    tasks, eval_specs = load_run_tasks(config, warn)
    if config.agent.model is None and not config.parallel.models:
        raise ConfigError(
            "no model configured: pass --model (and --api-base), or set agent.model in --config"
        )
    checked: set[str] = set()
    for task in tasks:  # per task: a replay model may name one recording per task
        for spec in task_plan(config, task.id):
            key = spec.model.model_dump_json()
            if key not in checked:
                checked.add(key)
                check_model(spec.model)
    others = other_candidates(config, warn)
    services = build_services(config, select=select, progress=progress, log=warn)
    if services.official is not None:
        try:  # `--images official`: every task's official image is here or pullable, before any work
            official_images(services.official, [task.id for task in tasks])
        except ConfigError:
            services.executor.close()
            raise
    return run_batch(config, tasks, eval_specs, services, other_candidates=others)


def batch_shorthands(
    *,
    dataset: str | None = None,
    instance_ids: list[str] | None = None,
    model: str | None = None,
    models: list[str] | None = None,
    api_base: str | None = None,
    samples: int | None = None,
    temperatures: str | None = None,
    policy: str | None = None,
    workers: int | None = None,
    budget: float | None = None,
    candidates: list[Path] | None = None,
    evaluate: bool | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    db: str | None = None,
    out: Path | None = None,
    mirrors: Path | None = None,
    layout: str | None = None,
    local: Path | None = None,
    recipes: Path | None = None,
    pull: bool | None = None,
    docker_host: str | None = None,
    max_llm_calls: int | None = None,
    max_sandboxes: int | None = None,
    images: str | None = None,
) -> dict[str, Any]:
    """`patchfleet batch` flags as the `RunConfig` keys they stand for (None: not given)."""
    keys: dict[str, Any] = {
        "data.dataset": dataset,
        "data.instance_ids": instance_ids or None,
        "data.candidates": [str(p) for p in candidates] if candidates else None,
        "data.mirrors": mirrors,
        "data.layout": layout,
        "data.local": local,
        "data.recipes": recipes,
        "parallel.n": samples,
        "selection.policy": policy,
        "workers": workers,
        "budget": budget,
        "evaluate": evaluate,
        "executor": executor,
        "ray_address": ray_address,
        "db": db,
        "outputs.dir": out,
        "sandbox.allow_pull": pull,
        "sandbox.docker_host": docker_host,
        "max_llm_calls": max_llm_calls,
        "max_sandboxes": max_sandboxes,
        "images": images,
    }
    if temperatures is not None:
        try:
            keys["parallel.temperatures"] = [float(t) for t in temperatures.split(",") if t.strip()]
        except ValueError as exc:
            raise ConfigError(f"--temperatures {temperatures!r}: {exc}") from exc
    return {**keys, **model_shorthands(model, api_base, models or ())}
