"""A `Sandbox` that runs nothing: it records commands and answers with a fixed result.

For replaying recorded trajectories whose commands must not touch the host (they were written for a
container with the repository in /testbed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Self

from patchfleet.sandbox.base import (
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_TIMEOUT,
    REPO_DIR,
    ExecResult,
    PatchResult,
    SandboxSpec,
)


class NullSandbox:
    def __init__(
        self,
        output: str | Callable[[str], str] = "",
        exit_code: int = 0,
        patch: str = "",
    ) -> None:
        self.spec = SandboxSpec(image="null", workdir=REPO_DIR)
        self.output = output  # fixed text, or a function of the command
        self.exit_code = exit_code
        self.patch = patch
        self.commands: list[str] = []
        self.files: dict[str, bytes] = {}

    def exec(
        self,
        command: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        self.commands.append(command)
        output = self.output(command) if callable(self.output) else self.output
        return ExecResult(exit_code=self.exit_code, output=output, duration=0.0)

    def read_file(self, path: str | PurePosixPath) -> bytes:
        return self.files[str(path)]

    def write_file(self, path: str | PurePosixPath, content: bytes | str, mode: int = 0o644) -> None:
        self.files[str(path)] = content.encode() if isinstance(content, str) else content

    def apply_patch(self, patch: str | bytes) -> PatchResult:
        self.patch = patch.decode() if isinstance(patch, bytes) else patch
        return PatchResult(applied=True, method=None, log="")

    def diff(self) -> str:
        return self.patch

    def reset(self) -> None:
        self.patch = ""

    def close(self) -> None:
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
