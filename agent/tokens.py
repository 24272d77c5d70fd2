"""Prompt token counts for bounding a call's cost: litellm's `token_counter`, remembered per message, so
that a step of a long trajectory counts only its new messages (the whole of an 85-message conversation
takes about 10 ms of CPU, under the GIL every trajectory shares).

litellm counts a conversation as its messages' own counts plus 3 tokens that prime the reply (which it
also adds to a single message's count), and tools as a fixed amount; `PromptCounter.count` equals
`litellm.token_counter` on the whole request (tests/agent/test_cost_bound.py checks it).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

REPLY_PRIMING = 3  # tokens litellm adds once per conversation, and counts again with each single message
MEMORY = 4096  # messages remembered per counter (a trajectory's conversation, a judge's prompts)


class PromptCounter:
    """Counts prompts of one model; safe to share between threads."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._messages: OrderedDict[bytes, int] = OrderedDict()
        self._tools: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def count(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
        if not messages:
            return self._litellm([], tools)
        total = self.added(messages) + REPLY_PRIMING
        if not tools:
            return total
        return total + self._tools_extra(tools, any(m.get("role") == "system" for m in messages))

    def added(self, messages: list[dict[str, Any]]) -> int:
        """What `messages` add to a conversation they are appended to."""
        return sum(self._message(m) - REPLY_PRIMING for m in messages)

    def _message(self, message: dict[str, Any]) -> int:
        key = _digest(message)
        with self._lock:
            known = self._messages.get(key)
            if known is not None:
                self._messages.move_to_end(key)
                return known
        counted = self._litellm([message], None)
        with self._lock:
            self._messages[key] = counted
            while len(self._messages) > MEMORY:
                self._messages.popitem(last=False)
        return counted

    def _tools_extra(self, tools: list[dict[str, Any]], with_system: bool) -> int:
        """What tools add: a fixed amount, a little less with a system message (OpenAI's formula)."""
        key = _digest([tools, with_system])
        with self._lock:
            known = self._tools.get(key)
        if known is None:
            probe = [{"role": "system" if with_system else "user", "content": "x"}]
            known = self._litellm(probe, tools) - self._litellm(probe, None)
            with self._lock:
                self._tools[key] = known
        return known

    def _litellm(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
        import litellm

        return int(litellm.token_counter(model=self.model, messages=messages, tools=tools))  # type: ignore[arg-type]


def _digest(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()
