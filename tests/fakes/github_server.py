"""A fake GitHub REST API on 127.0.0.1: one repository with its issues, comments and pull requests.

It answers every endpoint the bot uses with shapes that validate against GitHub's OpenAPI description
(the schema test checks each one it served), paginates with `Link` headers, checks the bearer token, and
injects failures on request (403 secondary rate limit with Retry-After, 429, 5xx). With `bare_repo` set,
creating a pull request checks that the head branch was really pushed there, as GitHub does.

    with FakeGitHub("octo/calc", token="t0k") as gh:
        gh.add_issue(1, "add is wrong", "add(2, 3) returns -1")
        client = GitHubClient("octo/calc", "t0k", api_url=gh.url)
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from fakes import github_shapes as shapes


@dataclass
class Served:
    """One answer the server gave: route template (as in the OpenAPI paths), method, status, JSON body."""

    method: str
    template: str
    status: int
    body: Any
    query: dict[str, str] = field(default_factory=dict)
    request: Any = None


@dataclass
class Injected:
    method: str
    template: str
    status: int
    headers: dict[str, str]
    message: str
    times: int


_ROUTES = [
    ("GET", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)", "/repos/{owner}/{repo}"),
    (
        "GET",
        r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/(?P<n>\d+)",
        "/repos/{owner}/{repo}/issues/{issue_number}",
    ),
    (
        "GET",
        r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/(?P<n>\d+)/comments",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    ),
    (
        "POST",
        r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/(?P<n>\d+)/comments",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    ),
    (
        "PATCH",
        r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/comments/(?P<id>\d+)",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
    ),
    ("GET", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls", "/repos/{owner}/{repo}/pulls"),
    ("POST", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls", "/repos/{owner}/{repo}/pulls"),
    (
        "PATCH",
        r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls/(?P<n>\d+)",
        "/repos/{owner}/{repo}/pulls/{pull_number}",
    ),
]
# Shaped as a GitHub Actions token; tests check that it never shows up where it must not.
FAKE_TOKEN = "ghs_fakeToken0123456789abcdefXYZ"
ROUTE_TEMPLATES = sorted({(method, template) for method, _, template in _ROUTES})


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class FakeGitHub:
    def __init__(
        self,
        full_name: str = "octo/calc",
        token: str = FAKE_TOKEN,
        default_branch: str = "main",
        bot_login: str = "github-actions[bot]",
        bare_repo: Path | None = None,
    ) -> None:
        self.full_name = full_name
        self.token = token
        self.default_branch = default_branch
        self.bare_repo = bare_repo
        self.bot = shapes.user(bot_login, 41898282, "Bot")
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}  # id -> comment (with "_issue": number)
        self.pulls: dict[int, dict[str, Any]] = {}
        self.served: list[Served] = []
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self._faults: list[Injected] = []
        self._lock = threading.Lock()
        self._next_id = 1000
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- scripting -------------------------------------------------------------------------------

    def add_issue(
        self, number: int, title: str, body: str, *, author: str = "reporter", **kwargs: Any
    ) -> dict[str, Any]:
        data = shapes.issue(self.full_name, number, title, body, shapes.user(author, 200 + number), **kwargs)
        self.issues[number] = data
        return data

    def add_comment(self, number: int, body: str, author: dict[str, Any], association: str = "NONE") -> dict:
        with self._lock:
            self._next_id += 1
            data = shapes.comment(self.full_name, number, self._next_id, body, author, association)
            self.comments[self._next_id] = {**data, "_issue": number}
            self.issues[number]["comments"] += 1
        return data

    def inject(
        self,
        method: str,
        template: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        message: str = "injected failure",
        times: int = 1,
    ) -> None:
        """The next `times` requests to this route fail with `status` (before touching any state)."""
        self._faults.append(Injected(method, template, status, headers or {}, message, times))

    def inject_secondary_rate_limit(self, method: str, template: str, retry_after: int = 1) -> None:
        message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
        self.inject(method, template, 403, headers={"Retry-After": str(retry_after)}, message=message)

    def comments_on(self, number: int) -> list[dict[str, Any]]:
        return [_public(c) for c in self.comments.values() if c["_issue"] == number]

    # --- serving ---------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body, headers = fake._answer(self.command, self.path, dict(self.headers), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _dispatch

        return Handler

    def _answer(
        self, method: str, raw_path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        request = json.loads(raw) if raw else None
        self.requests.append((method, raw_path, headers, request))
        route = next(
            ((t, m) for verb, p, t in _ROUTES if verb == method and (m := re.fullmatch(p, parts.path))), None
        )
        if route is None:
            return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, {}
        template, match = route
        try:
            self._check(method, template, headers, match.groupdict())
            status, body, extra = self._route(method, template, match.groupdict(), query, request)
        except _HTTPError as exc:
            doc = "https://docs.github.com/rest"
            error = {"message": exc.message, "documentation_url": doc}
            with self._lock:
                self.served.append(Served(method, template, exc.status, error, query, request))
            return exc.status, error, exc.headers
        with self._lock:
            self.served.append(Served(method, template, status, body, query, request))
        return status, body, extra

    def _check(self, method: str, template: str, headers: dict[str, str], params: dict[str, str]) -> None:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            raise _HTTPError(401, "Bad credentials")
        if f"{params['owner']}/{params['repo']}" != self.full_name:
            raise _HTTPError(404, "Not Found")
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.template == template and fault.times > 0:
                    fault.times -= 1
                    raise _HTTPError(fault.status, fault.message, fault.headers)

    def _route(
        self, method: str, template: str, params: dict[str, str], query: dict[str, str], request: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if template == "/repos/{owner}/{repo}":
            return 200, shapes.repository(self.full_name, self.default_branch, full=True), {}
        if template == "/repos/{owner}/{repo}/issues/{issue_number}":
            return 200, self._issue(int(params["n"])), {}
        if template == "/repos/{owner}/{repo}/issues/{issue_number}/comments":
            number = int(params["n"])
            self._issue(number)
            if method == "GET":
                return self._page(
                    f"/repos/{self.full_name}/issues/{number}/comments", self.comments_on(number), query
                )
            return 201, self.add_comment(number, _body(request), self.bot, "NONE"), {}
        if template == "/repos/{owner}/{repo}/issues/comments/{comment_id}":
            stored = self.comments.get(int(params["id"]))
            if stored is None:
                raise _HTTPError(404, "Not Found")
            if stored["user"]["login"] != self.bot["login"]:
                raise _HTTPError(403, "Resource not accessible by integration")
            stored.update(body=_body(request), updated_at=shapes.TIME)
            return 200, _public(stored), {}
        if template == "/repos/{owner}/{repo}/pulls" and method == "GET":
            return self._page(f"/repos/{self.full_name}/pulls", self._list_pulls(query), query)
        if template == "/repos/{owner}/{repo}/pulls":
            return 201, self._create_pull(request), {}
        return 200, self._update_pull(int(params["n"]), request), {}

    def _issue(self, number: int) -> dict[str, Any]:
        if number not in self.issues:
            raise _HTTPError(404, "Not Found")
        return self.issues[number]

    def _page(self, path: str, items: list[Any], query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        per_page = int(query.get("per_page", 30))
        page = int(query.get("page", 1))
        last = max(1, -(-len(items) // per_page))
        rest = "".join(f"&{k}={v}" for k, v in query.items() if k not in ("page", "per_page"))
        links = []
        if page < last:
            links.append(f'<{self.url}{path}?per_page={per_page}&page={page + 1}{rest}>; rel="next"')
            links.append(f'<{self.url}{path}?per_page={per_page}&page={last}{rest}>; rel="last"')
        headers = {"Link": ", ".join(links)} if links else {}
        return 200, items[(page - 1) * per_page : page * per_page], headers

    def _list_pulls(self, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        found = []
        for pull in self.pulls.values():
            if state != "all" and pull["state"] != state:
                continue
            if "head" in query and pull["head"]["label"] != query["head"]:
                continue
            simple = shapes.pull_request(
                self.full_name,
                pull["number"],
                pull["title"],
                pull["body"],
                pull["head"]["ref"],
                pull["head"]["sha"],
                pull["base"]["ref"],
                pull["base"]["sha"],
                pull["user"],
                draft=pull["draft"],
                state=pull["state"],
                full=False,
            )
            found.append(simple)
        return found

    def _branch_sha(self, branch: str) -> str | None:
        if self.bare_repo is None:
            return "0" * 40
        done = subprocess.run(
            ["git", "-C", str(self.bare_repo), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
            capture_output=True,
            text=True,
        )
        return done.stdout.strip() or None

    def _create_pull(self, request: dict[str, Any]) -> dict[str, Any]:
        head, base = request.get("head", ""), request.get("base", "")
        owner = self.full_name.split("/", 1)[0]
        head_sha, base_sha = self._branch_sha(head), self._branch_sha(base)
        if not request.get("title") or head_sha is None or base_sha is None:
            raise _HTTPError(422, "Validation Failed")
        if any(p["head"]["label"] == f"{owner}:{head}" and p["state"] == "open" for p in self.pulls.values()):
            raise _HTTPError(422, f"Validation Failed: A pull request already exists for {owner}:{head}.")
        with self._lock:
            number = max([*self.issues, *self.pulls, 0]) + 1
            pull = shapes.pull_request(
                self.full_name,
                number,
                request["title"],
                request.get("body") or "",
                head,
                head_sha,
                base,
                base_sha,
                self.bot,
                draft=bool(request.get("draft", False)),
            )
            self.pulls[number] = pull
        return pull

    def _update_pull(self, number: int, request: dict[str, Any]) -> dict[str, Any]:
        pull = self.pulls.get(number)
        if pull is None:
            raise _HTTPError(404, "Not Found")
        for key in ("title", "body", "state"):
            if key in request:
                pull[key] = request[key]
        head_sha = self._branch_sha(pull["head"]["ref"])
        if head_sha:
            pull["head"]["sha"] = head_sha
        pull["updated_at"] = shapes.TIME
        return pull


def _body(request: Any) -> str:
    if not isinstance(request, dict) or not isinstance(request.get("body"), str):
        raise _HTTPError(422, "Validation Failed: body is required")
    return request["body"]


def _public(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if not k.startswith("_")}
