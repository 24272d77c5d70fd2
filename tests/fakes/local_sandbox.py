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
from patchfleet.sandbox.base import (
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_TIMEOUT,
    ExecResult,
    PatchMethod,
    PatchResult,
    SandboxSpec,
)

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def cap(data: bytes, limit: int) -> tuple[str, int]:
    """Head and tail of `data` within `limit` bytes, and how many bytes were cut from the middle."""
    if len(data) <= limit:
        return data.decode("utf-8", "replace"), 0
    half = max(limit // 2, 1)
    dropped = len(data) - 2 * half
    marker = f"\n[... {dropped} bytes of output omitted ...]\n"
    return data[:half].decode("utf-8", "replace") + marker + data[-half:].decode("utf-8", "replace"), dropped


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
        self.base = self._git("rev-parse", "--verify", f"{base_commit or 'HEAD'}^{{commit}}").strip()
        self._exclude_untracked_at_start()

    # -- helpers -----------------------------------------------------------------------------------
    def _git(self, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> str:
        proc = subprocess.run(
            ["git", *args],
            cwd=self.repo,
            env={**os.environ, **GIT_IDENTITY, **(env or {})},
            input=stdin,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SandboxError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode("utf-8", "surrogateescape")

    def _exclude_untracked_at_start(self) -> None:
        # Same rule as the real backends: files untracked at start belong to the environment.
        untracked = self._git("ls-files", "-o", "--directory", "--exclude-standard").splitlines()
        if untracked:
            exclude = self.repo / self._git("rev-parse", "--git-path", "info/exclude").strip()
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a") as handle:
                handle.writelines(f"/{path}\n" for path in untracked)

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
        output, dropped = cap(out, output_limit)
        return ExecResult(
            exit_code=-9 if timed_out else proc.returncode,
            output=output,
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
        data = patch.encode("utf-8", "surrogateescape") if isinstance(patch, str) else patch
        try:
            log = self._git("apply", "--verbose", "-", stdin=data)
        except SandboxError as exc:
            return PatchResult(applied=False, method=None, log=str(exc))
        return PatchResult(applied=True, method=PatchMethod.GIT_APPLY, log=log)

    def diff(self) -> str:
        """`git add -A` into a throwaway index, then the binary diff of that index against the base."""
        self._check_open()
        index = self._scratch / "diff.index"
        real_index = self.repo / self._git("rev-parse", "--git-path", "index").strip()
        if real_index.exists():
            index.write_bytes(real_index.read_bytes())
        else:
            index.unlink(missing_ok=True)
        env = {"GIT_INDEX_FILE": str(index)}
        self._git("add", "-A", env=env)
        return self._git(
            "-c", "core.quotepath=off", "diff", "--cached", "--binary", "--no-color", "-M", self.base, env=env
        )

    def reset(self) -> None:
        self._check_open()
        self._git("reset", "-q", "--hard", self.base)
        self._git("clean", "-ffdq")

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
