"""The `patchfleet` command line. Thin: parse options, build configs, call the stages, print results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from patchfleet.errors import ConfigError, PatchfleetError
from patchfleet.runs.options import (
    DockerHost,
    SpreadCommand,
    VersionOption,
    errors_as_messages,
)
from patchfleet.runs.options import fail as _fail

app = typer.Typer(
    help="Resolve software issues with many sandboxed trajectories and a hybrid selector.",
    no_args_is_help=True,
)
sandbox_app = typer.Typer(help="Inspect and clean up sandbox containers.", no_args_is_help=True)
images_app = typer.Typer(help="Build, list and prune patchfleet's layered images.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(images_app, name="images")
console = Console()


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
    from patchfleet.data.sources import head_commit
    from patchfleet.sandbox.images import BaseLayer, ImageBuilder, ImageSpec, InstanceLayer

    with errors_as_messages():
        source = _repo_source(mirrors, layout, local)
        instance = None
        if repo and commit is None:
            if local is None:
                raise ConfigError("--commit is required unless the source is --local")
            commit = head_commit(local)
        if repo:
            key = repo.replace("/", "__") + f"-{(commit or 'HEAD')[:12]}"
            instance = InstanceLayer(key=key, repo=repo, commit=commit or "HEAD")
        spec = ImageSpec(base=BaseLayer(distro=distro), instance=instance)
        builder = ImageBuilder(_backend(docker_host), repo_source=source, allow_pull=pull, log=_log)
        tag = builder.ensure(spec)
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


# Evaluation and trajectories; their wiring lives in runs/eval_command.py and runs/trajectories_command.py.
from patchfleet.runs.eval_command import evaluate as _eval_command  # noqa: E402
from patchfleet.runs.trajectories_command import trajectories as _trajectories_command  # noqa: E402

app.command("eval", cls=SpreadCommand)(_eval_command)
app.command("trajectories", cls=SpreadCommand)(_trajectories_command)


# Batch runs; the wiring lives in runs/batch_command.py (flags) and runs/wiring.py (the run).
from patchfleet.runs.batch_command import BatchCommand as _BatchCommand  # noqa: E402
from patchfleet.runs.batch_command import batch as _batch_command  # noqa: E402

app.command("batch", cls=_BatchCommand)(_batch_command)


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
