"""The bot's words: status comment, refusal, pull request body and job summary, as Markdown.

Pure functions of the fix result; the caller redacts secrets from whatever it writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from patchfleet.runs.github.bot import FixResult

# Hidden in the rendered comment; lets a later run find the one status comment and update it in place.
STATUS_MARKER = "<!-- patchfleet:status -->"


def _run_link(run_url: str | None) -> str:
    return f" ([workflow run]({run_url}))" if run_url else ""


def working(number: int, actor: str, run_url: str | None) -> str:
    return (
        f"{STATUS_MARKER}\n**patchfleet** is working on #{number}, as asked by @{actor}"
        f"{_run_link(run_url)}.\n\n"
        "This comment is updated when the run ends."
    )


def refusal(actor: str, command: str) -> str:
    return (
        f"Thanks @{actor}! Only the repository's owners, members and collaborators can start "
        f"**patchfleet** (`{command}`), because a run spends the repository's model budget. "
        "A maintainer can start it for you."
    )


def _cost(cost: float) -> str:
    return f"${cost:.2f}"


def pull_body(number: int, result: FixResult, run_url: str | None) -> str:
    parts = [
        f"Automated fix for #{number} by **patchfleet**{_run_link(run_url)}; review it as any other change.",
        "## Summary",
        result.summary.strip() or "_no summary given_",
        "## Rationale",
        result.rationale.strip() or "_no rationale given_",
        "## Cost",
        f"{_cost(result.cost)} in model calls.",
        f"Closes #{number}",
    ]
    return "\n\n".join(parts) + "\n"


def success(pr_number: int, pr_url: str, updated: bool, result: FixResult, run_url: str | None) -> str:
    verb = "Updated" if updated else "Opened"
    return (
        f"{STATUS_MARKER}\n**patchfleet**: {verb} pull request #{pr_number} ({pr_url}) with a proposed fix"
        f"{_run_link(run_url)}.\n\n{result.summary.strip()}\n\nCost: {_cost(result.cost)}."
    )


def failure(
    result: FixResult | None, error: str | None, run_url: str | None, what: str = "no pull request"
) -> str:
    lines = [f"{STATUS_MARKER}\n**patchfleet** stopped without a fix: {what}{_run_link(run_url)}."]
    if error:
        lines.append(f"**Why it stopped:** {error}")
    if result is not None:
        if result.summary.strip():
            lines.append(f"**What was tried:** {result.summary.strip()}")
        if result.rationale.strip():
            lines.append(f"<details><summary>Details</summary>\n\n{result.rationale.strip()}\n\n</details>")
        lines.append(f"Cost: {_cost(result.cost)}.")
    return "\n\n".join(lines)


def step_summary(comment: str) -> str:
    """The job summary shows what the status comment says, without the marker."""
    return "# patchfleet\n\n" + comment.replace(STATUS_MARKER, "").strip() + "\n"
