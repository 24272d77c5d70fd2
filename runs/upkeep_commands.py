"""`patchfleet doctor`, `sandbox list|prune`, `images build|list|prune`, `ledger rebuild|export|import`: the
commands that look after the machine and the run index. Registered on the main CLI by `runs/cli.py`; the
modules doing the work are imported when a command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from patchfleet.errors import ConfigError
from patchfleet.runs.options import (
    ConfigFile,
    DockerHost,
    Layout,
    Local,
    Mirrors,
    Pull,
    Sets,
    errors_as_messages,
)

console = Console()
sandbox_app = typer.Typer(help="Inspect and clean up sandbox containers.", no_args_is_help=True)
images_app = typer.Typer(help="Build, list and prune patchfleet's layered images.", no_args_is_help=True)
ledger_app = typer.Typer(help="The SQL ledger of batch runs (an index of their files).", no_args_is_help=True)


def _log(line: str) -> None:
    console.print(line, markup=False, highlight=False)


def _backend(docker_host: str | None):
    """A backend for looking at the engine (listing, pruning): no sandbox is started through it."""
    from patchfleet.sandbox.config import DockerConfig
    from patchfleet.sandbox.trust import HostTrust

    return DockerConfig(docker_host=docker_host).backend(HostTrust.from_env())


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

    with errors_as_messages():
        rows = reaper.list_sandboxes(_backend(docker_host).client, run=run)
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

    with errors_as_messages():
        removed = reaper.prune(_backend(docker_host).client, everything=all_, run=run)
    console.print(f"removed {len(removed)} container(s)")


@images_app.command("build")
def images_build(
    distro: Annotated[
        str, typer.Option(help="base release: bookworm, bullseye (Debian) or jammy, focal, bionic (Ubuntu)")
    ] = "bookworm",
    repo: Annotated[str | None, typer.Option(help="owner/name: also build an instance layer")] = None,
    commit: Annotated[str | None, typer.Option(help="commit of --repo (default HEAD)")] = None,
    mirrors: Mirrors = None,
    layout: Layout = None,
    local: Local = None,
    pull: Pull = None,
    docker_host: DockerHost = None,
    config: ConfigFile = None,
    set_: Sets = None,
) -> None:
    """Build (or find) the base image, and optionally an instance layer of a repository at a commit.
    The source and the engine are the run config's (data.*, sandbox.*): a build obeys its disk rules."""
    from patchfleet.data.sources import head_commit
    from patchfleet.runs.config import RunConfig
    from patchfleet.runs.wiring import repo_source
    from patchfleet.sandbox.images import BaseLayer, ImageBuilder, ImageSpec, InstanceLayer
    from patchfleet.sandbox.trust import HostTrust

    with errors_as_messages():
        flags = {
            "data.mirrors": mirrors,
            "data.layout": layout,
            "data.local": local,
            "sandbox.allow_pull": pull,
            "sandbox.docker_host": docker_host,
        }
        run_config = RunConfig.load(config, set_ or [], flags)
        source = repo_source(run_config)
        local = run_config.data.local
        instance = None
        if repo and commit is None:
            if local is None:
                raise ConfigError("--commit is required unless the source is --local")
            commit = head_commit(local)
        if repo:
            key = repo.replace("/", "__") + f"-{(commit or 'HEAD')[:12]}"
            instance = InstanceLayer(key=key, repo=repo, commit=commit or "HEAD")
        spec = ImageSpec(base=BaseLayer(distro=distro), instance=instance)
        backend = run_config.sandbox.backend(HostTrust.from_env())
        allow_pull = run_config.sandbox.allow_pull
        tag = ImageBuilder(backend, repo_source=source, allow_pull=allow_pull, log=_log).ensure(spec)
    console.print(f"[green]ready:[/green] {tag}")


@images_app.command("list")
def images_list(docker_host: DockerHost = None) -> None:
    """patchfleet's images with their layer kind and size."""
    from patchfleet.sandbox.images import ImageBuilder

    with errors_as_messages():
        rows = ImageBuilder(_backend(docker_host)).list()
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

    with errors_as_messages():
        removed = ImageBuilder(_backend(docker_host)).prune(tuple(layer or ["instance"]))
    for tag in removed:
        console.print(f"removed {tag}")
    console.print(f"removed {len(removed)} image tag(s)")


@ledger_app.command("rebuild")
def ledger_rebuild(
    out: Annotated[Path, typer.Argument(help="a batch run folder")],
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in the folder)")] = None,
) -> None:
    """Rebuild a run's ledger from its files (after a lost database, or into a shared one)."""
    from patchfleet.runs.ledger import rebuild_run

    with errors_as_messages():
        found = rebuild_run(out, db)
    console.print(
        f"run {found['run_id']}: {found['tasks']} task(s), trajectories {found['trajectories']}, "
        f"cost ${found['cost']:.4f} in {found['ledger']}",
        highlight=False,
    )


@ledger_app.command("export")
def ledger_export(
    out: Annotated[Path, typer.Argument(help="a batch run folder")],
    archive: Annotated[Path, typer.Argument(help="the archive to write (.tar.gz or .tar)")],
    with_logs: Annotated[bool, typer.Option(help="also pack test and build logs")] = False,
) -> None:
    """Pack a run folder into one portable archive (no database, no machine paths; logs on request)."""
    from patchfleet.runs.archive import export_run

    with errors_as_messages():
        packed = export_run(out, archive, with_logs=with_logs)
    left_out = f"; {packed.skipped_logs} log file(s) left out (--with-logs packs them)"
    console.print(
        f"{archive}: {packed.files} file(s), {packed.bytes / 1e6:.1f} MB before compression, "
        f"{archive.stat().st_size / 1e6:.1f} MB written" + (left_out if packed.skipped_logs else ""),
        highlight=False,
    )


@ledger_app.command("import")
def ledger_import(
    archive: Annotated[Path, typer.Argument(help="an archive written by `ledger export`")],
    out: Annotated[Path, typer.Argument(help="the run folder to fill (new, or the same run's)")],
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in the folder)")] = None,
) -> None:
    """Unpack a run archive (files already in the folder are kept) and index it; the same `batch`
    command then resumes the run, skipping what the archive holds finished."""
    from patchfleet.runs.archive import import_run
    from patchfleet.runs.ledger import rebuild_run

    with errors_as_messages():
        unpacked = import_run(archive, out)
        found = rebuild_run(out, db)
    console.print(
        f"run {unpacked.run_id}: {unpacked.added} file(s) added, {unpacked.kept} already there; "
        f"{found['tasks']} task(s) indexed in {found['ledger']}",
        highlight=False,
    )
