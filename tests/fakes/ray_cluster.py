"""A one-node Ray cluster on loopback for tests, stopped through its own `ray start` process (never `ray
stop`, which would stop every Ray process of the machine, other runs' included).

Only that process gets SIGTERM: it marks the node draining and waits (up to 30 s,
RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S) for its raylet to exit, then stops its processes itself. A SIGTERM
to the whole process group also reached the GCS, which died at once; the raylet's own graceful shutdown
then kept trying to unregister from it and never exited, so every teardown waited out the full 30 s.
Workers are in process groups of their own, so what is left is found by the session the head leads."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def ray_head(log: Path, cpus: int = 2) -> Iterator[str]:
    """Start `ray start --head --block` on a free loopback port; yields its address (host:port)."""
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [
            *(sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block"),
            *("--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", str(cpus)),
            *("--include-dashboard", "false", "--disable-usage-stats"),
            *("--temp-dir", f"/tmp/ray-{port}"),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        for pid in session(head.pid):  # anything the head did not stop (none, when it stopped as it should)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def session(sid: int) -> list[int]:
    """The live processes of session `sid` (the head's, started with `start_new_session`): every Ray process
    of this cluster, workers included, and no other."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # state, ppid, pgrp, session, ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry.name))
    return found
