"""An OpenAI-compatible chat-completions server on 127.0.0.1 that answers from a script: the model of
`patchfleet demo` (a fresh machine has no model to talk to) and the one the tests and benchmarks drive
the real litellm client against (tests/fakes/openai_server.py re-exports it), so there is one.

Replies come from a script: a list consumed in order, or a callable of the request body. Entries are
`ScriptedReply` (a completion with usage and optional logprobs or tool calls) or `Fault` (429 with
Retry-After, 5xx, 4xx bodies shaped like OpenAI's errors, malformed JSON, a dropped connection). Every
request is recorded, so a test can check what the client really sent.

    with ScriptedServer([ScriptedReply("THOUGHT: hi\\n\\n```bash\\nls\\n```")]) as server:
        litellm.completion(model="openai/fake", api_base=server.base_url, api_key="dummy", ...)
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass(frozen=True)
class ScriptedReply:
    """One successful completion. Token counts default to rough estimates from the text."""

    content: str | None = ""
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI shape: {"id", "type", "function": {...}}
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    # (token, logprob, [(alternative, logprob), ...]) per generated token, OpenAI's `logprobs.content`
    logprobs: list[tuple[str, float, list[tuple[str, float]]]] | None = None
    finish_reason: str = "stop"
    model: str | None = None  # echoed model name; None echoes the requested one
    latency: float = 0.0  # extra seconds before answering, on top of the server's fixed latency


FaultKind = Literal["status", "malformed", "drop", "empty_body"]


@dataclass(frozen=True)
class Fault:
    """A failure to answer with instead of a completion."""

    kind: FaultKind
    status: int = 500
    message: str = "injected failure"
    code: str | None = None
    error_type: str = "server_error"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1) -> Fault:
        headers = {} if retry_after is None else {"Retry-After": _header_number(retry_after)}
        return cls("status", 429, "Rate limit reached", "rate_limit_exceeded", "requests", headers)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls("status", status, "The server had an error while processing your request.")

    @classmethod
    def auth(cls) -> Fault:
        return cls("status", 401, "Incorrect API key provided", "invalid_api_key", "invalid_request_error")

    @classmethod
    def bad_request(cls, message: str = "Invalid value for 'messages'.") -> Fault:
        return cls("status", 400, message, None, "invalid_request_error")

    @classmethod
    def context_window(cls) -> Fault:
        return cls(
            "status",
            400,
            "This model's maximum context length is 8192 tokens. However, your messages resulted in "
            "9000 tokens. Please reduce the length of the messages.",
            "context_length_exceeded",
            "invalid_request_error",
        )

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed", 200)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering (the client sees a protocol error)."""
        return cls("drop")


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])


ScriptEntry = ScriptedReply | Fault
Responder = Callable[[dict[str, Any]], ScriptEntry]


class ScriptedServer:
    """A threaded HTTP server; use as a context manager. `latency` is added to every call (benchmarks)."""

    def __init__(
        self,
        script: Iterable[ScriptEntry] | Responder = (),
        *,
        latency: float = 0.0,
        model_name: str | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._responder: Responder | None = script if callable(script) else None
        self._queue: list[ScriptEntry] = [] if callable(script) else list(script)
        self.latency = latency
        self.model_name = model_name
        self.requests: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None

    # -- script -------------------------------------------------------------------------------------
    def respond_with(self, responder: Responder) -> None:
        """Answer every further request with `responder(request_body)` instead of the queue."""
        with self._lock:
            self._responder = responder

    def push(self, *entries: ScriptEntry) -> None:
        with self._lock:
            self._queue.extend(entries)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._queue)

    def next_entry(self, body: dict[str, Any]) -> ScriptEntry:
        """What to answer `body` with. A responder that raises gets a 400 naming its error (never
        retried by clients), as does an exhausted script: a broken script fails at once."""
        with self._lock:
            responder = self._responder
            if responder is None:
                if self._queue:
                    return self._queue.pop(0)
                return Fault.bad_request("the script has no more replies")
        try:
            return responder(body)
        except Exception as exc:  # noqa: BLE001 - a script bug becomes an error the client reports
            return Fault.bad_request(f"script failed: {type(exc).__name__}: {exc}")

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"script": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="scripted-model",
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(path, headers, body, time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    script: ScriptedServer
    protocol_version = "HTTP/1.1"
    # As real providers' servers: without TCP_NODELAY, the body (sent after the headers) waited for the
    # client's delayed ACK, which added about 40 ms to every call and was counted as client overhead; a
    # buffered wfile (flushed once per request by the base class) sends headers and body together.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the demo's and pytest's output
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "request body is not JSON", "type": "invalid_request"}})
            return
        if self.path not in CHAT_PATHS:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request"}})
            return
        self.script.record(self.path, dict(self.headers.items()), body)
        entry = self.script.next_entry(body)
        delay = self.script.latency + (entry.latency if isinstance(entry, ScriptedReply) else 0.0)
        if delay:
            time.sleep(delay)
        if isinstance(entry, Fault):
            self._fault(entry)
        else:
            self._send(200, completion_body(entry, body, self.script.model_name))

    def _fault(self, fault: Fault) -> None:
        if fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault.kind == "malformed":
            self._send_raw(200, b'{"id": "chatcmpl-broken", "choices": [{"message": ', {})
            return
        if fault.kind == "empty_body":
            self._send_raw(200, b"", {})
            return
        error = {"message": fault.message, "type": fault.error_type, "param": None, "code": fault.code}
        self._send(fault.status, {"error": error}, fault.headers)

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), headers or {})

    def _send_raw(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def completion_body(
    reply: ScriptedReply, request: dict[str, Any], model_name: str | None = None
) -> dict[str, Any]:
    """The JSON of one chat completion in OpenAI's shape, with usage and optional logprobs."""
    prompt_tokens = reply.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = max(1, len(json.dumps(request.get("messages", []))) // 4)
    completion_tokens = reply.completion_tokens
    if completion_tokens is None:
        completion_tokens = max(1, len(reply.content or "") // 4)
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": reply.finish_reason}
    if reply.logprobs is not None and request.get("logprobs"):
        choice["logprobs"] = {"content": [_logprob_entry(*item) for item in reply.logprobs]}
    else:
        choice["logprobs"] = None
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or model_name or request.get("model", "scripted"),
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
        },
    }


def _logprob_entry(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top],
    }


def _header_number(seconds: float) -> str:
    return str(int(seconds)) if math.isclose(seconds, round(seconds)) else f"{seconds:g}"


def bash_reply(command: str, thought: str = "Next step.", **kwargs: Any) -> ScriptedReply:
    """A well-formed agent turn: a THOUGHT and exactly one bash block."""
    return ScriptedReply(f"THOUGHT: {thought}\n\n```bash\n{command}\n```", **kwargs)
