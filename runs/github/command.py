"""`patchfleet bot`: one GitHub Actions event in, the bot's outcome out (job summary and step outputs).

Registered on the main CLI by `runs/cli.py`; everything heavy is imported when the command runs.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from patchfleet.errors import ConfigError, PatchfleetError
from patchfleet.runs.options import ApiBase, Model, Sets

# The contract with `patchfleet fix` (runs/fix.py): the bot calls, when that module defines it,
#     bot_fix(repo_path: Path, issue_title: str, issue_body: str, *, model: str | None, samples: int,
#             policy: str | None, budget: float | None, overrides: tuple[str, ...] = (),
#             out_dir: Path | None = None) -> patchfleet.runs.github.bot.FixResult
# `overrides` are dotted RunConfig keys (agent.model.api_base="...", agent.limits.step_limit=50); the result
# carries the chosen diff against the checkout's HEAD, a summary, the rationale (tests, candidates, verifier
# scores, decision), the cost in dollars and outcome "patched" or why not. Without it, the bot says on the
# issue that `patchfleet fix` is not available.
FIX_MODULE = "patchfleet.runs.fix"
FIX_FUNCTION = "bot_fix"


def _unavailable(repo_path: Path, issue_title: str, issue_body: str) -> Any:
    raise ConfigError("patchfleet fix is not available yet (patchfleet.runs.fix.bot_fix is missing)")


def load_fix(spec: str | None, **options: Any):
    """The fix function: `module:function` when given (custom pipelines, tests), else patchfleet fix."""
    if spec:
        module_name, _, name = spec.partition(":")
        try:
            return getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"--fix {spec}: cannot import it ({exc})") from exc
    try:
        module = importlib.import_module(FIX_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != FIX_MODULE:
            raise
        return _unavailable
    bot_fix = getattr(module, FIX_FUNCTION, None)
    return functools.partial(bot_fix, **options) if bot_fix else _unavailable


def _write_outputs(path: str | None, values: dict[str, str]) -> None:
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        for key, value in values.items():
            handle.write(f"{key}={value.replace(chr(10), ' ')}\n")


def _append(path: str | None, text: str) -> None:
    if path and text:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)


def bot(
    event_path: Annotated[Path, typer.Option(envvar="GITHUB_EVENT_PATH", help="the event payload (JSON)")],
    repo_path: Annotated[Path, typer.Option(help="the checked-out repository")] = Path("."),
    event_name: Annotated[str, typer.Option(envvar="GITHUB_EVENT_NAME", help="issues or issue_comment")] = "",
    repo: Annotated[str, typer.Option(envvar="GITHUB_REPOSITORY", help="owner/name")] = "",
    api_url: Annotated[str, typer.Option(envvar="GITHUB_API_URL")] = "https://api.github.com",
    server_url: Annotated[str, typer.Option(envvar="GITHUB_SERVER_URL")] = "https://github.com",
    token_env: Annotated[
        str, typer.Option(help="environment variable that holds the token")
    ] = "GITHUB_TOKEN",
    label: Annotated[str, typer.Option(help="the label that starts a run")] = "patchfleet",
    command: Annotated[str, typer.Option(help="the comment command that starts a run")] = "/patchfleet",
    branch_prefix: Annotated[str, typer.Option(help="branches are <prefix>/issue-<n>")] = "patchfleet",
    draft: Annotated[bool, typer.Option("--draft/--ready", help="open the pull request as a draft")] = True,
    remote: Annotated[str | None, typer.Option(help="push URL (default <server-url>/<repo>.git)")] = None,
    model: Model = None,
    samples: Annotated[int, typer.Option(min=1, help="trajectories to run")] = 4,
    policy: Annotated[str | None, typer.Option(help="selection policy")] = None,
    budget: Annotated[float | None, typer.Option(help="dollar budget of the run")] = None,
    api_base: ApiBase = None,
    set_: Sets = None,
    out: Annotated[
        Path | None, typer.Option(help="the fix's run folder (trajectories, report); default a temp dir")
    ] = None,
    fix: Annotated[str | None, typer.Option(help="module:function to call instead of patchfleet fix")] = None,
) -> None:
    """Answer a GitHub issue event: run patchfleet fix on the checkout and open or update a draft PR."""
    from rich.console import Console

    from patchfleet.runs.github.bot import BotConfig, run
    from patchfleet.runs.github.client import GitHubClient
    from patchfleet.runs.github.events import load_event
    from patchfleet.runs.github.redact import Redactor, secrets_from_env

    console = Console()
    # The token leaves the environment before anything runs, so no sandbox, agent or subprocess inherits
    # it; git gets it explicitly for the push. LLM keys stay (litellm reads them) but are redacted.
    token = os.environ.pop(token_env, "") or os.environ.get("GITHUB_TOKEN", "")
    os.environ.pop("GITHUB_TOKEN", None)
    redact = Redactor([token, *secrets_from_env(os.environ)])

    def log(line: str) -> None:
        console.print(redact(line), markup=False, highlight=False)

    try:
        if not token:
            raise ConfigError(f"no GitHub token: set {token_env}")
        if not repo:
            raise ConfigError("no repository: set GITHUB_REPOSITORY or --repo")
        payload = load_event(event_path)
        overrides = ([f"agent.model.api_base={json.dumps(api_base)}"] if api_base else []) + list(set_ or [])
        options = {"model": model, "samples": samples, "policy": policy, "budget": budget}
        options.update(overrides=tuple(overrides), **({"out_dir": out} if out else {}))
        fix_function = load_fix(fix, **options)
        run_id = os.environ.get("GITHUB_RUN_ID")
        config = BotConfig(
            label=label,
            command=command,
            branch_prefix=branch_prefix,
            draft=draft,
            server_url=server_url,
            remote_url=remote,
            run_url=f"{server_url.rstrip('/')}/{repo}/actions/runs/{run_id}" if run_id else None,
        )
        with GitHubClient(repo, token, api_url) as client:
            result = run(
                event_name,
                payload,
                client=client,
                repo_path=repo_path,
                fix=fix_function,
                token=token,
                redact=redact,
                config=config,
                log=log,
            )
    except PatchfleetError as exc:
        log(f"error: {exc}")
        _write_outputs(os.environ.get("GITHUB_OUTPUT"), {"outcome": "failed"})
        raise typer.Exit(code=2) from exc
    summary = result.summary or f"# patchfleet\n\n{result.outcome}: {result.reason}\n"
    _append(os.environ.get("GITHUB_STEP_SUMMARY"), redact(summary))
    outputs = {
        "outcome": result.outcome,
        "pr-url": result.pr_url,
        "branch": result.branch,
        "cost": f"{result.cost:.4f}",
    }
    _write_outputs(os.environ.get("GITHUB_OUTPUT"), outputs)
    log(f"outcome: {result.outcome}" + (f" {result.pr_url}" if result.pr_url else ""))
    if result.outcome == "failed":
        raise typer.Exit(code=1)
