"""`--executor ray`: every trajectory, selection test run (a matrix row) and evaluation is a Ray task on a
node of the cluster, using that node's Docker engine (`executor.OnNode`). The driver keeps the rest: the
schedule, the budget, retries, the ledger and the progress display, so the ledger needs no database
shared between machines. What the nodes share is the output folder (trajectories, cells and evaluation
logs are written there) and the repository sources.

The tasks are calls to one threaded actor per node (a `_NodeWorker`), sent to the one with the fewest
units in flight. Units mostly wait on a model or a container, as the local executor's threads do; one
process per unit instead would import patchfleet and litellm per process (seconds each) and Ray stops
idle workers beyond a node's CPU count, so it would do so again and again.

Ray is an optional extra: `pip install 'patchfleet[ray]'`.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from patchfleet.errors import ConfigError, WorkerLost

T = TypeVar("T")
R = TypeVar("R")

POLL_S = 0.2  # how often relayed events (log lines, progress) reach the driver
LOST_ATTEMPTS = 4  # runs of a mapped unit whose worker keeps dying (a restart takes seconds)
MAX_UNITS_PER_NODE = 256  # threads of a node's worker; the callers' own bounds (workers, samples) come first
# what workers on other machines need from the driver's environment (keys: the provider's usual variable)
FORWARDED_PREFIXES = ("LITELLM_", "PATCHFLEET_", "HF_")
FORWARDED_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
# Ray's token authentication (2.5x): its mode, and where a token comes from besides ~/.ray/auth_token
AUTH_MODE, AUTH_TOKEN, AUTH_TOKEN_PATH = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray: pip install 'patchfleet[ray]'") from exc
    return ray


def forwarded_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name.startswith(FORWARDED_PREFIXES) or name in FORWARDED_NAMES or name.endswith("_API_KEY")
    }


def connect(address: str | None) -> None:
    """Join the cluster at `address` (host:port of a `ray start --head`), or start one on this machine."""
    ray = _ray()
    if ray.is_initialized():
        return
    if address and address != "auto":
        _check_reachable(address)
    if not address:
        own_token()
    try:
        ray.init(
            address=address or "local",
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": forwarded_env()},
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address or 'a new local one'}: {exc}") from exc


def own_token() -> None:
    """Before starting a local cluster: give it a token of this process's own, unless the user chose.

    Left alone, Ray turns token authentication on for a cluster `ray.init` starts and writes a new token
    to ~/.ray/auth_token; every later `ray start --head` on the machine then finds that file and requires
    it, while clients that connect by address do not send it, and cannot connect. A token in this
    process's environment (inherited by the Ray processes it starts, gone with them) protects the cluster
    the same way and leaves no file behind. Another mode, or a token, that the user set is kept."""
    if os.environ.get(AUTH_MODE, "token").lower() != "token":  # disabled (or another scheme): theirs
        return
    if os.environ.get(AUTH_TOKEN) or os.environ.get(AUTH_TOKEN_PATH):
        return
    if (Path.home() / ".ray" / "auth_token").exists():  # the user's own token: Ray uses it, writes none
        return
    # the token only: Ray turns the mode on itself, and refreshes its own config when it does
    os.environ[AUTH_TOKEN] = secrets.token_hex(32)


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's minute of connection retries, when nothing listens there."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


class _NodeWorker:
    """One per node: runs units in its threads (a threaded actor), with that node's `OnNode` objects."""

    def call(self, fn: Callable[[Any], Any], item: Any) -> tuple[Any, tuple[str, int]]:
        return fn(item), (socket.gethostname(), os.getpid())


