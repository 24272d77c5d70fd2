"""The Docker backend of `Sandbox`: one container per sandbox, commands through the in-container exec
server (fast path) or plain `docker exec` when the image has no Python (slow path)."""

from __future__ import annotations

import io
import shlex
import tarfile
import threading
import time
from pathlib import PurePosixPath
from typing import Any, Self

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import Mount

from patchfleet.errors import ExecTimeout, SandboxCrashed, SandboxError, SandboxStartError
from patchfleet.sandbox import engine, execserver, git
from patchfleet.sandbox.base import (
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_TIMEOUT,
    ExecResult,
    PatchResult,
    SandboxSpec,
)
from patchfleet.sandbox.channel import ChannelClosed, ExecChannel, decode_b64, encode_b64
from patchfleet.sandbox.output import join_capped
from patchfleet.sandbox.trust import HostTrust

HOST_GRACE = 30.0  # beyond a command's own timeout, how long the host waits for the server's answer
FILE_ERRORS = {
    "FileNotFoundError": FileNotFoundError,
    "IsADirectoryError": IsADirectoryError,
    "NotADirectoryError": NotADirectoryError,
    "PermissionError": PermissionError,
}
LOST_SERVER_EXIT = 255


class DockerBackend:
    """Starts Docker sandboxes; owns the client and the bound on concurrent container starts."""

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        max_concurrent_starts: int = 4,
        trust: HostTrust | None = None,
    ) -> None:
        self.client = client or engine.connect()
        self.trust = trust or HostTrust()
        self._starts = threading.BoundedSemaphore(max_concurrent_starts)

    def start(self, spec: SandboxSpec) -> DockerSandbox:
        """Create and start a container for `spec` and open its exec channel."""
        labels = {**engine.ownership_labels(), **{engine.LABEL_PREFIX + k: v for k, v in spec.labels.items()}}
        mounts = (*self.trust.mounts(), *spec.mounts)
        with self._starts:
            try:
                container = self.client.containers.run(
                    spec.image,
                    ["sleep", "infinity"],
                    detach=True,
                    init=True,
                    labels=labels,
                    network_mode=spec.network.value,
                    nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
                    mem_limit=spec.memory,
                    memswap_limit=spec.memory,  # no swap: a memory hog meets the OOM killer, not the disk
                    pids_limit=spec.pids_limit,
                    environment={**self.trust.container_env(), **spec.env},
                    working_dir=spec.workdir,
                    # `mounts`, not `volumes`: the SDK would also declare each target a VOLUME in the
                    # container config, which a committed build container passes on to its image
                    mounts=[Mount(inside, host, type="bind", read_only=True) for host, inside in mounts],
                )
            except ImageNotFound as exc:
                raise SandboxStartError(
                    f"image {spec.image!r} does not exist locally; build it (`patchfleet images build`)"
                ) from exc
            except APIError as exc:
                raise SandboxStartError(f"cannot start a container from {spec.image!r}: {exc}") from exc
            sandbox = DockerSandbox(self.client, container, spec)
            try:
                sandbox.connect()
            except BaseException:
                sandbox.close()
                raise
        return sandbox


