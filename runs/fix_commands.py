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

from patchfleet.errors import PatchfleetError

console = Console()

Config = Annotated[Path | None, typer.Option(help="agent config YAML")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="dotted override, e.g. limits.step_limit=50")]
ApiBase = Annotated[str | None, typer.Option(help="the model's endpoint")]
ApiKeyEnv = Annotated[str | None, typer.Option(help="environment variable that holds the API key")]
DockerHost = Annotated[str | None, typer.Option(help="Docker engine URL (default: DOCKER_HOST or local)")]
Pull = Annotated[bool, typer.Option(help="try a registry before building base images")]


def _log(line: str) -> None:
    console.print(line, markup=False, highlight=False)


def _fail(exc: PatchfleetError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}", highlight=False)
    log = getattr(exc, "log", "")
    if log:
        console.print(log[-3000:], markup=False, highlight=False)
    return typer.Exit(code=2)


def fix(
    repo: Annotated[str, typer.Argument(help="a local git repository or a clone URL")],
    issue: Annotated[str, typer.Argument(help="the issue: its text, a file, or a GitHub issue URL")],
    model: Annotated[str | None, typer.Option(help="litellm model string, e.g. openai/gpt-5")] = None,
    n: Annotated[int, typer.Option("--n", "--samples", min=1, help="trajectories to run")] = 4,
    setup: Annotated[str | None, typer.Option(help="install command, replacing the detected steps")] = None,
    test_cmd: Annotated[str | None, typer.Option(help="test command, replacing the detected one")] = None,
    policy: Annotated[
        str, typer.Option(help="selection policy: default, codemonkeys, r2e, agentless, or suite-vote")
    ] = "default",
    generated_tests: Annotated[int, typer.Option(min=0, help="test-writing trajectories (votes)")] = 0,
    verifier: Annotated[bool, typer.Option(help="ask the model to judge each candidate")] = True,
    apply: Annotated[bool, typer.Option(help="commit the chosen patch to a new branch of REPO")] = False,
    branch: Annotated[str | None, typer.Option(help="the branch --apply creates")] = None,
    config: Config = None,
    set_: Sets = None,
    api_base: ApiBase = None,
    api_key_env: ApiKeyEnv = None,
    temperatures: Annotated[str | None, typer.Option(help="comma-separated, cycled over the samples")] = None,
    max_sandboxes: Annotated[int | None, typer.Option(min=1, help="live agent sandboxes at once")] = None,
    out: Annotated[Path, typer.Option(help="the run folder")] = Path("out/fix"),
    pull: Pull = True,
    docker_host: DockerHost = None,
) -> None:
    """Fix one issue in any Python repository: N trajectories, a selector, a report (and a branch)."""
    from patchfleet.data.issue_input import read_issue
    from patchfleet.runs import trajectories as runner
    from patchfleet.runs.fix import FixConfig, run_fix

    try:
        agent = runner.load_agent_config(
            config, set_ or [], model=model, api_base=api_base, api_key_env=api_key_env
        )
        settings = FixConfig(
            agent=agent,
            parallel=runner.parallel_config(n, temperatures),
            setup=setup,
            test_cmd=test_cmd,
            out_dir=out,
            docker_host=docker_host,
            allow_pull=pull,
            max_sandboxes=max_sandboxes,
            apply=apply,
            branch=branch,
        )
        runner.check_models(settings.agent, settings.parallel)
        text = read_issue(issue)
        select = selector_for(settings, policy, generated_tests, verifier, repo)
        run = run_fix(repo, text, settings, select=select, log=_log)
    except PatchfleetError as exc:
        raise _fail(exc) from exc
    show_run(run)


def selector_for(settings, policy: str, generated_tests: int, verifier: bool, repo: str):
    """suite-vote: the repository's suite and votes only; any other name: the selection pipeline."""
    from patchfleet.data.sources import LocalCheckout
    from patchfleet.runs.fix_pipeline import pipeline_for
    from patchfleet.runs.fix_select import suite_selector

    if policy == "suite-vote":
        return suite_selector
    local = Path(repo).expanduser()
    return pipeline_for(
        settings.agent,
        policy=policy,
        generated_tests=generated_tests,
        verifier=verifier,
        source=LocalCheckout(path=local) if local.exists() else None,
        run_dir=settings.out_dir,
        log=_log,
    )


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
    pull: Pull = True,
    docker_host: DockerHost = None,
) -> None:
    """The whole pipeline on a bundled repository with a real bug; offline with a scripted model."""
    import os

    # offline: litellm would otherwise try to download its price table at its first call
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from patchfleet.runs.demo import REAL_MODEL_FLAG, run_demo

    try:
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
    except PatchfleetError as exc:
        raise _fail(exc) from exc
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

    try:
        inspect_run(run, task, trajectory, console)
    except PatchfleetError as exc:
        raise _fail(exc) from exc
