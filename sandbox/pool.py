"""A warm pool of started sandboxes per spec, so that acquiring one costs a queue pop, not a container start.

A background thread keeps `size` sandboxes ready: each acquire asks it for a replacement. A released
sandbox is reset to the base state and takes the place of a replacement not yet started (otherwise, or
when reuse is off or the reset fails, it is closed), so one container can serve many runs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from patchfleet.errors import InfrastructureError, SandboxError
from patchfleet.sandbox.base import SandboxSpec
from patchfleet.sandbox.docker import DockerBackend, DockerSandbox


class SandboxPool:
    """Ready sandboxes of one spec. Use as a context manager; `acquire()` is itself one."""

    def __init__(
        self, backend: DockerBackend, spec: SandboxSpec, size: int = 2, *, reuse: bool = True
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.size = size
        self.reuse = reuse
        self._ready: queue.Queue[DockerSandbox] = queue.Queue()
        self._wanted = threading.Semaphore(size)  # one permit per missing ready sandbox
        self._stop = threading.Event()
        self._all: set[DockerSandbox] = set()
        self._guard = threading.Lock()
        self.last_error: Exception | None = None
        self._filler = threading.Thread(target=self._fill, name="sandbox-pool", daemon=True)

    def __enter__(self) -> Self:
        self._filler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self) -> None:
        while not self._stop.is_set():
            if not self._wanted.acquire(timeout=0.2):
                continue
            if self._stop.is_set():
                break
            try:
                sandbox = self.backend.start(self.spec)
            except InfrastructureError as exc:
                self.last_error = exc
                self._wanted.release()
                self._stop.wait(1.0)  # the engine is struggling: back off instead of spinning
                continue
            with self._guard:
                self._all.add(sandbox)
            self._ready.put(sandbox)

    @contextmanager
    def acquire(self, timeout: float = 300.0) -> Iterator[DockerSandbox]:
        """A ready sandbox that answered a health check; given back (reset) or closed when the block ends."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                sandbox = self._ready.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty as exc:
                raise SandboxError(
                    f"no sandbox became ready within {timeout:.0f}s (last error: {self.last_error})"
                ) from exc
            self._wanted.release()  # start a replacement so the pool stays warm
            if sandbox.alive():
                break
            self._discard(sandbox)  # died while waiting (OOM, engine restart): never hand it out
        try:
            yield sandbox
        finally:
            self._give_back(sandbox)

    def _give_back(self, sandbox: DockerSandbox) -> None:
        """Reset and keep it while the pool is short of ready sandboxes; close it otherwise."""
        if self.reuse and not self._stop.is_set() and self._ready.qsize() < self.size:
            try:
                sandbox.reset()
            except InfrastructureError as exc:
                self.last_error = exc
            else:
                if self._wanted.acquire(blocking=False):  # it takes the place of a replacement
                    self._ready.put(sandbox)
                    return
        self._discard(sandbox)

    def _discard(self, sandbox: DockerSandbox) -> None:
        with self._guard:
            self._all.discard(sandbox)
        sandbox.close()

    def close(self) -> None:
        self._stop.set()
        if self._filler.is_alive():
            self._filler.join(timeout=60)
        with self._guard:
            leftovers = list(self._all)
            self._all.clear()
        for sandbox in leftovers:
            sandbox.close()
