"""The REST client against the fake GitHub: retries what GitHub asks to retry, and nothing else."""

from __future__ import annotations

import time

import pytest
from fakes.github_server import FAKE_TOKEN, FakeGitHub

from patchfleet.errors import GitHubError
from patchfleet.runs.github.client import GitHubClient

ISSUE = "/repos/{owner}/{repo}/issues/{issue_number}"


@pytest.fixture
def fake():
    with FakeGitHub("octo/calc") as gh:
        gh.add_issue(1, "add is wrong", "add(2, 3) gives -1")
        yield gh


def _client(gh: FakeGitHub, sleeps: list[float], **kwargs) -> GitHubClient:
    return GitHubClient("octo/calc", FAKE_TOKEN, api_url=gh.url, sleep=sleeps.append, backoff=0.5, **kwargs)


def _issue_requests(gh: FakeGitHub) -> int:
    return sum(path == "/repos/octo/calc/issues/1" for _, path, _, _ in gh.requests)


def test_secondary_rate_limit_waits_what_retry_after_says(fake):
    fake.inject_secondary_rate_limit("GET", ISSUE, retry_after=7)
    sleeps: list[float] = []
    with _client(fake, sleeps) as client:
        assert client.get_issue(1).number == 1
    assert sleeps == [7.0]
    assert _issue_requests(fake) == 2


def test_exhausted_primary_limit_waits_until_the_reset(fake):
    reset = int(time.time()) + 30
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    fake.inject("GET", ISSUE, 403, headers=headers, message="API rate limit exceeded")
    sleeps: list[float] = []
    with _client(fake, sleeps) as client:
        client.get_issue(1)
    assert len(sleeps) == 1 and 25 <= sleeps[0] <= 31


def test_server_errors_back_off_exponentially_then_succeed(fake):
    fake.inject("GET", ISSUE, 500, times=1)
    fake.inject("GET", ISSUE, 502, times=1)
    fake.inject("GET", ISSUE, 429, times=1)
    sleeps: list[float] = []
    with _client(fake, sleeps) as client:
        assert client.get_issue(1).title == "add is wrong"
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_wait_longer_than_the_cap_is_capped(fake):
    fake.inject_secondary_rate_limit("GET", ISSUE, retry_after=3600)
    sleeps: list[float] = []
    with _client(fake, sleeps, max_wait=60) as client:
        client.get_issue(1)
    assert sleeps == [60]


def test_persistent_failure_ends_in_github_error_after_the_attempts(fake):
    fake.inject("GET", ISSUE, 503, times=10)
    sleeps: list[float] = []
    with _client(fake, sleeps, attempts=3) as client, pytest.raises(GitHubError) as caught:
        client.get_issue(1)
    assert caught.value.status == 503 and "after 3 attempts" in str(caught.value)
    assert _issue_requests(fake) == 3


@pytest.mark.parametrize(("status", "message"), [(403, "Resource not accessible by integration"), (404, "")])
def test_permission_and_missing_errors_are_not_retried(fake, status, message):
    fake.inject("GET", ISSUE, status, message=message or "Not Found")
    sleeps: list[float] = []
    with _client(fake, sleeps) as client, pytest.raises(GitHubError) as caught:
        client.get_issue(1)
    assert caught.value.status == status and sleeps == [] and _issue_requests(fake) == 1


def test_bad_token_is_a_401(fake):
    with (
        GitHubClient("octo/calc", "wrong-token", api_url=fake.url) as client,
        pytest.raises(GitHubError) as caught,
    ):
        client.get_issue(1)
    assert caught.value.status == 401


def test_a_dead_server_is_a_github_error_after_retries():
    sleeps: list[float] = []
    with FakeGitHub() as gh:
        url = gh.url
    client = GitHubClient("octo/calc", FAKE_TOKEN, api_url=url, sleep=sleeps.append, attempts=2)
    with client, pytest.raises(GitHubError, match="ConnectError"):
        client.get_repo()
    assert len(sleeps) == 1


def test_lists_follow_link_headers_across_pages(fake):
    from fakes import github_shapes as shapes

    for i in range(230):
        fake.add_comment(1, f"comment {i}", shapes.user("someone", 300), "NONE")
    with GitHubClient("octo/calc", FAKE_TOKEN, api_url=fake.url) as client:
        comments = client.list_comments(1)
    assert [c.body for c in comments] == [f"comment {i}" for i in range(230)]
    pages = [
        path for method, path, _, _ in fake.requests if path.startswith("/repos/octo/calc/issues/1/comments")
    ]
    assert len(pages) == 3 and "page=3" in pages[-1]