class DockerSandbox:
    """One running container. Thread-safe for sequential use; one command runs at a time."""

    def __init__(self, client: docker.DockerClient, container: Any, spec: SandboxSpec) -> None:
        self.client = client
        self.container = container
        self.spec = spec
        self.base_commit: str | None = spec.base_commit
        self._channel: ExecChannel | None = None
        self._server_pid: int | None = None
        self._closed = False

    @property
    def id(self) -> str:
        return self.container.id

    @property
    def fast_path(self) -> bool:
        return self._channel is not None

    # -- lifecycle -------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the exec channel (if the image has Python) and record the repository's base state."""
        self._open_channel()
        if self.spec.workdir:
            self.base_commit = git.prepare_baseline(self, self.spec.workdir, self.base_commit)

    def _open_channel(self) -> None:
        try:
            self._channel = ExecChannel.open(self.client.api, self.container.id)
        except ChannelClosed:
            self._ensure_running()
            self._channel = None  # no interpreter in the image: every command takes the slow path
            return
        self._server_pid = self._channel.server_pid

    def alive(self) -> bool:
        """A cheap health check: the container runs and its exec server answers."""
        if self._closed:
            return False
        try:
            if self._channel is not None:
                self._channel.request({"op": "ping"}, deadline=5.0)
            else:
                self._ensure_running()
        except (SandboxError, OSError):
            return False
        return True

    def _ensure_running(self) -> None:
        try:
            self.container.reload()
        except NotFound as exc:
            raise SandboxCrashed(f"container {self.container.short_id} no longer exists") from exc
        state = self.container.attrs.get("State", {})
        if state.get("Status") != "running":
            raise SandboxCrashed(
                f"container {self.container.short_id} is {state.get('Status')} "
                f"(exit code {state.get('ExitCode')}, OOMKilled={state.get('OOMKilled')})"
            )

    def _recover(self) -> None:
        """After the server died or hung: make sure the container lives and start a fresh server."""
        self._ensure_running()
        if self._channel is not None:
            self._channel.close()
        if self._server_pid:
            self._slow_exec(f"kill -9 {self._server_pid} 2>/dev/null; true", timeout=10)
        self._open_channel()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._channel is not None:
            self._channel.close()
        try:
            self.container.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise SandboxError(f"cannot remove container {self.container.short_id}: {exc}") from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands --------------------------------------------------------------------------------

    def exec(
        self,
        command: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        if self._closed:
            raise SandboxError("sandbox is closed")
        workdir = cwd or self.spec.workdir
        if self._channel is None:
            return self._slow_exec(command, timeout, cwd=workdir, env=env, output_limit=output_limit)
        request = {
            "op": "run",
            "cmd": command,
            "timeout": timeout,
            "cwd": workdir,
            "env": env or {},
            "limit": output_limit,
        }
        try:
            reply = self._channel.request(request, deadline=timeout + HOST_GRACE)
        except ChannelClosed:
            self._recover()
            return ExecResult(
                exit_code=LOST_SERVER_EXIT,
                output="patchfleet: the command killed the sandbox's exec server (it was restarted); "
                "its output is lost",
                duration=0.0,
            )
        except ExecTimeout:
            self._recover()
            return ExecResult(
                exit_code=execserver.TIMEOUT_EXIT_CODE,
                output="patchfleet: no answer from "
                "the sandbox before the deadline; its processes were killed",
                duration=timeout,
                timed_out=True,
            )
        if "error" in reply:
            raise SandboxError(f"exec server failed: {reply['error']}: {reply.get('message')}")
        return ExecResult(
            exit_code=reply["exit_code"],
            output=join_capped(decode_b64(reply["head"]), decode_b64(reply["tail"]), reply["dropped"]),
            duration=reply["duration"],
            timed_out=reply["timed_out"],
            truncated_bytes=reply["dropped"],
            oom_killed=reply["oom_killed"],
        )

    def _slow_exec(
        self,
        command: str,
        timeout: float,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        """Plain `docker exec` under coreutils `timeout`: for images without Python, and for recovery."""
        api = self.client.api
        wrapped = ["timeout", "-s", "KILL", str(max(int(timeout + 0.999), 1)), "/bin/sh", "-c", command]
        start = time.monotonic()
        try:
            exec_id = api.exec_create(self.container.id, wrapped, workdir=cwd, environment=env)["Id"]
            buffer = execserver.CappedBuffer(output_limit)
            for chunk in api.exec_start(exec_id, stream=True):
                buffer.add(chunk)
            exit_code = api.exec_inspect(exec_id)["ExitCode"]
        except NotFound as exc:
            raise SandboxCrashed(f"container {self.container.short_id} is gone") from exc
        except APIError as exc:
            self._ensure_running()
            raise SandboxError(f"docker exec failed: {exc}") from exc
        timed_out = exit_code == 137 and time.monotonic() - start >= timeout
        head, tail, dropped = buffer.result()
        return ExecResult(
            exit_code=execserver.TIMEOUT_EXIT_CODE if timed_out else exit_code,
            output=join_capped(head, tail, dropped),
            duration=time.monotonic() - start,
            timed_out=timed_out,
            truncated_bytes=dropped,
        )

    def _request(self, payload: dict[str, Any], deadline: float = 120.0) -> dict[str, Any] | None:
        """A non-run request through the fast path, or None when there is none."""
        if self._channel is None:
            return None
        try:
            reply = self._channel.request(payload, deadline=deadline)
        except (ChannelClosed, ExecTimeout):
            self._recover()
            assert self._channel is not None
            reply = self._channel.request(payload, deadline=deadline)
        if "error" in reply:
            error = FILE_ERRORS.get(reply["error"])
            if error is not None:
                raise error(reply.get("message"))
            raise SandboxError(f"exec server failed: {reply['error']}: {reply.get('message')}")
        return reply

    # -- files -----------------------------------------------------------------------------------

    def _abs(self, path: str | PurePosixPath) -> PurePosixPath:
        path = PurePosixPath(path)
        return path if path.is_absolute() else PurePosixPath(self.spec.workdir) / path

    def read_file(self, path: str | PurePosixPath) -> bytes:
        target = self._abs(path)
        reply = self._request({"op": "read", "path": str(target)})
        if reply is not None:
            return decode_b64(reply["data"])
        try:
            stream, _ = self.container.get_archive(str(target))
        except NotFound as exc:
            raise FileNotFoundError(str(target)) from exc
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            extracted = tar.extractfile(member) if member else None
            if extracted is None:
                raise IsADirectoryError(str(target))
            return extracted.read()

    def write_file(self, path: str | PurePosixPath, content: bytes | str, mode: int = 0o644) -> None:
        target = self._abs(path)
        data = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
        if (
            self._request({"op": "write", "path": str(target), "data": encode_b64(data), "mode": mode})
            is not None
        ):
            return
        self._slow_exec(f"mkdir -p {shlex.quote(str(target.parent))}", timeout=30)
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(target.name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if not self.container.put_archive(str(target.parent), archive.getvalue()):
            raise SandboxError(f"cannot write {target}")

    # -- repository ------------------------------------------------------------------------------

    def apply_patch(self, patch: str | bytes) -> PatchResult:
        return git.apply_patch(self, self.spec.workdir, patch)

    def diff(self) -> str:
        return git.diff(self, self.spec.workdir, self._require_base())

    def reset(self) -> None:
        """Back to the base commit: processes killed, tracked files restored, new files removed."""
        self._request({"op": "killall"})  # the slow path tracks no processes: nothing to kill there
        git.reset(self, self.spec.workdir, self._require_base())

    def _require_base(self) -> str:
        if not self.base_commit:
            raise SandboxError(f"no git repository at {self.spec.workdir} in {self.spec.image}")
        return self.base_commit
