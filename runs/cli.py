"""The `patchfleet` command line. Thin: parse options, build configs, call the stages, print results."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from patchfleet.errors import ConfigError, PatchfleetError
from patchfleet.runs.options import (
    ConfigFile,
    Dataset,
    Images,
    InstanceIds,
    Layout,
    Mirrors,
    Recipes,
    RequiredInstanceIds,
    Sets,
    SpreadCommand,
    VersionOption,
)

app = typer.Typer(
    help="Resolve software issues with many sandboxed trajectories and a hybrid selector.",
    no_args_is_help=True,
)
sandbox_app = typer.Typer(help="Inspect and clean up sandbox containers.", no_args_is_help=True)
images_app = typer.Typer(help="Build, list and prune patchfleet's layered images.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(images_app, name="images")
console = Console()

DockerHost = Annotated[str | None, typer.Option(help="Docker engine URL (default: DOCKER_HOST or local)")]


def _fail(exc: PatchfleetError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    log = getattr(exc, "log", "")
    if log:
        console.print(log[-3000:], markup=False, highlight=False)
    return typer.Exit(code=2)


def _log(line: str) -> None:
    console.print(line, markup=False, highlight=False)


def _repo_source(mirrors: Path | None, layout: str, local: Path | None):
    from patchfleet.data.sources import CloneUrl, LocalCheckout, MirrorFolder

    if local:
        return LocalCheckout(path=local)
    return MirrorFolder(root=mirrors, layout=layout) if mirrors else CloneUrl()


def _backend(docker_host: str | None):
    from patchfleet.sandbox.config import DockerConfig
    from patchfleet.sandbox.trust import HostTrust

    return DockerConfig(docker_host=docker_host).backend(HostTrust.from_env())


@app.command()
def doctor(docker_host: DockerHost = None) -> None:
    """Check Docker, disk, base images and CA/proxy settings; say what to fix."""
    from patchfleet.runs.doctor import Status, run_checks
    from patchfleet.sandbox.trust import HostTrust

    checks = run_checks(HostTrust.from_env(), docker_host)
    table = Table(show_header=True, header_style="bold")
    for column in ("check", "status", "detail", "what to do"):
        table.add_column(column, overflow="fold")
    colours = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red"}
    for check in checks:
        table.add_row(check.name, f"[{colours[check.status]}]{check.status}[/]", check.detail, check.fix)
    console.print(table)
    if any(check.status is Status.FAIL for check in checks):
        raise typer.Exit(code=1)


@sandbox_app.command("list")
def sandbox_list(docker_host: DockerHost = None, run: str | None = None) -> None:
    """List patchfleet's containers, marking the leaked ones (their owner process is gone)."""
    from patchfleet.sandbox import reaper

    try:
        rows = reaper.list_sandboxes(_backend(docker_host).client, run=run)
    except PatchfleetError as exc:
        raise _fail(exc) from exc
    table = Table("container", "status", "image", "role", "leaked")
    for row in rows:
        table.add_row(
            row.id[:12], row.status, row.image, row.labels.get("patchfleet.role", ""), str(row.leaked)
        )
    console.print(table)


@sandbox_app.command("prune")
def sandbox_prune(
    docker_host: DockerHost = None,
    run: str | None = None,
    all_: Annotated[bool, typer.Option("--all", help="also remove containers of live processes")] = False,
) -> None:
    """Remove leaked sandbox containers (found by label)."""
    from patchfleet.sandbox import reaper

    try:
        removed = reaper.prune(_backend(docker_host).client, everything=all_, run=run)
    except PatchfleetError as exc:
        raise _fail(exc) from exc
    console.print(f"removed {len(removed)} container(s)")


