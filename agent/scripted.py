"""`ScriptedModel`: replies from a list or a function, for unit tests that need no server at all."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

from patchfleet.agent.model import Limiter, ModelStats, Reply
from patchfleet.errors import ReplayExhausted

ScriptItem = str | Reply | BaseException
Script = Iterable[ScriptItem] | Callable[[list[dict[str, Any]]], ScriptItem]


class ScriptedModel:
    """Returns the next scripted item (an exception in the script is raised instead)."""

    def __init__(
        self,
        script: Script,
        *,
        name: str = "scripted",
        cost_per_call: float = 0.0,
        limiter: Limiter | None = None,
    ) -> None:
        self._func = script if callable(script) else None
        self._items = [] if callable(script) else list(script)
        self._name = name
        self.cost_per_call = cost_per_call
        self.stats = ModelStats()
        self.received: list[list[dict[str, Any]]] = []  # the conversation seen at each call
        self._limiter = limiter if limiter is not None else nullcontext()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def query(self, messages: list[dict[str, Any]], **kwargs: Any) -> Reply:
        started = time.monotonic()
        with self._limiter:
            item = self._next(messages)
        if isinstance(item, BaseException):
            raise item
        reply = item if isinstance(item, Reply) else Reply(content=item, cost=self.cost_per_call)
        reply = replace(reply, latency=reply.latency or time.monotonic() - started)
        self.stats.add(reply)
        return reply

    def _next(self, messages: list[dict[str, Any]]) -> ScriptItem:
        with self._lock:
            self.received.append([dict(m) for m in messages])
            if self._func is not None:
                return self._func(messages)
            if not self._items:
                raise ReplayExhausted(f"{self._name}: the script has no more replies")
            return self._items.pop(0)
