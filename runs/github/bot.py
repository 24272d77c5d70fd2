"""The bot's flow for one event: decide, acknowledge, fix, push a branch, open or update a draft PR, report.

Every word it writes (status comment, pull request, job summary, log) goes through the redactor first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from patchfleet.errors import GitHubError, PatchfleetError
from patchfleet.runs.github import branch as branch_ops
from patchfleet.runs.github import render
from patchfleet.runs.github.client import GitHubClient
from patchfleet.runs.github.events import TRUSTED_ASSOCIATIONS, Verdict, decide
from patchfleet.runs.github.redact import Redactor


@dataclass(frozen=True)
class FixResult:
    """What `patchfleet fix` hands the bot. `outcome` is "patched" when `patch` is the chosen fix;
    anything else ("no_patch", "failed", "budget_exceeded", ...) means no pull request."""

    patch: str
    summary: str  # one paragraph: what the patch changes
    rationale: str  # Markdown: tests written, how each candidate fared, verifier scores, the decision
    cost: float  # dollars spent on model calls
    outcome: str = "patched"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "patched" and bool(self.patch.strip())


class FixFunction(Protocol):
    def __call__(self, repo_path: Path, issue_title: str, issue_body: str) -> FixResult: ...


@dataclass(frozen=True)
class BotConfig:
    label: str = "patchfleet"
    command: str = "/patchfleet"
    branch_prefix: str = "patchfleet"
    draft: bool = True
    server_url: str = "https://github.com"
    remote_url: str | None = None  # default: <server_url>/<repo>.git
    run_url: str | None = None  # link to the workflow run, shown in comments
    author: tuple[str, str] = ("github-actions[bot]", "41898282+github-actions[bot]@users.noreply.github.com")


@dataclass
class BotResult:
    """What the action reports as outputs: outcome is one of ignored, refused, pr-opened, pr-updated,
    no-patch, failed."""

    outcome: str
    reason: str = ""
    pr_url: str = ""
    branch: str = ""
    cost: float = 0.0
    summary: str = ""  # the Markdown written to the job summary
    extra: dict[str, Any] = field(default_factory=dict)


class _StatusComment:
    """The one status comment of a run, found again by its hidden marker and updated in place."""

    def __init__(self, client: GitHubClient, number: int, redact: Redactor) -> None:
        self.client, self.number, self.redact = client, number, redact
        self.comment_id: int | None = None
        self.body = ""

    def post(self, body: str) -> None:
        # The last marked comment is ours from an earlier run. Anyone can type the marker, so only a bot's
        # (the default token, an App) or a trusted person's (a PAT) counts; and an update that GitHub
        # refuses falls back to a new comment.
        marked = [
            c
            for c in self.client.list_comments(self.number)
            if render.STATUS_MARKER in c.body
            and (c.user_type == "Bot" or c.association in TRUSTED_ASSOCIATIONS)
        ]
        if marked:
            self.comment_id = marked[-1].id
        self.update(body)

    def update(self, body: str) -> None:
        self.body = self.redact(body)
        if self.comment_id is not None:
            try:
                self.client.update_comment(self.comment_id, self.body)
                return
            except GitHubError as exc:
                if exc.status not in (403, 404):
                    raise
        self.comment_id = self.client.create_comment(self.number, self.body).id


def _run_fix(fix: FixFunction, repo_path: Path, title: str, body: str) -> FixResult:
    try:
        return fix(repo_path, title, body)
    except PatchfleetError as exc:
        return FixResult("", "", "", 0.0, outcome="failed", error=f"{type(exc).__name__}: {exc}")


def run(
    event_name: str,
    payload: dict[str, Any],
    *,
    client: GitHubClient,
    repo_path: Path,
    fix: FixFunction,
    token: str,
    redact: Redactor,
    config: BotConfig = BotConfig(),
    log: Callable[[str], None] = print,
) -> BotResult:
    """Handle one event end to end. GitHub failures after the acknowledgement are reported on the issue."""
    trigger = decide(event_name, payload, config.label, config.command)
    if trigger.verdict is Verdict.IGNORE or trigger.issue_number is None:
        log(redact(f"ignored: {trigger.reason}"))
        return BotResult("ignored", trigger.reason)
    number = trigger.issue_number
    if trigger.verdict is Verdict.REFUSE:
        log(redact(f"refused: {trigger.reason}"))
        client.create_comment(number, redact(render.refusal(trigger.actor, config.command)))
        return BotResult("refused", trigger.reason)

    issue = client.get_issue(number)  # the payload may be stale: closed or locked since
    if issue.state != "open" or issue.locked:
        reason = f"issue #{number} is {'locked' if issue.locked else issue.state}"
        log(reason)
        return BotResult("ignored", reason)

    branch = f"{config.branch_prefix}/issue-{number}"
    status = _StatusComment(client, number, redact)
    status.post(render.working(number, trigger.actor, config.run_url))
    log(f"working on #{number}: {redact(issue.title)}")
    result: FixResult | None = None
    try:
        existing = client.find_open_pull(branch)
        result = _run_fix(fix, repo_path, issue.title, issue.body)
        if not result.ok:
            outcome = "failed" if result.outcome == "failed" or result.error else "no-patch"
            status.update(render.failure(result, result.error, config.run_url))
            return BotResult(
                outcome, result.error or result.outcome, "", "", result.cost, render.step_summary(status.body)
            )
        if redact.leaks(result.patch):
            error = "the patch contains a secret (a credential from the environment); it was not pushed"
            status.update(render.failure(result, error, config.run_url))
            return BotResult("failed", error, "", "", result.cost, render.step_summary(status.body))

        title = f"Fix #{number}: {issue.title}"
        sha, _ = branch_ops.commit_patch(repo_path, result.patch, branch, redact(title), config.author)
        remote = config.remote_url or f"{config.server_url.rstrip('/')}/{client.repo}.git"
        branch_ops.push(repo_path, remote, sha, branch, token, config.server_url)
        log(f"pushed {sha[:12]} to {branch}")
        body = redact(render.pull_body(number, result, config.run_url))
        if existing:
            pr = client.update_pull(existing.number, redact(title), body)
        else:
            base = client.get_repo().default_branch
            pr = client.create_pull(redact(title), branch, base, body, draft=config.draft)
        status.update(render.success(pr.number, pr.html_url, existing is not None, result, config.run_url))
        outcome = "pr-updated" if existing else "pr-opened"
        log(f"{outcome}: {pr.html_url}")
        return BotResult(outcome, "", pr.html_url, branch, result.cost, render.step_summary(status.body))
    except PatchfleetError as exc:
        error = redact(f"{type(exc).__name__}: {exc}")
        log(f"failed: {error}")
        status.update(render.failure(result, error, config.run_url))
        return BotResult(
            "failed", error, "", "", result.cost if result else 0.0, render.step_summary(status.body)
        )
    except Exception as exc:
        # A bug, not a known failure: the issue still hears that the run stopped, then the job fails loudly.
        status.update(
            render.failure(result, redact(f"internal error ({type(exc).__name__})"), config.run_url)
        )
        raise
