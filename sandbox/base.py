"""The `Sandbox` contract every backend implements, and the plain values it returns.

Callers (agent, selection, evaluation) depend only on this module, never on Docker objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Protocol, Self, runtime_checkable

DEFAULT_TIMEOUT = 120.0
DEFAULT_OUTPUT_LIMIT = 256 * 1024  # bytes kept per command: half head, half tail
REPO_DIR = "/testbed"


class Network(StrEnum):
    NONE = "none"
    BRIDGE = "bridge"
    HOST = "host"


@dataclass(frozen=True)
class ExecResult:
    """What one command did. A command that timed out is a result, not an exception."""

    exit_code: int
    output: str  # stdout and stderr interleaved, decoded with replacement, capped head+tail
    duration: float  # seconds inside the container
    timed_out: bool = False
    truncated_bytes: int = 0  # bytes cut from the middle of the output
    oom_killed: bool = False  # the kernel's OOM killer fired while the command ran

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class PatchMethod(StrEnum):
    GIT_APPLY = "git apply"
    GIT_APPLY_WHITESPACE = "git apply --ignore-whitespace"
    PATCH_FUZZ = "patch --batch --fuzz=5 -p1"


@dataclass(frozen=True)
class PatchResult:
    """Which method of the fallback chain applied a patch, or why none did."""

    applied: bool
    method: PatchMethod | None
    log: str  # what each attempted method printed, in order

    def raise_for_failure(self) -> None:
        if not self.applied:
            from patchfleet.errors import PatchApplyError

            raise PatchApplyError(f"patch does not apply with any method:\n{self.log}")


@dataclass(frozen=True)
class SandboxSpec:
    """Everything needed to start one sandbox. Images are resolved before this point."""

    image: str
    labels: dict[str, str] = field(default_factory=dict)  # run, task, role: used by the reaper
    network: Network = Network.NONE
    cpus: float | None = 1.0
    memory: str | None = "4g"
    pids_limit: int | None = 1024
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = REPO_DIR
    base_commit: str | None = None  # None: whatever HEAD is in `workdir` when the sandbox starts
    mounts: tuple[tuple[str, str], ...] = ()  # (host path, container path), read-only
    # bytes it may write (writable layer, /tmp, volumes), Docker notation ("4g"); None: the backend's
    # budget (DockerConfig.disk); "0": none (the backend's host-disk reserve still holds)
    disk: str | None = None
    tmp_size: str | None = None  # /tmp on a tmpfs of this size (charged to `memory`); None: on the layer
    user: str | None = None  # run commands as this user ("nobody", "1000:1000"); None: the image's user


@runtime_checkable
class Sandbox(Protocol):
    """An isolated machine with a repository in it. Use as a context manager."""

    spec: SandboxSpec

    def exec(
        self,
        command: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult: ...

    def read_file(self, path: str | PurePosixPath) -> bytes: ...

    def write_file(self, path: str | PurePosixPath, content: bytes | str, mode: int = 0o644) -> None: ...

    def apply_patch(self, patch: str | bytes) -> PatchResult: ...

    def diff(self) -> str: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...
