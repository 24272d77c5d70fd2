"""The OpenAI-compatible scripted server the tests drive the real litellm client against.

One implementation, in the package (`patchfleet.runs.demo_server`, which `patchfleet demo` serves its
model from); the names the tests use are kept here.
"""

from __future__ import annotations

from patchfleet.runs.demo_server import (
    CHAT_PATHS,
    Fault,
    RecordedRequest,
    Responder,
    ScriptedReply,
    ScriptedServer,
    ScriptEntry,
    bash_reply,
    completion_body,
)

FakeOpenAIServer = ScriptedServer
FakeReply = ScriptedReply

__all__ = [
    "CHAT_PATHS",
    "FakeOpenAIServer",
    "FakeReply",
    "Fault",
    "RecordedRequest",
    "Responder",
    "ScriptEntry",
    "bash_reply",
    "completion_body",
]
