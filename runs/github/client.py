"""A small typed client over the few GitHub REST endpoints the bot uses.

httpx because litellm already brings it (no new transitive weight), it is synchronous with real timeouts,
and its transport hook lets tests point it at a local fake server. Retries (tenacity) cover what GitHub
asks clients to retry: secondary rate limits (403/429 with `Retry-After`, or `x-ratelimit-remaining: 0`
with `x-ratelimit-reset`), 5xx answers and broken connections. Lists follow `Link: rel="next"`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from patchfleet.errors import GitHubError

API_VERSION = "2022-11-28"


@dataclass(frozen=True)
class Issue:
    number: int
    title: str
    body: str
    state: str  # "open" or "closed"
    locked: bool
    html_url: str
    is_pull_request: bool


@dataclass(frozen=True)
class Comment:
    id: int
    body: str
    html_url: str
    user: str
    user_type: str = "User"  # "Bot" for GitHub Apps and github-actions[bot]
    association: str = "NONE"


@dataclass(frozen=True)
class Repository:
    full_name: str
    default_branch: str
    clone_url: str


@dataclass(frozen=True)
class PullRequest:
    number: int
    html_url: str
    state: str
    draft: bool
    head_ref: str
    base_ref: str
    title: str
    body: str


def _issue(data: dict[str, Any]) -> Issue:
    return Issue(
        number=data["number"],
        title=data["title"],
        body=data.get("body") or "",
        state=data["state"],
        locked=bool(data["locked"]),
        html_url=data["html_url"],
        is_pull_request="pull_request" in data,
    )


def _comment(data: dict[str, Any]) -> Comment:
    return Comment(
        id=data["id"],
        body=data.get("body") or "",
        html_url=data["html_url"],
        user=(data.get("user") or {}).get("login", ""),
        user_type=(data.get("user") or {}).get("type", "User"),
        association=data.get("author_association", "NONE"),
    )


def _pull(data: dict[str, Any]) -> PullRequest:
    return PullRequest(
        number=data["number"],
        html_url=data["html_url"],
        state=data["state"],
        draft=bool(data.get("draft", False)),
        head_ref=data["head"]["ref"],
        base_ref=data["base"]["ref"],
        title=data["title"],
        body=data.get("body") or "",
    )


class _Retryable(Exception):
    """An answer GitHub wants retried; `wait` is what its headers ask for, if they say."""

    def __init__(self, response: httpx.Response, wait: float | None) -> None:
        super().__init__(f"{response.request.method} {response.request.url.path}: {response.status_code}")
        self.response = response
        self.wait = wait


def _requested_wait(response: httpx.Response, now: float) -> float | None:
    """Seconds GitHub asks us to wait before retrying, or None when it does not say."""
    retry_after = response.headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return None
    if response.headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in response.headers:
        try:
            return max(0.0, float(response.headers["x-ratelimit-reset"]) - now)
        except ValueError:
            return None
    return None


def _is_rate_limited(response: httpx.Response) -> bool:
    """A 403 is a rate limit only when GitHub says so; otherwise it is a permission error, not retried."""
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    if "retry-after" in response.headers or response.headers.get("x-ratelimit-remaining") == "0":
        return True
    return "rate limit" in response.text.lower()


class GitHubClient:
    """One repository's REST API, authenticated by a token; every method is one documented endpoint."""

    def __init__(
        self,
        repo: str,
        token: str,
        api_url: str = "https://api.github.com",
        *,
        timeout: float = 30.0,
        attempts: int = 5,
        backoff: float = 2.0,
        max_wait: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.repo = repo
        self._attempts = attempts
        self._backoff = backoff
        self._max_wait = max_wait
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "patchfleet-bot",
            },
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = exc.wait if isinstance(exc, _Retryable) else None
        if asked is None:
            # GitHub's advice without headers: wait, then back off exponentially
            asked = self._backoff * 2 ** (state.attempt_number - 1)
        return min(asked, self._max_wait)

    def _send_once(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, url, **kwargs)
        if response.status_code >= 500 or _is_rate_limited(response):
            raise _Retryable(response, _requested_wait(response, time.time()))
        return response

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable | httpx.TransportError)),
            wait=self._wait,
            stop=stop_after_attempt(self._attempts),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            response = retrying(self._send_once, method, url, **kwargs)
        except _Retryable as exc:
            raise self._error(exc.response, f"after {self._attempts} attempts") from None
        except httpx.TransportError as exc:
            raise GitHubError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response

    @staticmethod
    def _error(response: httpx.Response, note: str = "") -> GitHubError:
        try:
            message = response.json().get("message", "")
        except ValueError:
            message = response.text[:200]
        where = f"{response.request.method} {response.request.url.path}"
        suffix = f" ({note})" if note else ""
        return GitHubError(f"{where}: {response.status_code} {message}{suffix}", status=response.status_code)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _paginate(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        url: str | None = path
        query: dict[str, Any] | None = {"per_page": 100, **(params or {})}
        while url:
            response = self._request("GET", url, params=query)
            yield from response.json()
            url = response.links.get("next", {}).get("url")
            query = None  # the next link carries its own query string

    # --- endpoints -------------------------------------------------------------------------------

    def get_repo(self) -> Repository:
        """GET /repos/{owner}/{repo}"""
        data = self._json("GET", f"/repos/{self.repo}")
        return Repository(data["full_name"], data["default_branch"], data["clone_url"])

    def get_issue(self, number: int) -> Issue:
        """GET /repos/{owner}/{repo}/issues/{issue_number}"""
        return _issue(self._json("GET", f"/repos/{self.repo}/issues/{number}"))

    def list_comments(self, number: int) -> list[Comment]:
        """GET /repos/{owner}/{repo}/issues/{issue_number}/comments, every page."""
        return [_comment(c) for c in self._paginate(f"/repos/{self.repo}/issues/{number}/comments")]

    def create_comment(self, number: int, body: str) -> Comment:
        """POST /repos/{owner}/{repo}/issues/{issue_number}/comments"""
        return _comment(
            self._json("POST", f"/repos/{self.repo}/issues/{number}/comments", json={"body": body})
        )

    def update_comment(self, comment_id: int, body: str) -> Comment:
        """PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}"""
        path = f"/repos/{self.repo}/issues/comments/{comment_id}"
        return _comment(self._json("PATCH", path, json={"body": body}))

    def find_open_pull(self, head_branch: str) -> PullRequest | None:
        """GET /repos/{owner}/{repo}/pulls?head=owner:branch&state=open: the open PR of a branch."""
        owner = self.repo.split("/", 1)[0]
        params = {"state": "open", "head": f"{owner}:{head_branch}"}
        for data in self._paginate(f"/repos/{self.repo}/pulls", params):
            if data["head"]["ref"] == head_branch:
                return _pull(data)
        return None

    def create_pull(self, title: str, head: str, base: str, body: str, draft: bool = True) -> PullRequest:
        """POST /repos/{owner}/{repo}/pulls"""
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        return _pull(self._json("POST", f"/repos/{self.repo}/pulls", json=payload))

    def update_pull(self, number: int, title: str, body: str) -> PullRequest:
        """PATCH /repos/{owner}/{repo}/pulls/{pull_number}"""
        payload = {"title": title, "body": body}
        return _pull(self._json("PATCH", f"/repos/{self.repo}/pulls/{number}", json=payload))
