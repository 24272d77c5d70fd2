"""A minimal OpenAI-compatible chat-completions server on 127.0.0.1 that answers from a script.

`patchfleet demo` needs it at run time (a fresh machine has no model to talk to), so it lives in the
package; the richer test double with injected faults stays in tests/fakes/openai_server.py. The real
litellm client talks to it exactly as to a provider: usage counts, optional logprobs, a model name.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass(frozen=True)
class ScriptedReply:
    """One completion; `logprobs` are (token, logprob, [(alternative, logprob), ...]) per token."""

    content: str
    logprobs: list[tuple[str, float, list[tuple[str, float]]]] | None = None


Responder = Callable[[dict[str, Any]], ScriptedReply]


class ScriptedServer:
    """A threaded HTTP server answering every chat request with `responder(request body)`."""

    def __init__(self, responder: Responder, *, latency: float = 0.0) -> None:
        self.responder = responder
        self.latency = latency
        self.calls = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="demo-model", daemon=True
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

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        if self.latency:
            time.sleep(self.latency)
        return completion_body(self.responder(body), body)


class _Handler(BaseHTTPRequestHandler):
    server_state: ScriptedServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real providers: no delayed-ACK stall between headers and body
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "request body is not JSON", "type": "invalid_request"}})
            return
        if self.path not in CHAT_PATHS:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request"}})
            return
        try:
            payload = self.server_state.answer(body)
        except Exception as exc:  # noqa: BLE001 - a script bug becomes a 400 the client reports
            self._send(400, {"error": {"message": f"script failed: {exc}", "type": "invalid_request"}})
            return
        self._send(200, payload)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def completion_body(reply: ScriptedReply, request: dict[str, Any]) -> dict[str, Any]:
    """One chat completion in OpenAI's shape, token counts estimated from the text (4 characters each)."""
    prompt_tokens = max(1, len(json.dumps(request.get("messages", []))) // 4)
    completion_tokens = max(1, len(reply.content) // 4)
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": reply.content},
        "finish_reason": "stop",
        "logprobs": None,
    }
    if reply.logprobs is not None and request.get("logprobs"):
        choice["logprobs"] = {
            "content": [
                {
                    "token": token,
                    "logprob": logprob,
                    "bytes": list(token.encode()),
                    "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top],
                }
                for token, logprob, top in reply.logprobs
            ]
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "scripted"),
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
