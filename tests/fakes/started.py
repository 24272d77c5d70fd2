"""What the engine really gave each sandbox a test starts, read back from the container: the real
`DockerBackend.start` runs, wrapped so that nothing is faked. For tests that check a run config's limits
reach every sandbox of a path; and, from the engine's own events, who started each container (Ray tests:
a worker, not the driver)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from patchfleet.sandbox.docker import DockerBackend


@dataclass(frozen=True)
class Started:
    role: str
    cpus: float  # 0.0: no limit
    memory: int  # bytes; 0: no limit
    pids_limit: int | None
    network: str
    image: str = ""  # as the container was created from (an official name, or one of ours)
    env: tuple[str, ...] = ()  # the container's environment, NAME=value


def record_starts(monkeypatch: pytest.MonkeyPatch) -> list[Started]:
    """From now on, every sandbox started in this test is appended to the returned list."""
    started: list[Started] = []
    start = DockerBackend.start

    def observed(self: DockerBackend, spec):
        sandbox = start(self, spec)
        host = sandbox.container.attrs["HostConfig"]
        started.append(
            Started(
                role=spec.labels.get("role", ""),
                cpus=(host.get("NanoCpus") or 0) / 1e9,
                memory=host.get("Memory") or 0,
                pids_limit=host.get("PidsLimit"),
                network=host.get("NetworkMode", ""),
                image=sandbox.container.attrs["Config"].get("Image", ""),
                env=tuple(sandbox.container.attrs["Config"].get("Env") or ()),
            )
        )
        return sandbox

    monkeypatch.setattr(DockerBackend, "start", observed)
    return started


@contextlib.contextmanager
def container_starts(client) -> Iterator[list[dict[str, str]]]:
    """The labels of every patchfleet container the engine starts meanwhile, streamed as they happen (a
    query afterwards would miss the first ones: the engine keeps only its latest events). The process
    that started one is its `patchfleet.owner-pid`."""
    found: list[dict[str, str]] = []
    stream = client.events(
        decode=True, filters={"type": "container", "event": "start", "label": "patchfleet.managed=true"}
    )

    def read() -> None:
        with contextlib.suppress(Exception):  # the stream closed under us: the end of the test
            for event in stream:
                found.append(event["Actor"]["Attributes"])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield found
    finally:
        stream.close()
        reader.join(timeout=10)
