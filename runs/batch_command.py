"""`patchfleet batch`: its flags as `RunConfig` keys (`runs.wiring.batch_shorthands`), then
`runs.wiring.run`, which checks every input before the first image is built. Kept out of cli.py, as the
other commands are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from patchfleet.runs.options import (
    SPREAD_OPTIONS,
    ApiBase,
    ApiKeyEnv,
    ConfigFile,
    Dataset,
    DockerHost,
    Images,
    InstanceIds,
    Layout,
    Local,
    MaxLlmCalls,
    MaxSandboxes,
    Mirrors,
    Model,
    Pull,
    Recipes,
    Sets,
    SpreadCommand,
    Temperatures,
    errors_as_messages,
    spread,
)

console = Console()


class BatchCommand(SpreadCommand):
    """`--instance-ids`, `--candidates` and `--models` take several values after one flag."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        names = SPREAD_OPTIONS | {"--candidates", "--models"}
        return super(SpreadCommand, self).parse_args(ctx, spread(args, names))


def batch(
    config: ConfigFile = None,
    set_: Sets = None,
    dataset: Dataset = None,
    instance_ids: InstanceIds = None,
    model: Model = None,
    models: Annotated[list[str] | None, typer.Option(help="several models, cycled over the samples")] = None,
    api_base: ApiBase = None,
    api_key_env: ApiKeyEnv = None,
    samples: Annotated[int | None, typer.Option(min=1, help="trajectories per task")] = None,
    temperatures: Temperatures = None,
    policy: Annotated[str | None, typer.Option(help="selection policy")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="tasks at once")] = None,
    budget: Annotated[
        float | None, typer.Option(min=0.0, help="USD for the whole run, never exceeded")
    ] = None,
    candidates: Annotated[
        list[Path] | None, typer.Option(help="other systems' predictions files to select among too")
    ] = None,
    evaluate: Annotated[
        bool | None, typer.Option("--evaluate/--no-evaluate", help="run the hidden tests")
    ] = None,
    executor: Annotated[str | None, typer.Option(help="local or ray")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address")] = None,
    db: Annotated[str | None, typer.Option(help="ledger SQLAlchemy URL (default: SQLite in --out)")] = None,
    out: Annotated[Path | None, typer.Option(help="the run folder (resume: the same command again)")] = None,
    mirrors: Mirrors = None,
    layout: Layout = None,
    local: Local = None,
    recipes: Recipes = None,
    images: Images = None,
    max_llm_calls: MaxLlmCalls = None,
    max_sandboxes: MaxSandboxes = None,
    pull: Pull = None,
    live: Annotated[
        bool | None, typer.Option("--live/--no-live", help="dashboard (default: on a terminal)")
    ] = None,
    docker_host: DockerHost = None,
) -> None:
    """Tasks -> N trajectories each -> selection -> preds.jsonl/preds.json (-> evaluation); resumable."""
    from patchfleet.runs import wiring
    from patchfleet.runs.config import RunConfig, with_api_key
    from patchfleet.runs.progress import make_progress

    with errors_as_messages():
        flags = wiring.batch_shorthands(
            dataset=dataset,
            instance_ids=instance_ids,
            model=model,
            models=models,
            api_base=api_base,
            samples=samples,
            temperatures=temperatures,
            policy=policy,
            workers=workers,
            budget=budget,
            candidates=candidates,
            evaluate=evaluate,
            executor=executor,
            ray_address=ray_address,
            db=db,
            out=out,
            mirrors=mirrors,
            layout=layout,
            local=local,
            recipes=recipes,
            pull=pull,
            docker_host=docker_host,
            max_llm_calls=max_llm_calls,
            max_sandboxes=max_sandboxes,
            images=images,
        )
        run_config = with_api_key(RunConfig.load(config, set_ or [], flags), api_key_env)
        summary = wiring.run(run_config, progress=make_progress(console, live=live), warn=_log)
    evaluation = summary.get("evaluation") or {}
    console.print(
        f"{summary['predictions']} prediction(s) for {summary['tasks']} task(s), cost ${summary['cost']:.4f}"
        + (f", resolved {evaluation.get('resolved_instances')}" if evaluation else "")
        + f"; {run_config.outputs.dir}/preds.jsonl, summary.json",
        highlight=False,
    )


def _log(line: str) -> None:
    console.print(line, markup=False, highlight=False)
