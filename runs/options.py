"""Command-line option types that several commands share, the official harness's conventions, and
`fail`: the one place a command's errors become messages (one line, exit code 2).

`--instance-ids a b c` takes every value up to the next option, as the harness's `--instance_ids`
(argparse `nargs="+"`) does; click has no such option, so `SpreadCommand` rewrites the arguments to
repeated flags before click parses them (`--instance-ids a --instance-ids b ...`, which also works).
A command opts in with `@app.command(cls=SpreadCommand)` and declares the option with `InstanceIds`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand

from patchfleet.errors import PatchfleetError

# options that take several values after one flag; values run until the next option or `--`
SPREAD_OPTIONS = frozenset({"--instance-ids"})

InstanceIds = Annotated[
    list[str] | None,
    typer.Option(
        "--instance-ids",
        help="only these instances: space-separated after one flag (as the harness), or the flag repeated",
    ),
]

Images = Annotated[
    str | None,
    typer.Option(
        "--images",
        help="auto (default): the official SWE-bench image (swebench/sweb.eval.x86_64.<id>, conda env "
        "testbed) when present or pullable, else ours; official: only official images; local: always ours",
    ),
]


def spread(args: Sequence[str], names: frozenset[str] = SPREAD_OPTIONS) -> list[str]:
    """`--instance-ids a b --out x` -> `--instance-ids a --instance-ids b --out x`; other args unchanged.

    A value after a spread option belongs to it until the next option, so a positional argument must
    come before such an option or after `--` (the same rule as argparse's `nargs="+"`).
    """
    out: list[str] = []
    current: str | None = None  # the spread option whose values are being read
    own_value = False  # the next value is the flag's own (`--instance-ids a`), not an extra one
    for index, arg in enumerate(args):
        if arg == "--":
            out.extend(args[index:])
            break
        if arg.startswith("-") and len(arg) > 1:
            name, has_value, _ = arg.partition("=")
            current = name if name in names else None
            own_value = current is not None and not has_value
            out.append(arg)
        elif current is not None and not own_value:
            out.extend((current, arg))
        else:
            out.append(arg)
            own_value = False
    return out


class SpreadCommand(TyperCommand):
    """A typer command whose `SPREAD_OPTIONS` take several values after one flag."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread(args))


def package_version() -> str:
    try:
        return version("patchfleet")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def print_version(value: bool) -> None:
    """The eager `--version` callback: print and exit before any command runs."""
    if value:
        typer.echo(f"patchfleet {package_version()}")
        raise typer.Exit()


VersionOption = Annotated[
    bool,
    typer.Option("--version", callback=print_version, is_eager=True, help="print the version and exit"),
]


# Shared by the commands that load a dataset, read repositories and take a config. Optional everywhere:
# `patchfleet batch` reads None as "not given" (the run config's value stays).
Dataset = Annotated[
    str | None, typer.Option(help="SWE-bench rows: .jsonl, .json, .parquet or a Hugging Face dataset name")
]
Mirrors = Annotated[Path | None, typer.Option(help="folder of bare upstream mirrors")]
Layout = Annotated[str | None, typer.Option(help="mirror path layout, e.g. '{owner}+{name}/repo'")]
Recipes = Annotated[Path | None, typer.Option(help="JSON specs {repo: {version: spec}} for more repos")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="run config YAML (RunConfig); flags and --set override it")
]
Sets = Annotated[
    list[str] | None, typer.Option("--set", help="dotted override key=value (repeatable), e.g. parallel.n=8")
]
Local = Annotated[Path | None, typer.Option(help="a local git checkout as the source")]
Pull = Annotated[bool | None, typer.Option("--pull/--no-pull", help="try a registry for base images")]
DockerHost = Annotated[str | None, typer.Option(help="Docker engine URL (default: DOCKER_HOST or local)")]
Model = Annotated[str | None, typer.Option(help="litellm model string, e.g. openai/gpt-5")]
ApiBase = Annotated[str | None, typer.Option(help="the model's endpoint")]
ApiKeyEnv = Annotated[str | None, typer.Option(help="environment variable that holds the API key")]
Temperatures = Annotated[str | None, typer.Option(help="comma-separated, cycled over the trajectories")]
MaxLlmCalls = Annotated[int | None, typer.Option(min=1, help="model calls in flight at once")]
MaxSandboxes = Annotated[int | None, typer.Option(min=1, help="live agent sandboxes at once")]

error_console = Console()


def fail(exc: PatchfleetError) -> typer.Exit:
    """The one place an error becomes what the user reads: `error: <message>` on one line (plus the
    tail of the build log an error may carry), and exit code 2. Raise what it returns."""
    error_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
    log = getattr(exc, "log", "")
    if log:
        error_console.print(log[-3000:], markup=False, highlight=False)
    return typer.Exit(code=2)


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """`with errors_as_messages():` around a command's work: every `PatchfleetError` goes to `fail`."""
    try:
        yield
    except PatchfleetError as exc:
        raise fail(exc) from exc
