"""The step loop of one trajectory: ask the model, run its command in the sandbox, show the result.

Control flow is carried by the exceptions of `agent.exceptions`; the trajectory file is rewritten
atomically after every step, in a `finally`, so a killed process leaves a valid file behind.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined, Template

from patchfleet import __version__
from patchfleet.agent.actions import (
    BASH_TOOL,
    Action,
    clip_output,
    is_plain_submission,
    output_submits,
    parse_text_action,
    parse_tool_action,
)
from patchfleet.agent.config import SUBMIT_COMMAND, AgentConfig
from patchfleet.agent.exceptions import FormatError, LimitsExceeded, Submitted
from patchfleet.agent.model import KnownPrompt, Model, Reply, call_bound, crosses
from patchfleet.agent.patch import exclude_new_files
from patchfleet.agent.trajectory import RUNNING, TRAJECTORY_FORMAT
from patchfleet.atomic import write_json_atomic
from patchfleet.data.task import Task
from patchfleet.errors import (
    AgentError,
    ConfigError,
    InfrastructureError,
    PatchfleetError,
    SandboxResourceError,
)
from patchfleet.sandbox.base import ExecResult, Sandbox

# a sandbox stopped for going over its own budget (disk writes, files): the trajectory did that, and a
# retry would do it again, so it is an outcome; the host running short (host_reserve) is not its doing
OWN_BUDGETS = frozenset({"disk", "files"})


def error_kind(exc: BaseException) -> str:
    """infrastructure (retry the trajectory), agent (a real outcome), config (fix and rerun), internal."""
    if isinstance(exc, SandboxResourceError) and exc.budget in OWN_BUDGETS:
        return "agent"
    if isinstance(exc, InfrastructureError):
        return "infrastructure"
    if isinstance(exc, AgentError):
        return "agent"
    if isinstance(exc, ConfigError):
        return "config"
    return "internal"


@dataclass(frozen=True)
class ErrorInfo:
    cls: str
    kind: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        return cls(type(exc).__name__, error_kind(exc), str(exc))

    def to_json(self) -> dict[str, str]:
        return {"class": self.cls, "kind": self.kind, "message": self.message}


_JINJA = Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


@functools.lru_cache(maxsize=256)
def _compiled(template: str) -> Template:
    """Templates compile once per process, not once per message (a compile costs about a millisecond)."""
    return _JINJA.from_string(template)


@dataclass
class AgentResult:
    exit_status: str  # Submitted, LimitsExceeded, or the class name of the error that ended the run
    submission: str = ""  # the patch; empty unless submitted
    limit: str | None = None  # steps, cost, wall_time, format_errors
    error: ErrorInfo | None = None
    steps: int = 0
    cost: float = 0.0
    excluded_from_patch: list[str] = field(default_factory=list)
    trajectory_path: Path | None = None

    @property
    def submitted(self) -> bool:
        return self.exit_status == "Submitted"


class Agent:
    """One trajectory of one task in one sandbox. Not reusable: build one per trajectory."""

    def __init__(
        self,
        config: AgentConfig,
        model: Model,
        sandbox: Sandbox,
        *,
        trajectory_path: str | Path | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.sandbox = sandbox
        self.trajectory_path = Path(trajectory_path) if trajectory_path else None
        self.messages: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []  # per-step timings and accounting
        self.format_errors = 0  # consecutive
        self._known_prompt: KnownPrompt | None = None  # (messages, tokens) of the last call's prompt
        self.instance_id = ""
        self.extra_info = dict(info or {})
        self.result = AgentResult(exit_status=RUNNING, trajectory_path=self.trajectory_path)
        self._config_json = config.model_dump(mode="json")  # written at every step; the config is fixed
        self._started = time.monotonic()
        self._started_at = datetime.now(UTC).isoformat()

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, task: Task | str) -> AgentResult:
        statement = task.problem_statement if isinstance(task, Task) else task
        self.instance_id = task.id if isinstance(task, Task) else self.extra_info.get("instance_id", "")
        self._started = time.monotonic()
        variables = self._variables(task=statement)
        self._add("system", self._render(self.config.templates.system, **variables))
        self._add("user", self._render(self.config.templates.instance, **variables))
        try:
            while True:
                try:
                    self.step()
                except FormatError as exc:
                    self.format_errors += 1
                    self._add_format_error(exc)
                finally:
                    self.save(final=False)
        except Submitted:
            try:
                self._submit()
            except PatchfleetError as exc:  # e.g. the sandbox died before the diff was taken
                self._fail(exc)
        except LimitsExceeded as exc:
            self.result.exit_status = "LimitsExceeded"
            self.result.limit = exc.limit
            self.extra_info["limit_detail"] = str(exc)
        except PatchfleetError as exc:
            self._fail(exc)
        except BaseException as exc:
            self._fail(exc)  # a bug or an interrupt: recorded, then raised
            raise
        finally:
            self.save()
        return self.result

    def step(self) -> None:
        self._check_limits()
        kwargs = {"tools": [BASH_TOOL]} if self.config.action_mode == "tool" else {}
        self._check_next_call(kwargs)
        sent = len(self.messages)
        reply = self.model.query(self.messages, **kwargs)
        # the provider's count of this prompt, which every later prompt extends
        self._known_prompt = (sent, reply.prompt_tokens) if reply.prompt_tokens else None
        self._add_reply(reply)
        action = self._parse(reply)
        self.format_errors = 0
        if is_plain_submission(action.command):
            raise Submitted()
        result = self._execute(action)
        if output_submits(action.command, result.output):
            raise Submitted()
        self._add_observation(action, result)

    # -- pieces -------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _check_limits(self) -> None:
        limits = self.config.limits
        calls = self.model.stats.calls
        if limits.format_error_limit and self.format_errors >= limits.format_error_limit:
            raise LimitsExceeded("format_errors", f"{self.format_errors} malformed replies in a row")
        if limits.step_limit and calls >= limits.step_limit:
            raise LimitsExceeded("steps", f"{calls} model calls")
        if limits.cost_limit and self.model.stats.cost >= limits.cost_limit:
            raise LimitsExceeded("cost", f"${self.model.stats.cost:.4f} spent of ${limits.cost_limit}")
        if limits.wall_time_limit and self.elapsed() >= limits.wall_time_limit:
            raise LimitsExceeded("wall_time", f"{self.elapsed():.1f}s of {limits.wall_time_limit}s")

    def _check_next_call(self, kwargs: dict[str, Any]) -> None:
        """The cost limit is hard: a call that could take the spending past it is not made (when the model
        can bound its cost; else `_check_limits` stops at the limit, which the last call may overrun)."""
        limit = self.config.limits.cost_limit
        if not limit:
            return
        bound = call_bound(self.model, self.messages, known=self._known_prompt, **kwargs)
        spent = self.model.stats.cost
        if bound is not None and crosses(limit, spent, bound):
            raise LimitsExceeded(
                "cost", f"the next call may cost up to ${bound:.4f}, with ${spent:.4f} spent of ${limit}"
            )

    def _parse(self, reply: Reply) -> Action:
        if self.config.action_mode == "tool":
            return parse_tool_action(reply)
        return parse_text_action(reply)

    def _execute(self, action: Action) -> ExecResult:
        timeout = self.config.command_timeout
        if self.config.limits.wall_time_limit:
            remaining = self.config.limits.wall_time_limit - self.elapsed()
            if remaining <= 0:
                raise LimitsExceeded("wall_time", "no time left to run the command")
            timeout = min(timeout, remaining)
        started = time.monotonic()
        result = self.sandbox.exec(
            action.command,
            timeout=timeout,
            env=self.config.env or None,
            output_limit=max(self.config.observation_max_chars * 4, 4096),
        )
        self.steps[-1].update(
            exec_time=time.monotonic() - started,
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            command_timeout=timeout,
        )
        return result

    def _submit(self) -> None:
        patch = self.sandbox.diff()
        kept, dropped = exclude_new_files(patch, self.config.patch_exclude)
        self.result.exit_status = "Submitted"
        self.result.submission = kept
        self.result.excluded_from_patch = dropped

    def _fail(self, exc: BaseException) -> None:
        self.result.exit_status = type(exc).__name__
        self.result.error = ErrorInfo.of(exc)

    # -- messages -----------------------------------------------------------------------------------
    def _variables(self, **extra: Any) -> dict[str, Any]:
        return {
            "cwd": self.sandbox.spec.workdir,
            "scratch_dir": self.config.scratch_dir,
            "submit_command": SUBMIT_COMMAND,
            "extra_instructions": self.config.extra_instructions,
            "instance_id": self.instance_id,
            **extra,
        }

    def _render(self, template: str, **variables: Any) -> str:
        return _compiled(template).render(**variables)

    def _add(self, role: str, content: str, **fields: Any) -> dict[str, Any]:
        message = {"role": role, "content": content, **fields}
        self.messages.append(message)
        return message

    def _add_reply(self, reply: Reply) -> None:
        step = len(self.steps) + 1
        record = reply.to_json()
        record.pop("content")
        fields: dict[str, Any] = {"extra": {"step": step, "reply": record}}
        if reply.tool_calls:
            fields["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in reply.tool_calls
            ]
        self._add("assistant", reply.content, **fields)
        self.steps.append(
            {
                "step": step,
                "llm_time": reply.latency,
                "exec_time": 0.0,
                "cost": reply.cost,
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "cached_tokens": reply.cached_tokens,
                "retries": reply.retries,
            }
        )

    def _add_observation(self, action: Action, result: ExecResult) -> None:
        clipped = clip_output(result.output, self.config.observation_max_chars, result.truncated_bytes)
        output = clipped.text if not clipped.text or clipped.text.endswith("\n") else clipped.text + "\n"
        content = self._render(
            self.config.templates.observation,
            exit_code=result.exit_code,
            output=output,
            timed_out=result.timed_out,
            timeout=self.steps[-1].get("command_timeout", self.config.command_timeout),
            truncated=clipped.truncated,
            total_chars=clipped.total_chars,
        )
        extra = {"exit_code": result.exit_code, "duration": result.duration, "timed_out": result.timed_out}
        if action.tool_call_id is not None:
            self._add("tool", content, tool_call_id=action.tool_call_id, extra=extra)
        else:
            self._add("user", content, extra=extra)

    def _add_format_error(self, exc: FormatError) -> None:
        content = self._render(
            self.config.templates.format_error, error=str(exc), submit_command=SUBMIT_COMMAND
        )
        last = self.messages[-1]
        calls = last.get("tool_calls") if last.get("role") == "assistant" else None
        if calls:  # every tool call must be answered before the conversation may continue
            for call in calls:
                self._add("tool", content, tool_call_id=call["id"], extra={"format_error": True})
        else:
            self._add("user", content, extra={"format_error": True})

    # -- the file -----------------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        result = self.result
        info: dict[str, Any] = {
            "exit_status": result.exit_status,
            "submission": result.submission,
            "model_stats": self.model.stats.to_json(),
            "model_name": self.model.name,
            "steps": self.steps,
            "llm_time": sum(s["llm_time"] for s in self.steps),
            "exec_time": sum(s["exec_time"] for s in self.steps),
            "elapsed": self.elapsed(),
            "started_at": self._started_at,
            "updated_at": datetime.now(UTC).isoformat(),
            "limit": result.limit,
            "error": result.error.to_json() if result.error else None,
            "excluded_from_patch": result.excluded_from_patch,
            "patchfleet_version": __version__,
            "config": {"agent": self._config_json},
            **self.extra_info,
        }
        return {
            "trajectory_format": TRAJECTORY_FORMAT,
            "instance_id": self.instance_id,
            "messages": self.messages,
            "info": info,
        }

    def save(self, final: bool = True) -> None:
        """Replace the trajectory file; steps are atomic only, the final save is also durable."""
        self.result.steps = len(self.steps)
        self.result.cost = self.model.stats.cost
        if self.trajectory_path is not None:
            write_json_atomic(self.trajectory_path, self.document(), durable=final)
