"""From a GitHub event payload to a decision: run on this issue, ignore the event, or refuse politely.

Only two events start a run: `issues` labeled with the trigger label, and `issue_comment` created with a
body that starts with the trigger command. Issue text is untrusted input and is never interpreted here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from patchfleet.errors import ConfigError

# Associations of people with write access or membership; everyone else may not spend the repository's money.
TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})


class Verdict(StrEnum):
    RUN = "run"
    IGNORE = "ignore"  # not for us: say nothing
    REFUSE = "refuse"  # for us, but the person may not start a run: say so, spend nothing


@dataclass(frozen=True)
class Trigger:
    verdict: Verdict
    reason: str
    issue_number: int | None = None
    actor: str = ""
    repo: str = ""


def load_event(path: Path) -> dict[str, Any]:
    """The payload GitHub Actions writes to GITHUB_EVENT_PATH."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the event payload {path}: {exc}") from exc
    if not isinstance(payload, dict):
        raise ConfigError(f"the event payload {path} is not a JSON object")
    return payload


def _issue_state(issue: dict[str, Any]) -> str | None:
    """Why an issue is not to be worked on, or None when it is."""
    if "pull_request" in issue:
        return "this is a pull request, not an issue"
    if issue.get("state") != "open":
        return "the issue is closed"
    if issue.get("locked"):
        return "the issue is locked"
    return None


def decide(event_name: str, payload: dict[str, Any], label: str, command: str) -> Trigger:
    """Whether this event starts a run. Pure: reads only the payload."""
    issue = payload.get("issue") or {}
    number = issue.get("number")
    repo = (payload.get("repository") or {}).get("full_name", "")
    actor = (payload.get("sender") or {}).get("login", "")

    def verdict(kind: Verdict, reason: str) -> Trigger:
        return Trigger(kind, reason, number, actor, repo)

    if event_name == "issues":
        if payload.get("action") != "labeled":
            return verdict(Verdict.IGNORE, f"issues event with action {payload.get('action')!r}")
        if (payload.get("label") or {}).get("name") != label:
            return verdict(Verdict.IGNORE, f"another label than {label!r}")
        # Adding a label needs triage access or more, which GitHub checked already.
        trusted = True
        association = "labeller"
    elif event_name == "issue_comment":
        if payload.get("action") != "created":
            return verdict(Verdict.IGNORE, f"issue_comment event with action {payload.get('action')!r}")
        comment = payload.get("comment") or {}
        if (comment.get("user") or {}).get("type") == "Bot":
            return verdict(Verdict.IGNORE, "a comment by a bot")
        words = (comment.get("body") or "").strip().split(maxsplit=1)
        if not words or words[0] != command:
            return verdict(Verdict.IGNORE, f"the comment does not start with {command!r}")
        actor = (comment.get("user") or {}).get("login", actor)
        association = comment.get("author_association", "NONE")
        trusted = association in TRUSTED_ASSOCIATIONS
    else:
        return verdict(Verdict.IGNORE, f"event {event_name!r} is not a trigger")

    if number is None:
        return verdict(Verdict.IGNORE, "the payload has no issue")
    why_not = _issue_state(issue)
    if why_not:
        return verdict(Verdict.IGNORE, why_not)
    if not trusted:
        return Trigger(
            Verdict.REFUSE,
            f"{actor} is {association}; only owners, members and collaborators can start a run",
            number,
            actor,
            repo,
        )
    return Trigger(Verdict.RUN, f"triggered by {actor} ({association})", number, actor, repo)
