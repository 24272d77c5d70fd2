"""Where units of work run: threads of this process (`LocalExecutor`), or Ray tasks on any node of a cluster
(`runs.ray_executor.RayExecutor`, `--executor ray`). Batch trajectories, selection's matrix rows and
evaluations go through one `Executor`, so every layer can be handed one without knowing which it is.

A unit that may run elsewhere must be picklable: what it needs of the machine it lands on (its Docker
engine) it holds as an `OnNode`, and what it reports back to the driver (log lines, progress) goes
through `Executor.relay`.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs units of work. `in_process`: units share this process's objects (locks, clients), so they
    need not be picklable; otherwise they are copied to wherever they run."""

    in_process: bool

    def run(self, fn: Callable[[T], R], item: T) -> R:
        """`fn(item)`, waiting for it; its exception is raised here."""
        ...

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, workers: int) -> list[R]:
        """`fn` over `items`, at most `workers` at once; results in order; the first exception raised."""
        ...

    def relay(self, callback: Callable[..., None]) -> Callable[..., None]:
        """A stand-in for `callback` that units may call wherever they run; it calls `callback` here."""
        ...

    def describe(self) -> dict[str, Any]:
        """What ran where, for the run's summary."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """Threads of this process: the default, and what tests and single-machine runs use."""

    in_process = True

    def run(self, fn: Callable[[T], R], item: T) -> R:
        return fn(item)  # the caller's thread: the pools above already bound concurrency

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, workers: int) -> list[R]:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="unit") as pool:
            return list(pool.map(fn, items))

    def relay(self, callback: Callable[..., None]) -> Callable[..., None]:
        return callback

    def describe(self) -> dict[str, Any]:
        return {"type": "local", "host": socket.gethostname(), "pid": os.getpid()}

    def close(self) -> None:
        pass


# one object per (process, key): a Ray worker runs many units, and each should not open its own engine
_BUILT: dict[str, Any] = {}
_BUILT_LOCK = threading.RLock()  # a factory may get another OnNode (a builder, its backend)


class OnNode(Generic[T]):
    """An object that belongs to the machine using it, such as a Docker client: it pickles as its
    factory, and is built (once per process) where it is unpickled. On the driver it is `value`.

    Attribute access goes to the object, so an `OnNode` of a backend is used as the backend."""

    __slots__ = ("_factory", "_key", "_value")

    def __init__(self, key: str, factory: Callable[[], T], value: T | None = None) -> None:
        self._key, self._factory, self._value = key, factory, value

    def get(self) -> T:
        if self._value is None:
            with _BUILT_LOCK:
                if self._key not in _BUILT:
                    _BUILT[self._key] = self._factory()
                self._value = _BUILT[self._key]
        return self._value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in OnNode.__slots__:  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.get(), name)

    def __reduce__(self) -> tuple[Any, ...]:
        return OnNode, (self._key, self._factory)


class NodeLimit:
    """At most `size` holders at once per process, i.e. per node for Ray's one worker per node (a
    context manager, as the limiters of models and sandboxes are); it pickles as its key and size."""

    def __init__(self, key: str, size: int) -> None:
        self.key, self.size = key, size
        self._semaphore = OnNode(key, partial(threading.BoundedSemaphore, size))

    def __enter__(self) -> NodeLimit:
        self._semaphore.get().acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._semaphore.get().release()

    def __reduce__(self) -> tuple[Any, ...]:
        return NodeLimit, (self.key, self.size)
