"""Control flow of the step loop, carried by exceptions (as in mini-swe-agent).

These are internal to `patchfleet.agent` and never escape `Agent.run`: they end a trajectory normally
(`Submitted`, `LimitsExceeded`) or ask the model to try again (`FormatError`). Real failures use the
tree in `patchfleet.errors`.
"""

from __future__ import annotations


class InterruptAgentFlow(Exception):
    """Base of the loop's control-flow exceptions."""


class FormatError(InterruptAgentFlow):
    """The reply did not contain exactly one action; the message is shown to the model."""


class Submitted(InterruptAgentFlow):
    """The model issued the submission command."""


class LimitsExceeded(InterruptAgentFlow):
    """A limit (steps, cost, wall time, consecutive format errors) ended the trajectory."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"{limit} limit reached: {detail}")
        self.limit = limit
