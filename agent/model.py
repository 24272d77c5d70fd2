"""The `Model` contract the agent talks to, and the plain values a query returns.

Implementations: `LitellmModel` (any provider through litellm), `ReplayModel` (re-issues a recorded
trajectory), `ScriptedModel` (unit tests). The agent never sees provider objects, only `Reply`.
A model that can bound a call's cost before making it (`Bounded`: `LitellmModel`) lets callers with a
cost limit refuse the call that could cross it; `call_bound` asks any model, wrappers included.
"""

from __future__ import annotations

import math
import threading
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

# Anything usable as `with limiter:`; a threading.Semaphore shared by all trajectories of a run caps
# concurrent LLM calls. Passed in explicitly, never a module global.
Limiter = AbstractContextManager[Any]


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability and the best alternatives at that position."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()  # (token, logprob), best first, including `token` itself


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text exactly as the model produced it (may be invalid: the agent reports that)


@dataclass(frozen=True)
class Reply:
    """What one query returned, with the accounting the budgets and the trajectory file need."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # part of prompt_tokens read from the provider's prompt cache
    cost: float = 0.0  # USD
    latency: float = 0.0  # seconds, including retries and their waits
    retries: int = 0  # transient failures retried for this reply
    logprobs: tuple[TokenLogprob, ...] | None = None  # only when requested and supported
    model: str = ""
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # provider details kept in the trajectory

    def top_logprobs(self, position: int = 0) -> dict[str, float]:
        """Alternatives at one generated position, e.g. a judge's YES/NO: {token: logprob}."""
        if not self.logprobs or position >= len(self.logprobs):
            return {}
        entry = self.logprobs[position]
        return dict(entry.top) if entry.top else {entry.token: entry.logprob}

    def probability_of(self, yes: str, no: str, position: int = 0) -> float | None:
        """P(yes) / (P(yes) + P(no)) at `position` (tokens compared stripped, case-insensitive)."""
        mass = {"yes": 0.0, "no": 0.0}
        for token, logprob in self.top_logprobs(position).items():
            key = token.strip().lower()
            if key == yes.lower():
                mass["yes"] += math.exp(logprob)
            elif key == no.lower():
                mass["no"] += math.exp(logprob)
        total = mass["yes"] + mass["no"]
        return mass["yes"] / total if total else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelStats:
    """Running totals for one model instance (one trajectory); safe to update from several threads."""

    calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0
    latency: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, reply: Reply) -> None:
        with self._lock:
            self.calls += 1
            self.prompt_tokens += reply.prompt_tokens
            self.completion_tokens += reply.completion_tokens
            self.cached_tokens += reply.cached_tokens
            self.cost += reply.cost
            self.latency += reply.latency

    def add_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "instance_cost": self.cost,  # mini-swe-agent's name, kept for compatibility
                "api_calls": self.calls,
                "retries": self.retries,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cached_tokens": self.cached_tokens,
                "llm_time": self.latency,
            }


@runtime_checkable
class Model(Protocol):
    """Answers a conversation. Raises `ModelError` subclasses (agent) or `ModelUnavailable` (infra)."""

    stats: ModelStats

    @property
    def name(self) -> str: ...

    def query(self, messages: list[dict[str, Any]], **kwargs: Any) -> Reply: ...


# (n, tokens): the provider counted the first n messages of this prompt as `tokens` prompt tokens (an
# earlier call's prompt that this one extends, or repeats)
KnownPrompt = tuple[int, int]


@runtime_checkable
class Bounded(Protocol):
    """A model that can tell, before a call, the most that call may cost (USD), or None when it cannot."""

    def bound(
        self, messages: list[dict[str, Any]], *, known: KnownPrompt | None = None, **kwargs: Any
    ) -> float | None: ...


def call_bound(
    model: Model, messages: list[dict[str, Any]], *, known: KnownPrompt | None = None, **kwargs: Any
) -> float | None:
    """The most `model.query(messages, **kwargs)` may cost; None when the model cannot tell (a scripted or
    replayed model, free pricing): then only what was spent so far can be checked against a limit."""
    if not isinstance(model, Bounded):
        return None
    return model.bound(messages, known=known, **kwargs)


def crosses(limit: float, spent: float, bound: float | None) -> bool:
    """Whether a call bounded by `bound` could take `spent` past `limit` (0: no limit); with no bound,
    whether the limit is already reached (all that can be known before such a call)."""
    if not limit:
        return False
    return spent + bound > limit + 1e-12 if bound is not None else spent >= limit