@images_app.command("build")
def images_build(
    distro: Annotated[
        str, typer.Option(help="base release: bookworm, bullseye (Debian) or jammy, focal, bionic (Ubuntu)")
    ] = "bookworm",
    repo: Annotated[str | None, typer.Option(help="owner/name: also build an instance layer")] = None,
    commit: Annotated[str | None, typer.Option(help="commit of --repo (default HEAD)")] = None,
    mirrors: Annotated[Path | None, typer.Option(help="folder of bare mirrors")] = None,
    layout: Annotated[str, typer.Option(help="mirror path layout")] = "{owner}/{name}.git",
    local: Annotated[Path | None, typer.Option(help="a local git checkout as the source")] = None,
    pull: Annotated[bool, typer.Option(help="try a registry before building locally")] = True,
    docker_host: DockerHost = None,
) -> None:
    """Build (or find) the base image, and optionally an instance layer of a repository at a commit."""
    from patchfleet.sandbox.images import BaseLayer, ImageBuilder, ImageSpec, InstanceLayer

    source = _repo_source(mirrors, layout, local)
    instance = None
    if repo and commit is None:
        if local is None:
            console.print("[red]error:[/red] --commit is required unless the source is --local")
            raise typer.Exit(code=2)
        # content-hashed tags must name a fixed commit, never a moving ref
        commit = subprocess.run(
            ["git", "-C", str(local), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    if repo:
        instance = InstanceLayer(
            key=repo.replace("/", "__") + f"-{(commit or 'HEAD')[:12]}", repo=repo, commit=commit or "HEAD"
        )
    spec = ImageSpec(base=BaseLayer(distro=distro), instance=instance)
    try:
        builder = ImageBuilder(
            _backend(docker_host),
            repo_source=source,
            allow_pull=pull,
            log=_log,
        )
        tag = builder.ensure(spec)
    except PatchfleetError as exc:
        raise _fail(exc) from exc
    console.print(f"[green]ready:[/green] {tag}")


@images_app.command("list")
def images_list(docker_host: DockerHost = None) -> None:
    """patchfleet's images with their layer kind and size."""
    from patchfleet.sandbox.images import ImageBuilder

    try:
        rows = ImageBuilder(_backend(docker_host)).list()
    except PatchfleetError as exc:
        raise _fail(exc) from exc
    table = Table("image", "layer", "size", "created")
    total = 0
    for row in rows:
        size = int(row["size"])  # type: ignore[call-overload]
        total += size
        table.add_row(
            ", ".join(row["tags"]) or str(row["id"]),
            str(row["layer"]),
            f"{size / 2**20:.0f} MB",
            str(row["created"])[:19],
        )
    console.print(table)
    console.print(f"{len(rows)} image(s); sizes include shared parent layers (sum {total / 2**30:.2f} GB)")


@images_app.command("prune")
def images_prune(
    layer: Annotated[
        list[str] | None, typer.Option(help="layer kinds to remove: instance, env, base")
    ] = None,
    docker_host: DockerHost = None,
) -> None:
    """Remove patchfleet images of the given layer kinds (default: instance layers)."""
    from patchfleet.sandbox.images import ImageBuilder

    try:
        removed = ImageBuilder(_backend(docker_host)).prune(tuple(layer or ["instance"]))
    except PatchfleetError as exc:
        raise _fail(exc) from exc
    for tag in removed:
        console.print(f"removed {tag}")
    console.print(f"removed {len(removed)} image tag(s)")


@app.callback()
def _options(version: VersionOption = False) -> None:
    """Resolve software issues with many sandboxed trajectories and a hybrid selector."""


@app.command("eval", cls=SpreadCommand)
def evaluate(
    predictions: Annotated[str, typer.Option(help="predictions .jsonl / .json (list or dict), or `gold`")],
    dataset: Annotated[
        str, typer.Option(help="SWE-bench rows: .jsonl, .json, .parquet or a HF dataset name")
    ],
    instance_ids: InstanceIds = None,
    workers: Annotated[int, typer.Option(min=1, help="instances evaluated at once")] = 1,
    mirrors: Annotated[Path | None, typer.Option(help="folder of bare upstream mirrors")] = None,
    layout: Annotated[str, typer.Option(help="mirror path layout")] = "{owner}/{name}.git",
    out: Annotated[
        Path,
        typer.Option(
            help="laid out as the harness's working directory: the report <model>.<run_id>.json, "
            "logs in logs/run_evaluation/<run_id>/<model>/<id>/, the verdict cache in verdicts/"
        ),
    ] = Path("out/eval"),
    run_id: Annotated[str, typer.Option(help="names the run's report and log folder")] = "patchfleet",
    recipes: Annotated[
        Path | None, typer.Option(help="JSON specs {repo: {version: spec}} for more repos")
    ] = None,
    network: Annotated[
        str, typer.Option(help="test containers' network: bridge (as the harness) or none")
    ] = "bridge",
    images: Images = "auto",
    pull: Annotated[bool, typer.Option(help="try a registry before building base images")] = True,
    docker_host: DockerHost = None,
) -> None:
    """Evaluate predictions with the hidden tests; verdicts as the official SWE-bench harness gives them."""
    from patchfleet.data.recipes import load_specs, recipe_for
    from patchfleet.runs import validate
    from patchfleet.runs.evaluation import Evaluator, run_evaluation, run_report_path

    def skipped(error: Exception) -> None:
        console.print(f"[yellow]skipped:[/yellow] {error}", highlight=False)

    try:  # every input is checked before the first image is built
        network_mode = validate.network(network)
        image_mode = validate.images(images)
        loaded = validate.tasks(dataset, instance_ids)
        for error in loaded.errors:
            skipped(error)
        found = validate.predictions(predictions, loaded, dataset, skipped)
        source = _repo_source(mirrors, layout, None)
        validate.source(source, {task.repo for task in loaded.tasks if task.id in found})
        specs = load_specs(recipes)
        evaluator = Evaluator(
            _backend(docker_host),
            source,
            out,
            allow_pull=pull,
            recipes=lambda task: recipe_for(task, source, specs),
            network=network_mode,
            run_id=run_id,
            images=image_mode,
            specs=specs,
            log=lambda line: console.print(line, markup=False, highlight=False),
        )
        validate.official_images(evaluator.official, found.keys() & {task.id for task in loaded.tasks})
        summary = run_evaluation(
            evaluator,
            loaded.tasks,
            loaded.eval_specs,
            found,
            workers=workers,
            run_id=run_id,
            dataset_ids=[task.id for task in loaded.tasks],  # the dataset, or the ids asked for
        )
    except PatchfleetError as exc:
        raise _fail(exc) from exc
    console.print(
        f"resolved {summary['resolved_instances']} / {summary['submitted_instances']} submitted "
        f"({summary['unresolved_instances']} unresolved, {summary['error_instances']} errors); "
        f"report in {run_report_path(out, run_id, next(iter(found.values())).model_name_or_path)}"
    )


@app.command(cls=SpreadCommand)
def trajectories(
    dataset: Annotated[
        str, typer.Option(help="SWE-bench rows: .jsonl, .json, .parquet or a HF dataset name")
    ],
    instance_ids: RequiredInstanceIds,
    n: Annotated[int, typer.Option(min=1, help="trajectories per task")] = 4,
    config: Annotated[Path | None, typer.Option(help="agent config YAML")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="dotted override, e.g. limits.step_limit=50")
    ] = None,
    model: Annotated[str | None, typer.Option(help="litellm model string, e.g. openai/gpt-5")] = None,
    api_base: Annotated[str | None, typer.Option(help="the model's endpoint")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="environment variable that holds the API key")
    ] = None,
    temperatures: Annotated[
        str | None, typer.Option(help="comma-separated, cycled over the trajectories")
    ] = None,
    start_spread: Annotated[
        float, typer.Option(min=0.0, help="seconds over which the N starts are spread (about one latency)")
    ] = 0.0,
    max_llm_calls: Annotated[int | None, typer.Option(min=1, help="model calls in flight at once")] = None,
    max_sandboxes: Annotated[int | None, typer.Option(min=1, help="live sandboxes at once")] = None,
    workers: Annotated[int, typer.Option(min=1, help="tasks at once")] = 1,
    mirrors: Annotated[Path | None, typer.Option(help="folder of bare upstream mirrors")] = None,
    layout: Annotated[str, typer.Option(help="mirror path layout")] = "{owner}/{name}.git",
    local: Annotated[Path | None, typer.Option(help="a local git checkout as the source")] = None,
    recipes: Annotated[
        Path | None, typer.Option(help="JSON specs {repo: {version: spec}} for more repos")
    ] = None,
    out: Annotated[Path, typer.Option(help="trajectory files and outcomes go here")] = Path(
        "out/trajectories"
    ),
    pull: Annotated[bool, typer.Option(help="try a registry before building base images")] = True,
    images: Images = "auto",
    docker_host: DockerHost = None,
) -> None:
    """Run N trajectories per task in parallel, each in its own sandbox; write them and their outcomes."""
    import threading

    from patchfleet.data.loaders import load_tasks
    from patchfleet.data.recipes import load_specs, recipe_for
    from patchfleet.runs import trajectories as runner
    from patchfleet.runs import validate
    from patchfleet.sandbox.images import ImageBuilder
    from patchfleet.sandbox.official import OfficialImages

    try:
        image_mode = validate.images(images)
        if mirrors and local:
            raise ConfigError("give --mirrors or --local, not both")
        agent = runner.load_agent_config(
            config, set_ or [], model=model, api_base=api_base, api_key_env=api_key_env
        )
        parallel = runner.parallel_config(n, temperatures, start_spread)
        loaded = load_tasks(dataset, instance_ids=instance_ids)
        for error in loaded.errors:
            console.print(f"[yellow]skipped:[/yellow] {error}", highlight=False)
        if loaded.missing_ids:
            raise ConfigError(
                f"unknown or invalid instance id(s) in {dataset}: {', '.join(loaded.missing_ids)}"
            )
        runner.check_models(agent, parallel)
        source = _repo_source(mirrors, layout, local)
        validate.source(source, {task.repo for task in loaded.tasks})
        specs = load_specs(recipes)
        backend = _backend(docker_host)
        builder = ImageBuilder(backend, repo_source=source, allow_pull=pull, log=_log)
        official = OfficialImages(builder, image_mode)
        validate.official_images(official, [task.id for task in loaded.tasks])
        documents = runner.run_tasks(
            loaded.tasks,
            agent,
            parallel,
            backend=backend,
            builder=builder,
            official=official,
            recipe=lambda task: recipe_for(task, source, specs),
            out_dir=out,
            workers=workers,
            llm_limiter=threading.BoundedSemaphore(max_llm_calls) if max_llm_calls else None,
            sandbox_limiter=threading.BoundedSemaphore(max_sandboxes) if max_sandboxes else None,
        )
    except PatchfleetError as exc:
        raise _fail(exc) from exc
    _print_outcomes(documents, out)


