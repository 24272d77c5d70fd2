"""Which events start a run, which are refused and which are ignored; and what the redactor hides."""

from __future__ import annotations

import base64

import pytest
from fakes import github_shapes as shapes

from patchfleet.runs.github.events import Verdict, decide
from patchfleet.runs.github.redact import Redactor, secrets_from_env

ISSUE = shapes.issue("octo/calc", 4, "add is wrong", "body", shapes.user("reporter", 9))


def _comment(body: str, association: str, kind: str = "User", issue=ISSUE) -> dict:
    return shapes.issue_comment_event(issue, body, shapes.user("someone", 5, kind), association)


@pytest.mark.parametrize("association", ["OWNER", "MEMBER", "COLLABORATOR"])
def test_trusted_commands_run(association):
    trigger = decide(
        "issue_comment", _comment("/patchfleet  please", association), "patchfleet", "/patchfleet"
    )
    assert trigger.verdict is Verdict.RUN and trigger.issue_number == 4 and trigger.actor == "someone"


@pytest.mark.parametrize(
    "association", ["CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER", "NONE", "MANNEQUIN"]
)
def test_untrusted_commands_are_refused(association):
    trigger = decide("issue_comment", _comment("/patchfleet", association), "patchfleet", "/patchfleet")
    assert trigger.verdict is Verdict.REFUSE and association in trigger.reason


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("issue_comment", _comment("please /patchfleet", "OWNER")),  # not at the start
        ("issue_comment", _comment("/patchfleetish", "OWNER")),  # another word
        ("issue_comment", _comment("/patchfleet", "OWNER", kind="Bot")),  # bots never trigger
        ("issue_comment", {**_comment("/patchfleet", "OWNER"), "action": "edited"}),
        ("issue_comment", _comment("/patchfleet", "OWNER", issue={**ISSUE, "pull_request": {"url": "x"}})),
        ("issues", shapes.issues_labeled_event(ISSUE, "bug", shapes.user("m"))),
        (
            "issues",
            {**shapes.issues_labeled_event(ISSUE, "patchfleet", shapes.user("m")), "action": "unlabeled"},
        ),
        ("issues", shapes.issues_labeled_event({**ISSUE, "state": "closed"}, "patchfleet", shapes.user("m"))),
        ("issues", shapes.issues_labeled_event({**ISSUE, "locked": True}, "patchfleet", shapes.user("m"))),
        ("push", {"ref": "refs/heads/main"}),
    ],
)
def test_everything_else_is_ignored(event, payload):
    assert decide(event, payload, "patchfleet", "/patchfleet").verdict is Verdict.IGNORE


def test_a_label_runs_for_whoever_could_add_it():
    trigger = decide(
        "issues", shapes.issues_labeled_event(ISSUE, "fix-me", shapes.user("triager")), "fix-me", "/x"
    )
    assert trigger.verdict is Verdict.RUN and trigger.actor == "triager"


def test_closed_beats_untrusted_a_closed_issue_gets_no_reply():
    payload = _comment("/patchfleet", "NONE", issue={**ISSUE, "state": "closed"})
    assert decide("issue_comment", payload, "patchfleet", "/patchfleet").verdict is Verdict.IGNORE


def test_redactor_hides_secrets_their_basic_auth_form_and_keeps_short_values():
    env = {
        "OPENAI_API_KEY": "sk-abcdef123456",
        "GH_TOKEN": "ghp_0123456789",
        "DEBUG": "1",
        "HOME": "/root",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "SHORT_TOKEN": "abc",
    }
    redact = Redactor(["ghs_token_0123456789", *secrets_from_env(env)])
    basic = base64.b64encode(b"x-access-token:ghs_token_0123456789").decode()
    text = f"ghs_token_0123456789 sk-abcdef123456 {basic} wJalrXUtnFEMI/K7MDENG /root abc 1"
    assert redact(text) == "*** *** *** *** /root abc 1"
    assert redact.leaks("x sk-abcdef123456 y") and not redact.leaks("nothing here")
