"""The fake GitHub answers with GitHub's real shapes, and the test event payloads are GitHub's real payloads:
both are validated against GitHub's published OpenAPI description and webhook schemas."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import github_shapes as shapes
from fakes.github_server import FAKE_TOKEN, ROUTE_TEMPLATES, FakeGitHub
from openapi_schema_validator import OAS30Validator, OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from patchfleet.errors import GitHubError
from patchfleet.runs.github.client import GitHubClient


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _registry(uri: str, spec: dict[str, Any]) -> Registry:
    return Registry().with_resource(uri, Resource.from_contents(spec, default_specification=DRAFT202012))


def _errors(validator_cls, registry: Registry, ref: str, instance: Any) -> list[str]:
    validator = validator_cls({"$ref": ref}, registry=registry)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)][
        :10
    ]


def _exercise(gh: FakeGitHub, run_git, checkout) -> None:
    """Call every endpoint the bot uses, through the real client, including a paginated list."""
    work, _ = checkout
    gh.add_issue(1, "add is wrong", "add(2, 3) gives -1", labels=["bug"])
    for i in range(101):  # more than one page of 100
        gh.add_comment(1, f"me too {i}", shapes.user("someone", 300), "CONTRIBUTOR")
    run_git(work, "push", "-q", "origin", "main:refs/heads/patchfleet/issue-1")
    with GitHubClient("octo/calc", FAKE_TOKEN, api_url=gh.url) as client:
        assert client.get_repo().default_branch == "main"
        assert client.get_issue(1).title == "add is wrong"
        status = client.create_comment(1, "working")
        client.update_comment(status.id, "done")
        assert len(client.list_comments(1)) == 102
        assert client.find_open_pull("patchfleet/issue-1") is None
        pull = client.create_pull("Fix #1", "patchfleet/issue-1", "main", "Closes #1", draft=True)
        assert client.find_open_pull("patchfleet/issue-1") == pull
        client.update_pull(pull.number, "Fix #1: add", "Closes #1")
        with pytest.raises(GitHubError) as missing:
            client.get_issue(404)
        with pytest.raises(GitHubError) as duplicate:
            client.create_pull("Fix #1 again", "patchfleet/issue-1", "main", "", draft=True)
        assert (missing.value.status, duplicate.value.status) == (404, 422)


def test_every_served_response_matches_githubs_openapi_description(gh, run_git, checkout, rest_spec):
    registry = _registry("urn:github-rest", rest_spec)
    _exercise(gh, run_git, checkout)
    served_routes = {(s.method, s.template) for s in gh.served}
    assert served_routes == set(ROUTE_TEMPLATES), "every endpoint the fake offers was exercised"
    assert any(s.query.get("page") == "2" for s in gh.served), "a second page was served"
    problems, validated_errors = {}, 0
    for served in gh.served:
        responses = rest_spec["paths"][served.template][served.method.lower()]["responses"]
        response = responses.get(str(served.status))
        if response is None:
            # GitHub documents no body for some answers it gives (a 403 on PATCH of another's comment)
            assert served.status >= 400, (served.template, served.status)
            continue
        if "$ref" in response:  # a shared error response, e.g. #/components/responses/validation_failed
            where = response["$ref"].removeprefix("#/").split("/")
        else:
            where = ["paths", served.template, served.method.lower(), "responses", str(served.status)]
        ref = "urn:github-rest#/" + _pointer(*where, "content", "application/json", "schema")
        errors = _errors(OAS30Validator, registry, ref, served.body)
        if errors:
            problems[f"{served.method} {served.template} {served.status}"] = errors
        validated_errors += served.status >= 400
    assert validated_errors >= 2, "the documented error answers (404, 422) were validated too"
    assert not problems, problems


def test_the_validation_is_not_vacuous(rest_spec):
    """A shape missing a required field, or with a wrong type, fails: the check above can fail."""
    registry = _registry("urn:github-rest", rest_spec)
    ref = "urn:github-rest#/components/schemas/issue"
    good = shapes.issue("octo/calc", 1, "t", "b", shapes.user("u"))
    assert _errors(OAS30Validator, registry, ref, good) == []
    broken = {k: v for k, v in good.items() if k != "locked"}
    assert _errors(OAS30Validator, registry, ref, broken)
    assert _errors(OAS30Validator, registry, ref, {**good, "number": "1"})


@pytest.mark.parametrize(
    ("schema", "payload"),
    [
        (
            "webhook-issues-labeled",
            shapes.issues_labeled_event(
                shapes.issue(
                    "octo/calc", 1, "add is wrong", "add(2, 3) gives -1", shapes.user("reporter", 201)
                ),
                "patchfleet",
                shapes.user("maintainer", 2),
            ),
        ),
        (
            "webhook-issue-comment-created",
            shapes.issue_comment_event(
                shapes.issue("octo/calc", 1, "add is wrong", "", shapes.user("reporter", 201), comments=1),
                "/patchfleet please",
                shapes.user("stranger", 3),
                "NONE",
            ),
        ),
    ],
)
def test_event_payloads_match_githubs_webhook_schemas(webhook_spec, schema, payload):
    registry = _registry("urn:github-webhooks", webhook_spec)
    assert (
        _errors(OAS31Validator, registry, f"urn:github-webhooks#/components/schemas/{schema}", payload) == []
    )


def test_the_webhook_validation_is_not_vacuous(webhook_spec):
    registry = _registry("urn:github-webhooks", webhook_spec)
    ref = "urn:github-webhooks#/components/schemas/webhook-issues-labeled"
    issue = shapes.issue("octo/calc", 1, "t", "b", shapes.user("u"))
    payload = shapes.issues_labeled_event(issue, "patchfleet", shapes.user("m"))
    assert _errors(OAS31Validator, registry, ref, {**payload, "action": "opened"})
    assert _errors(OAS31Validator, registry, ref, {**payload, "issue": {**issue, "locked": "no"}})