def _print_outcomes(documents: list[dict], out: Path) -> None:
    table = Table("task", "#", "status", "steps", "cost", "temp", "patch", "error")
    rows = [(doc["instance_id"], r) for doc in documents for r in doc["trajectories"]]
    for task_id, r in rows:
        lines = r["patch"].splitlines()
        added = sum(line.startswith("+") and not line.startswith("+++") for line in lines)
        removed = sum(line.startswith("-") and not line.startswith("---") for line in lines)
        colour = "green" if r["exit_status"] == "Submitted" else "yellow" if not r["error"] else "red"
        table.add_row(
            task_id,
            str(r["index"]),
            f"[{colour}]{r['exit_status']}[/]",
            str(r["steps"]),
            f"${r['cost']:.4f}",
            "" if r["temperature"] is None else f"{r['temperature']:g}",
            f"+{added} -{removed}" if lines else "",
            (r["error"] or {}).get("message", "")[:80],
        )
    console.print(table)
    submitted = sum(r["exit_status"] == "Submitted" for _, r in rows)
    console.print(
        f"{submitted} / {len(rows)} trajectories submitted over {len(documents)} task(s); "
        f"outcomes in {out}/<instance>/outcomes.json"
    )


class _BatchCommand(SpreadCommand):
    """`--instance-ids`, `--candidates` and `--models` take several values after one flag."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        from patchfleet.runs.options import SPREAD_OPTIONS, spread

        names = SPREAD_OPTIONS | {"--candidates", "--models"}
        return super(SpreadCommand, self).parse_args(ctx, spread(args, names))


@app.command(cls=_BatchCommand)
def batch(
    config: ConfigFile = None,
    set_: Sets = None,
    dataset: Dataset = None,
    instance_ids: InstanceIds = None,
    model: Annotated[str | None, typer.Option(help="litellm model string, e.g. openai/gpt-5")] = None,
    models: Annotated[list[str] | None, typer.Option(help="several models, cycled over the samples")] = None,
    api_base: Annotated[str | None, typer.Option(help="the model's endpoint")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="environment variable that holds the API key")
    ] = None,
    samples: Annotated[int | None, typer.Option(min=1, help="trajectories per task")] = None,
    temperatures: Annotated[str | None, typer.Option(help="comma-separated, cycled over the samples")] = None,
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
    local: Annotated[Path | None, typer.Option(help="a local git checkout as the source")] = None,
    recipes: Recipes = None,
    images: Annotated[str | None, typer.Option(help="auto, official or local (see eval --help)")] = None,
    max_llm_calls: Annotated[int | None, typer.Option(min=1, help="model calls in flight at once")] = None,
    max_sandboxes: Annotated[int | None, typer.Option(min=1, help="live agent sandboxes at once")] = None,
    pull: Annotated[
        bool | None, typer.Option("--pull/--no-pull", help="try a registry for base images")
    ] = None,
    live: Annotated[
        bool | None, typer.Option("--live/--no-live", help="dashboard (default: on a terminal)")
    ] = None,
    docker_host: DockerHost = None,
) -> None:
    """Tasks -> N trajectories each -> selection -> preds.jsonl/preds.json (-> evaluation); resumable."""
    from patchfleet.runs import wiring
    from patchfleet.runs.config import RunConfig, with_api_key
    from patchfleet.runs.progress import make_progress

    try:
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
    except PatchfleetError as exc:
        raise _fail(exc) from exc
    evaluation = summary.get("evaluation") or {}
    console.print(
        f"{summary['predictions']} prediction(s) for {summary['tasks']} task(s), cost ${summary['cost']:.4f}"
        + (f", resolved {evaluation.get('resolved_instances')}" if evaluation else "")
        + f"; {run_config.outputs.dir}/preds.jsonl, summary.json",
        highlight=False,
    )


# Selection over any number of candidate sources; its wiring lives in runs/select_command.py.
from patchfleet.runs.select_command import SelectCommand as _SelectCommand  # noqa: E402
from patchfleet.runs.select_command import select as _select_command  # noqa: E402

app.command("select", cls=_SelectCommand)(_select_command)

ledger_app = typer.Typer(help="The SQL ledger of batch runs (an index of their files).", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("rebuild")
def ledger_rebuild(
    out: Annotated[Path, typer.Argument(help="a batch run folder")],
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in the folder)")] = None,
) -> None:
    """Rebuild a run's ledger from its files (after a lost database, or into a shared one)."""
    from patchfleet.runs.ledger import rebuild_run

    try:
        found = rebuild_run(out, db)
    except PatchfleetError as exc:
        raise _fail(exc) from exc
    console.print(
        f"run {found['run_id']}: {found['tasks']} task(s), trajectories {found['trajectories']}, "
        f"cost ${found['cost']:.4f} in {found['ledger']}",
        highlight=False,
    )


# The GitHub Action bot; its logic lives in runs/github (the command module imports only typer at load).
from patchfleet.runs.github.command import bot as _bot_command  # noqa: E402

app.command("bot")(_bot_command)

# One issue, the demo, and browsing a run; logic in runs/fix.py, runs/demo.py, runs/inspect_run.py.
from patchfleet.runs import fix_commands as _fix_commands  # noqa: E402

app.command("fix")(_fix_commands.fix)
app.command("demo")(_fix_commands.demo)
app.command("inspect")(_fix_commands.inspect)


def main() -> None:
    app()
