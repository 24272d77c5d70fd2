"""Host side of the exec server: one persistent `docker exec` stream carrying JSON-line requests.

Docker multiplexes a non-TTY exec stream into frames (8-byte header: stream id, 3 zero bytes, big-endian
length). We demultiplex by hand on the raw socket because the SDK's helpers are blocking generators
without deadlines.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import select
import socket
import struct
import threading
import time
from importlib import resources
from typing import Any

from patchfleet.errors import ExecTimeout, SandboxCrashed

STDOUT, STDERR = 1, 2
HEADER = struct.Struct(">BxxxL")
STDERR_KEEP = 64 * 1024

# Try the usual interpreters; images built by patchfleet have python3, official SWE-bench images too.
LAUNCHER = (
    "for p in python3 /usr/bin/python3 /usr/local/bin/python3 python; do "
    'if command -v "$p" >/dev/null 2>&1; then exec "$p" -u -c "$PF_EXECSERVER"; fi; done; '
    "echo 'patchfleet: no python interpreter in this image' >&2; exit 127"
)


def server_source() -> str:
    return resources.files("patchfleet.sandbox").joinpath("execserver.py").read_text()


class ChannelClosed(SandboxCrashed):
    """The exec server's stream ended: the server died or the container stopped."""


class ExecChannel:
    """A request/response client over the raw socket of a `docker exec -i` running the exec server."""

    def __init__(self, sock: socket.socket, exec_id: str) -> None:
        self._sock = sock
        self.exec_id = exec_id
        self._pending = bytearray()  # demultiplexed stdout not yet consumed
        self._frames = bytearray()  # raw bytes not yet split into frames
        self.stderr = bytearray()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.closed = False
        self.server_pid: int | None = None

    @classmethod
    def open(
        cls, api: Any, container_id: str, env: dict[str, str] | None = None, user: str | None = None
    ) -> ExecChannel:
        """Start the exec server in `container_id` (as `user`, else the image's user) through the
        low-level docker API client."""
        environment = {"PF_EXECSERVER": server_source(), **(env or {})}
        exec_id = api.exec_create(
            container_id,
            ["/bin/sh", "-c", LAUNCHER],
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
            environment=environment,
            user=user or "",
        )["Id"]
        raw = api.exec_start(exec_id, socket=True)
        sock = getattr(raw, "_sock", raw)
        sock.setblocking(True)
        channel = cls(sock, exec_id)
        channel.server_pid = channel.request({"op": "ping"}, deadline=30.0).get("pid")
        return channel

    def request(self, payload: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one request and wait at most `deadline` seconds for its answer."""
        with self._lock:
            if self.closed:
                raise ChannelClosed("exec channel already closed")
            payload = {**payload, "id": next(self._ids)}
            try:
                self._sock.sendall(json.dumps(payload).encode() + b"\n")
            except OSError as exc:
                self.close()
                raise ChannelClosed(f"exec server stream broke while sending: {exc}") from exc
            end = time.monotonic() + deadline
            while True:
                newline = self._pending.find(b"\n")
                if newline >= 0:
                    line = bytes(self._pending[:newline])
                    del self._pending[: newline + 1]
                    reply = json.loads(line)
                    if reply.get("id") == payload["id"]:
                        return reply
                    continue  # a late answer to a request we gave up on
                self._receive(end)

    def _receive(self, end: float) -> None:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise ExecTimeout("exec server did not answer before the host-side deadline")
        ready, _, _ = select.select([self._sock], [], [], remaining)
        if not ready:
            raise ExecTimeout("exec server did not answer before the host-side deadline")
        try:
            chunk = self._sock.recv(1 << 20)
        except OSError as exc:
            self.close()
            raise ChannelClosed(f"exec server stream broke: {exc}") from exc
        if not chunk:
            self.close()
            detail = bytes(self.stderr[-2000:]).decode("utf-8", "replace").strip()
            raise ChannelClosed("exec server stream ended" + (f": {detail}" if detail else ""))
        self._frames += chunk
        while len(self._frames) >= HEADER.size:
            stream, size = HEADER.unpack_from(self._frames)
            if len(self._frames) < HEADER.size + size:
                break
            body = self._frames[HEADER.size : HEADER.size + size]
            del self._frames[: HEADER.size + size]
            if stream == STDERR:
                self.stderr += body
                del self.stderr[:-STDERR_KEEP]
            else:
                self._pending += body

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self._sock.close()


def decode_b64(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def encode_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