class RayExecutor:
    """The `executor.Executor` of a Ray cluster: a `_NodeWorker` on every node alive at the start (one
    that dies is restarted by Ray, elsewhere if its node is gone). Units reserve no CPU: the caller
    bounds how many run at once (workers, samples)."""

    in_process = False

    def __init__(self, address: str | None = None) -> None:
        connect(address)
        self._ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [node["NodeID"] for node in self._ray.nodes() if node.get("Alive")]
        actor = self._ray.remote(num_cpus=0, max_concurrency=MAX_UNITS_PER_NODE, max_restarts=-1)(_NodeWorker)
        self._nodes = [
            actor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True)).remote()
            for node in nodes
        ]
        self._in_flight = [0] * len(self._nodes)
        self._events: Any = None  # the relay's queue actor, made at the first relay
        self._callbacks: list[Callable[..., None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._drainer: threading.Thread | None = None
        self.units: Counter[str] = Counter()  # units run, by function name
        self.workers: set[tuple[str, int]] = set()  # (host, pid) of every worker that ran one

    def run(self, fn: Callable[[T], R], item: T) -> R:
        """No retry here: the caller (a trajectory's attempt) sets the dead attempt's files aside first."""
        return self._call(fn, fn, item)

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, workers: int) -> list[R]:
        """Mapped units (matrix rows, evaluations) are idempotent through their caches, so one whose
        worker died runs again, after Ray restarted the worker, up to `LOST_ATTEMPTS` times."""
        shared = self._ray.put(fn)  # pickled once, not once per item
        retrying = Retrying(
            retry=retry_if_exception_type(WorkerLost),
            stop=stop_after_attempt(LOST_ATTEMPTS),
            wait=wait_exponential(multiplier=1, max=20),
            reraise=True,
        )
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ray-unit") as pool:
            return list(pool.map(lambda item: retrying(self._call, fn, shared, item), items))

    def _call(self, fn: Callable[..., Any], shared: Any, item: Any) -> Any:
        """`shared` (fn, or a reference to it) on the node with the fewest units in flight; the driver's
        thread waits for it."""
        with self._lock:
            node = min(range(len(self._nodes)), key=self._in_flight.__getitem__)
            self._in_flight[node] += 1
        try:
            return self._result(fn, self._nodes[node].call.remote(shared, item))
        finally:
            with self._lock:
                self._in_flight[node] -= 1

    def _result(self, fn: Callable[..., Any], ref: Any) -> Any:
        exceptions = self._ray.exceptions
        try:
            value, where = self._ray.get(ref)
        except exceptions.RayTaskError as exc:  # the unit's own exception: raised as itself
            raise (exc.cause if isinstance(exc.cause, BaseException) else exc) from None
        except exceptions.RayError as exc:  # the worker or its node died: retryable machinery
            raise WorkerLost(f"{type(exc).__name__}: {exc}") from exc
        with self._lock:
            self.units[_name(fn)] += 1
            self.workers.add(where)
        return value

    def describe(self) -> dict[str, Any]:
        """The driver, the units run by function, and every (host, pid) that ran one."""
        with self._lock:
            return {
                "type": "ray",
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "nodes": len(self._nodes),
                "units": dict(self.units),
                "workers": [{"host": host, "pid": pid} for host, pid in sorted(self.workers)],
            }

    def relay(self, callback: Callable[..., None]) -> Callable[..., None]:
        with self._lock:
            if self._events is None:  # an actor is a process: one for the executor's life, not per run
                self._events = self._ray.remote(_EventQueue).remote()
            if self._drainer is None:
                self._drainer = threading.Thread(target=self._drain_loop, name="ray-relay", daemon=True)
                self._drainer.start()
            self._callbacks.append(callback)
            return _Relayed(self._events, len(self._callbacks) - 1)

    def _drain_loop(self) -> None:
        while not self._stop.wait(POLL_S):
            self._drain()

    def _drain(self) -> None:
        for key, args, kwargs in self._ray.get(self._events.drain.remote()):
            self._callbacks[key](*args, **kwargs)

    def close(self) -> None:
        """Deliver what is still queued and stop delivering; a later relay starts again. The cluster
        is left running (others may use it), and so is the queue's actor until Ray shuts down."""
        with self._lock:
            drainer, self._drainer = self._drainer, None
        if drainer is not None:
            self._stop.set()
            drainer.join()
            self._stop.clear()
            self._drain()


def _name(fn: Callable[..., Any]) -> str:
    """A unit's function as the summary counts it (a partial by the function it wraps)."""
    fn = getattr(fn, "func", fn)
    return getattr(fn, "__qualname__", type(fn).__name__)


class _EventQueue:
    def __init__(self) -> None:
        self.items: list[tuple[int, tuple, dict]] = []

    def put(self, key: int, args: tuple, kwargs: dict) -> None:
        self.items.append((key, args, kwargs))

    def drain(self) -> list[tuple[int, tuple, dict]]:
        items, self.items = self.items, []
        return items


class _Relayed:
    """A callback's stand-in on a worker: each call is queued (fire and forget) for the driver."""

    def __init__(self, events: Any, key: int) -> None:
        self.events, self.key = events, key

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.events.put.remote(self.key, args, kwargs)
