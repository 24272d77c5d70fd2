"""`ReplayModel`: re-issues the assistant turns of a recorded trajectory (mini-swe-agent or ours).

Used to re-run a recorded trajectory against a fresh sandbox (fidelity checks, benchmarks of the
sandbox without paying for a model). Observations are not compared: the replay trusts the recording.
"""

from __future__ import annotations

import json
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from patchfleet.agent.model import Limiter, ModelStats, Reply
from patchfleet.errors import DataError, ReplayExhausted


def recorded_replies(trajectory: dict[str, Any], *, with_cost: bool = True) -> list[Reply]:
    """The assistant turns of a trajectory document, with their recorded usage when present."""
    messages = trajectory.get("messages")
    if not isinstance(messages, list):
        raise DataError("trajectory has no `messages` list")
    replies = []
    for message in messages:
        if message.get("role") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, list):  # content blocks (e.g. with cache_control marks)
            content = "".join(block.get("text", "") for block in content if isinstance(block, dict))
        usage = ((message.get("extra") or {}).get("response") or {}).get("usage") or {}
        ours = (message.get("extra") or {}).get("reply") or {}  # patchfleet-1 keeps the Reply here
        replies.append(
            Reply(
                content=content or "",
                prompt_tokens=int(ours.get("prompt_tokens", usage.get("prompt_tokens", 0)) or 0),
                completion_tokens=int(ours.get("completion_tokens", usage.get("completion_tokens", 0)) or 0),
                cost=float(ours.get("cost", usage.get("cost", 0.0)) or 0.0) if with_cost else 0.0,
                model="replay",
            )
        )
    return replies


class ReplayModel:
    """Answers with the recorded assistant turns, in order; `ReplayExhausted` when none is left."""

    def __init__(
        self, replies: list[Reply], *, source: str = "recording", limiter: Limiter | None = None
    ) -> None:
        self._replies = list(replies)
        self._position = 0
        self.source = source
        self.stats = ModelStats()
        self._limiter = limiter if limiter is not None else nullcontext()
        self._lock = threading.Lock()

    @classmethod
    def from_file(
        cls, path: str | Path, *, with_cost: bool = True, limiter: Limiter | None = None
    ) -> ReplayModel:
        path = Path(path)
        try:
            document = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read trajectory {path}: {exc}") from exc
        return cls(recorded_replies(document, with_cost=with_cost), source=str(path), limiter=limiter)

    @property
    def name(self) -> str:
        return f"replay:{Path(self.source).name}"

    @property
    def remaining(self) -> int:
        return len(self._replies) - self._position

    def query(self, messages: list[dict[str, Any]], **kwargs: Any) -> Reply:
        with self._limiter, self._lock:
            if self._position >= len(self._replies):
                raise ReplayExhausted(
                    f"{self.source}: the recording has {len(self._replies)} assistant turns and all "
                    "were replayed, but the agent asked for another"
                )
            reply = self._replies[self._position]
            self._position += 1
        self.stats.add(reply)
        return reply
