"""`patchfleet fix`, `patchfleet demo` and `patchfleet inspect`: options in, the stages called, results out.

Registered on the main CLI by `runs/cli.py`; the modules doing the work are imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from patchfleet.runs.options import (
    ApiBase,
    ApiKeyEnv,
    ConfigFile,
    DockerHost,
    MaxSandboxes,
    Model,
    Pull,
    Sets,
    Temperatures,
    errors_as_messages,
)

console = Console()
DEFAULTS = {"outputs.dir": "out/fix"}  # below the config file: only where nothing else names a folder


def _log(line: str) -> None:
    console.print(line, markup=False, highlight=False)


def fix(
    repo: Annotated[str, typer.Argument(help="a local git repository or a clone URL")],
    issue: Annotated[str, typer.Argument(help="the issue: its text, a file, or a GitHub issue URL")],
    model: Model = None,
    n: Annotated[
        int | None, typer.Option("--n", "--samples", min=1, help="trajectories to run (parallel.n)")
    ] = None,
    setup: Annotated[str | None, typer.Option(help="install command, replacing the detected steps")] = None,
    test_cmd: Annotated[str | None, typer.Option(help="test command, replacing the detected one")] = None,
    policy: Annotated[
        str | None, typer.Option(help="selection policy: default, codemonkeys, r2e, agentless")
    ] = None,
    generated_tests: Annotated[
        int | None, typer.Option(min=0, help="test-writing trajectories (selection.generated_tests)")
    ] = None,
    verifier: Annotated[
        bool, typer.Option(help="judge each candidate with the run's model (unless selection.verifier)")
    ] = True,
    apply: Annotated[bool, typer.Option(help="commit the chosen patch to a new branch of REPO")] = False,
    branch: Annotated[str | None, typer.Option(help="the branch --apply creates")] = None,
    config: ConfigFile = None,
    set_: Sets = None,
    api_base: ApiBase = None,
    api_key_env: ApiKeyEnv = None,
    temperatures: Temperatures = None,
    max_sandboxes: MaxSandboxes = None,
    out: Annotated[Path | None, typer.Option(help="the run folder (outputs.dir; default out/fix)")] = None,
    pull: Pull = None,
    docker_host: DockerHost = None,
) -> None:
    """Fix one issue in any Python repository: N trajectories, the selector, a report (and a branch).
    Exit code 0 with a chosen patch, 1 when no candidate was usable, 2 on an error."""
    from patchfleet.data.issue_input import read_issue
    from patchfleet.runs.config import RunConfig, model_shorthands, with_api_key
    from patchfleet.runs.fix import FixConfig, run_fix
    from patchfleet.runs.trajectories import parallel_config

    with errors_as_messages():
        shorthands = {
            **model_shorthands(model, api_base),
            "parallel.n": n,
            "parallel.temperatures": parallel_config(1, temperatures).temperatures if temperatures else None,
            "selection.policy": policy,
            "selection.generated_tests": generated_tests,
            "max_sandboxes": max_sandboxes,
            "outputs.dir": out,
            "sandbox.allow_pull": pull,
            "sandbox.docker_host": docker_host,
        }
        loaded = RunConfig.load(config, set_ or [], shorthands, defaults=DEFAULTS)
        run_config = with_api_key(loaded, api_key_env)
        settings = FixConfig.from_run_config(
            run_config, setup=setup, test_cmd=test_cmd, verifier=verifier, apply=apply, branch=branch
        )
        run = run_fix(repo, read_issue(issue), settings, log=_log)
    show_run(run)
    if not run.patch:
        raise typer.Exit(code=1)


# the few scores worth a column in the terminal; the report and `inspect` show them all
KEY_SCORES = ("score", "verifier", "generated_passed", "regression_failures", "tests_passed", "tests")


def show_run(run) -> None:
    """The decision, its reasons and the chosen patch, then where the files are."""
    decision = run.decision
    table = Table("candidate", "votes", "size", "flags", "scores", title=f"candidates of {run.task.id}")
    for c in run.candidates:
        found = decision.scores.get(c.id, {})
        scores = " ".join(f"{k}={_short(found[k])}" for k in KEY_SCORES if k in found)
        mark = " *" if c.id == decision.chosen else ""
        table.add_row(c.id + mark, str(len(c.sources)), str(c.size), ", ".join(c.flags), scores)
    console.print(table)
    console.print(f"[bold]decision[/] ({decision.policy}):")
    for reason in decision.reasons:
        console.print(f"  - {reason}", markup=False, highlight=False)
    if run.patch:
        console.print(Syntax(run.patch, "diff", theme="ansi_dark", word_wrap=True))
    else:
        console.print("[yellow]no usable patch[/yellow]")
    if run.branch:
        console.print(
            f"committed on branch [bold]{run.branch}[/] ({run.commit[:12]}); your working tree is untouched"
        )
    console.print(
        f"cost ${run.cost:.4f}; report {run.report}; patch {run.run_dir / run.task.id / 'chosen.patch'}",
        highlight=False,
    )


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def demo(
    model: Annotated[
        str | None, typer.Option(help="a real litellm model instead of the scripted one")
    ] = None,
    api_base: ApiBase = None,
    api_key_env: ApiKeyEnv = None,
    n: Annotated[int, typer.Option("--n", min=1, help="trajectories")] = 7,
    policy: Annotated[
        str, typer.Option(help="selection policy: default, codemonkeys, r2e, agentless")
    ] = "default",
    set_: Sets = None,
    out: Annotated[Path, typer.Option(help="where the repository, the run and the report go")] = Path(
        "out/demo"
    ),
    pull: Pull = None,
    docker_host: DockerHost = None,
) -> None:
    """The whole pipeline on a bundled repository with a real bug; offline with a scripted model."""
    import os

    # offline: litellm would otherwise try to download its price table at its first call
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from patchfleet.runs.demo import REAL_MODEL_FLAG, run_demo

    with errors_as_messages():
        result = run_demo(
            out,
            model=model,
            api_base=api_base,
            api_key_env=api_key_env,
            n=n,
            policy=policy,
            overrides=tuple(set_ or ()),
            docker_host=docker_host,
            allow_pull=pull,
            log=_log,
        )
    show_run(result.run)
    chosen = result.run.decision.chosen
    right = sum(result.evaluation.values())
    console.print(
        f"hidden test: {right} of {len(result.evaluation)} candidate(s) resolve the issue; the chosen one "
        + ("[green]does[/green]" if chosen and result.evaluation.get(chosen) else "[red]does not[/red]")
    )
    if result.scripted:
        console.print(
            f"[bold]The model was scripted.[/bold] For a real model: patchfleet demo {REAL_MODEL_FLAG}",
            highlight=False,
        )


def inspect(
    run: Annotated[Path, typer.Argument(help="a run folder (patchfleet fix/demo/batch --out)")],
    task: Annotated[str | None, typer.Argument(help="one task of the run")] = None,
    trajectory: Annotated[int | None, typer.Option(help="show this trajectory's steps")] = None,
) -> None:
    """Browse a run's trajectories, candidates and decisions in the terminal."""
    from patchfleet.runs.inspect_run import inspect_run

    with errors_as_messages():
        inspect_run(run, task, trajectory, console)
