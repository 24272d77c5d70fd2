"""From a model reply to one shell command, and from a command's result to observation text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from patchfleet.agent.config import SUBMIT_SENTINEL
from patchfleet.agent.exceptions import FormatError
from patchfleet.agent.model import Reply

BASH_BLOCK = re.compile(r"```bash[ \t]*\r?\n(.*?)\r?\n?```", re.DOTALL)
# The submission mini-swe-agent teaches. Its `git add -A && git diff --cached` part is redundant here (the
# patch comes from Sandbox.diff()), so this exact form is not executed at all.
_SUBMIT_CANONICAL = re.compile(
    rf"^\s*echo\s+['\"]?{SUBMIT_SENTINEL}['\"]?\s*(&&\s*git\s+add\s+-A\s*&&\s*git\s+diff\s+--cached\s*)?$"
)

BASH_TOOL = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Run one bash command in a fresh subshell in the repository and return its output.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The command to run."}},
            "required": ["command"],
        },
    },
}


@dataclass(frozen=True)
class Action:
    command: str
    tool_call_id: str | None = None  # set in tool mode: the observation must answer this call


def parse_text_action(reply: Reply) -> Action:
    """Exactly one ```bash block; anything else is a `FormatError` the model is told about."""
    blocks = BASH_BLOCK.findall(reply.content)
    if len(blocks) != 1:
        found = "no ```bash block" if not blocks else f"{len(blocks)} ```bash blocks"
        raise FormatError(f"found {found}; exactly one is required")
    command = blocks[0].strip()
    if not command:
        raise FormatError("the ```bash block is empty")
    return Action(command)


def parse_tool_action(reply: Reply) -> Action:
    """Exactly one call of the `bash` tool with a `command` string."""
    calls = reply.tool_calls
    if len(calls) != 1:
        raise FormatError(f"found {len(calls)} tool calls; exactly one call of `bash` is required")
    call = calls[0]
    if call.name != "bash":
        raise FormatError(f"unknown tool {call.name!r}; the only tool is `bash`")
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as exc:
        raise FormatError(f"the tool arguments are not valid JSON ({exc})") from exc
    command = arguments.get("command") if isinstance(arguments, dict) else None
    if not isinstance(command, str) or not command.strip():
        raise FormatError("the `bash` call needs a non-empty string argument `command`")
    return Action(command.strip(), tool_call_id=call.id)


def is_plain_submission(command: str) -> bool:
    """The submission command alone (optionally with mini-swe-agent's git suffix): nothing to run."""
    return bool(_SUBMIT_CANONICAL.match(command))


def output_submits(command: str, output: str) -> bool:
    """mini-swe-agent's rule for other commands (`rm -rf scratch && echo SENTINEL`): they run, and
    they submit when the first line of their output is the sentinel."""
    if SUBMIT_SENTINEL not in command:
        return False
    lines = output.lstrip().splitlines()
    return bool(lines) and lines[0].strip() == SUBMIT_SENTINEL


@dataclass(frozen=True)
class ClippedOutput:
    text: str
    truncated: bool
    total_chars: int


def clip_output(output: str, max_chars: int, extra_dropped: int = 0) -> ClippedOutput:
    """Head and tail of a long output with a marker in the middle (errors are usually at the end)."""
    total = len(output) + extra_dropped
    if len(output) <= max_chars:
        return ClippedOutput(output, extra_dropped > 0, total)
    head = max_chars // 2
    tail = max_chars - head
    omitted = total - head - tail
    text = f"{output[:head]}\n[... {omitted} characters omitted ...]\n{output[-tail:]}"
    return ClippedOutput(text, True, total)
