"""`patchfleet eval`: its flags as `RunConfig` keys, every input checked before the first image is built,
then `runs.evaluation.run_evaluation`. Kept out of cli.py, as the other commands are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from patchfleet.errors import ConfigError
from patchfleet.runs.options import (
    ConfigFile,
    Dataset,
    DockerHost,
    Images,
    InstanceIds,
    Layout,
    Mirrors,
    Pull,
    Recipes,
    Sets,
    errors_as_messages,
)

console = Console()
DEFAULTS = {"outputs.dir": "out/eval"}  # below the config file: only where nothing else names a folder


def evaluate(
    predictions: Annotated[str, typer.Option(help="predictions .jsonl / .json (list or dict), or `gold`")],
    dataset: Dataset = None,
    instance_ids: InstanceIds = None,
    workers: Annotated[int | None, typer.Option(min=1, help="instances evaluated at once")] = None,
    mirrors: Mirrors = None,
    layout: Layout = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="laid out as the harness's working directory: the report <model>.<run_id>.json, "
            "logs in logs/run_evaluation/<run_id>/<model>/<id>/, the verdict cache in verdicts/ "
            "(default out/eval)"
        ),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="names the run's report and log folder (default patchfleet)")
    ] = None,
    recipes: Recipes = None,
    network: Annotated[
        str | None, typer.Option(help="test containers' network: bridge (default, as the harness) or none")
    ] = None,
    images: Images = None,
    pull: Pull = None,
    docker_host: DockerHost = None,
    config: ConfigFile = None,
    set_: Sets = None,
) -> None:
    """Evaluate predictions with the hidden tests; verdicts as the official SWE-bench harness gives them."""
    from patchfleet.runs.config import RunConfig

    with errors_as_messages():
        flags = eval_shorthands(
            dataset=dataset,
            instance_ids=instance_ids,
            workers=workers,
            mirrors=mirrors,
            layout=layout,
            out=out,
            run_id=run_id,
            recipes=recipes,
            network=network,
            images=images,
            pull=pull,
            docker_host=docker_host,
        )
        run_config = RunConfig.load(config, set_ or [], flags, defaults=DEFAULTS)
        summary, report = run(run_config, predictions, skipped=_skipped, log=_log)
    console.print(
        f"resolved {summary['resolved_instances']} / {summary['submitted_instances']} submitted "
        f"({summary['unresolved_instances']} unresolved, {summary['error_instances']} errors); "
        f"report in {report}"
    )


def eval_shorthands(**flags: Any) -> dict[str, Any]:
    """`patchfleet eval` flags as the `RunConfig` keys they stand for (None: not given). `--network` and
    `--images` are checked here, so that a bad value is named by its flag."""
    from patchfleet.runs import validate

    return {
        "data.dataset": flags["dataset"],
        "data.instance_ids": flags["instance_ids"] or None,
        "data.mirrors": flags["mirrors"],
        "data.layout": flags["layout"],
        "data.recipes": flags["recipes"],
        "eval_workers": flags["workers"],
        "eval_network": validate.network(flags["network"]).value if flags["network"] else None,
        "images": validate.images(flags["images"]).value if flags["images"] else None,
        "outputs.dir": flags["out"],
        "outputs.run_id": flags["run_id"],
        "sandbox.allow_pull": flags["pull"],
        "sandbox.docker_host": flags["docker_host"],
    }


def run(
    config, predictions: str, *, skipped: Callable[[Exception], None], log: Callable[[str], None]
) -> tuple[dict[str, Any], Path]:
    """Check every input, then evaluate; returns the harness's summary and where its report is."""
    from patchfleet.data.recipes import load_specs, recipe_for
    from patchfleet.runs import validate
    from patchfleet.runs.evaluation import Evaluator, run_evaluation, run_report_path
    from patchfleet.runs.wiring import repo_source
    from patchfleet.sandbox.trust import HostTrust

    dataset = config.data.dataset
    if not dataset:
        raise ConfigError("no dataset: pass --dataset (or set data.dataset in --config)")
    loaded = validate.tasks(dataset, config.data.instance_ids)
    for error in loaded.errors:
        skipped(error)
    found = validate.predictions(predictions, loaded, dataset, skipped)
    source = repo_source(config)
    validate.source(source, {task.repo for task in loaded.tasks if task.id in found})
    specs = load_specs(config.data.recipes)
    out, run_id = config.outputs.dir, config.outputs.run_id
    evaluator = Evaluator(
        config.sandbox.backend(HostTrust.from_env()),
        source,
        out,
        allow_pull=config.sandbox.allow_pull,
        recipes=lambda task: recipe_for(task, source, specs),
        network=config.eval_network,
        cpus=config.eval_cpus,
        memory=config.eval_memory,
        run_id=run_id,
        images=config.images,
        specs=specs,
        log=log,
    )
    validate.official_images(evaluator.official, found.keys() & {task.id for task in loaded.tasks})
    summary = run_evaluation(
        evaluator,
        loaded.tasks,
        loaded.eval_specs,
        found,
        workers=config.eval_workers,
        run_id=run_id,
        dataset_ids=[task.id for task in loaded.tasks],  # the dataset, or the ids asked for
    )
    return summary, run_report_path(out, run_id, next(iter(found.values())).model_name_or_path)


def _skipped(error: Exception) -> None:
    console.print(f"[yellow]skipped:[/yellow] {error}", highlight=False)


def _log(line: str) -> None:
    console.print(line, markup=False, highlight=False)
