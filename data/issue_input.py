"""The issue of `patchfleet fix`, from what a user types: plain text, a file, or a GitHub issue URL.

A GitHub issue is read through the REST API (unauthenticated, or with `GITHUB_TOKEN`): when the API
cannot be reached the user gets an error that says so and how to pass the text instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx

from patchfleet.errors import ConfigError, GitHubError

GITHUB_API = "https://api.github.com"
_ISSUE_URL = re.compile(
    r"^https?://github\.com/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)/issues/(?P<number>\d+)/?$"
)


@dataclass(frozen=True)
class IssueText:
    title: str
    body: str
    url: str = ""  # where it came from, when it came from GitHub

    @property
    def statement(self) -> str:
        """The problem statement the agent sees: SWE-bench writes the title, a blank line, the body."""
        return f"{self.title}\n\n{self.body}".strip() if self.title else self.body.strip()


def read_issue(
    issue: str,
    *,
    api_url: str | None = None,
    token: str | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 20.0,
) -> IssueText:
    """`issue` is a GitHub issue URL, a path to an existing file, or the text itself."""
    match = _ISSUE_URL.match(issue.strip())
    if match:
        return fetch_github_issue(
            f"{match['owner']}/{match['name']}",
            int(match["number"]),
            api_url=api_url or os.environ.get("PATCHFLEET_GITHUB_API", GITHUB_API),
            token=token if token is not None else os.environ.get("GITHUB_TOKEN"),
            transport=transport,
            timeout=timeout,
        )
    if "\n" not in issue and len(issue) < 4096:
        path = Path(issue).expanduser()
        if path.is_file():
            return split_text(path.read_text(errors="replace"))
    if not issue.strip():
        raise ConfigError("the issue is empty: give its text, a file, or a GitHub issue URL")
    return split_text(issue)


def split_text(text: str) -> IssueText:
    """First line as the title (a leading `#` dropped), the rest as the body."""
    title, _, body = text.strip().partition("\n")
    return IssueText(title=title.lstrip("#").strip(), body=body.strip())


def fetch_github_issue(
    repo: str,
    number: int,
    *,
    api_url: str = GITHUB_API,
    token: str | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 20.0,
) -> IssueText:
    headers = {"Accept": "application/vnd.github+json", "User-Agent": "patchfleet"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{api_url.rstrip('/')}/repos/{repo}/issues/{number}"
    try:
        with httpx.Client(headers=headers, timeout=timeout, transport=transport) as client:
            response = client.get(url)
    except httpx.HTTPError as exc:
        raise GitHubError(
            f"cannot reach the GitHub API to read {repo}#{number} ({type(exc).__name__}: {exc}); "
            "save the issue to a file and pass that file instead"
        ) from exc
    if response.status_code != 200:
        try:
            message = response.json().get("message", "")
        except ValueError:
            message = response.text[:200]
        hint = (
            " (set GITHUB_TOKEN for private repositories or rate limits)"
            if response.status_code
            in (
                401,
                403,
                404,
            )
            else ""
        )
        raise GitHubError(
            f"GitHub answered {response.status_code} for {repo}#{number}: {message}{hint}",
            status=response.status_code,
        )
    data = response.json()
    return IssueText(title=data.get("title") or "", body=data.get("body") or "", url=data.get("html_url", ""))
