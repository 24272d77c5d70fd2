"""A TEST FAKE of the `Sandbox` contract that runs commands on the host, with NO isolation at all.

Commands run with the real bash in a real git repository in a temporary directory, so the agent's loop
(exec, diff, reset) can be tested in milliseconds without Docker. Anything a command does outside the
repository happens on the host: use only with scripted models and trusted commands.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Self

from patchfleet.errors import SandboxError
from patchfleet.sandbox import git as git_ops
from patchfleet.sandbox.base import (
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_TIMEOUT,
    ExecResult,
    PatchResult,
    SandboxSpec,
)
from patchfleet.sandbox.output import cap_bytes, join_capped

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


# A one-bug repository: add() subtracts; its test fails until the bug is fixed.
CALC_BUG = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}


class LocalSandbox:
    """A git repository on the host, behind the `Sandbox` interface. Test fake: no isolation."""

    def __init__(self, repo: Path, base_commit: str | None = None) -> None:
        self.repo = Path(repo)
        self.spec = SandboxSpec(image="local-fake", workdir=str(self.repo), base_commit=base_commit)
        self._scratch = Path(tempfile.mkdtemp(prefix="patchfleet-local-sandbox-"))
        self.closed = False
        self.commands: list[str] = []  # every command run, for assertions
        # the repository operations are the real backends' own, run through this fake's exec
        self.base = git_ops.prepare_baseline(self, str(self.repo), base_commit)
        if self.base is None:
            raise SandboxError(f"{self.repo} is not a git repository")

    # -- helpers -----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise SandboxError("sandbox is closed")

    def _abs(self, path: str | PurePosixPath) -> Path:
        path = Path(str(path))
        return path if path.is_absolute() else self.repo / path

    # -- Sandbox -----------------------------------------------------------------------------------
    def exec(
        self,
        command: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        self._check_open()
        self.commands.append(command)
        started = time.monotonic()
        proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd or self.repo,
            env={**os.environ, **GIT_IDENTITY, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a timeout kills the whole process group
        )
        timed_out = False
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        head, tail, dropped = cap_bytes(out, output_limit)
        return ExecResult(
            exit_code=-9 if timed_out else proc.returncode,
            output=join_capped(head, tail, dropped),
            duration=time.monotonic() - started,
            timed_out=timed_out,
            truncated_bytes=dropped,
        )

    def read_file(self, path: str | PurePosixPath) -> bytes:
        self._check_open()
        return self._abs(path).read_bytes()

    def write_file(self, path: str | PurePosixPath, content: bytes | str, mode: int = 0o644) -> None:
        self._check_open()
        target = self._abs(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
        target.chmod(mode)

    def apply_patch(self, patch: str | bytes) -> PatchResult:
        self._check_open()
        return git_ops.apply_patch(self, str(self.repo), patch, scratch=str(self._scratch))

    def diff(self) -> str:
        self._check_open()
        return git_ops.diff(self, str(self.repo), self.base, scratch=str(self._scratch))

    def reset(self) -> None:
        self._check_open()
        git_ops.reset(self, str(self.repo), self.base)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        shutil.rmtree(self._scratch)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_repo(root: Path, files: dict[str, str], message: str = "initial") -> Path:
    """A real git repository holding `files`, committed once."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = {**os.environ, **GIT_IDENTITY}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", message]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    return root
