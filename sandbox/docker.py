"""The Docker backend of `Sandbox`: one container per sandbox, commands through the in-container exec
server (fast path) or plain `docker exec` when the image has no Python (slow path).

Every container is hardened (limits.py): a minimal capability set, no-new-privileges, read-only mounts,
no host credentials in its environment, and a disk budget kept by the storage driver or the watchdog.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import tarfile
import threading
import time
from pathlib import PurePosixPath
from typing import Any, Self

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Mount
from tenacity import retry, retry_if_exception, stop_after_delay, wait_fixed

from patchfleet.errors import (
    ConfigError,
    ExecTimeout,
    SandboxCrashed,
    SandboxError,
    SandboxResourceError,
    SandboxStartError,
)
from patchfleet.sandbox import engine, execserver, git, reaper
from patchfleet.sandbox.base import (
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_TIMEOUT,
    ExecResult,
    Network,
    PatchResult,
    SandboxSpec,
)
from patchfleet.sandbox.channel import ChannelClosed, ExecChannel, decode_b64, encode_b64
from patchfleet.sandbox.limits import CAPABILITIES, SECURITY_OPT, parse_size, scrub_env
from patchfleet.sandbox.output import join_capped
from patchfleet.sandbox.trust import HostTrust
from patchfleet.sandbox.watchdog import DEFAULT_INTERVAL, DiskWatchdog, Watched, host_paths

HOST_GRACE = 30.0  # beyond a command's own timeout, how long the host waits for the server's answer
FILE_ERRORS = {
    "FileNotFoundError": FileNotFoundError,
    "IsADirectoryError": IsADirectoryError,
    "NotADirectoryError": NotADirectoryError,
    "PermissionError": PermissionError,
}
LOST_SERVER_EXIT = 255
DEFAULT_DISK = "4g"
DEFAULT_HOST_RESERVE = "2g"
DEFAULT_MIN_FREE_DISK = "10g"
DEFAULT_FILES = 1_000_000  # a pip-installed scientific stack is ~50,000; inodes run out before bytes do
# Drivers that enforce `--storage-opt size` (overlay2 only on xfs mounted with pquota: tried, and
# dropped for the watchdog if the engine refuses).
QUOTA_DRIVERS = frozenset({"btrfs", "zfs", "devicemapper", "windowsfilter"})
ENGINE_ERRORS = (requests.RequestException, DockerException)  # the engine went away mid-call
REMOVE_PATIENCE = 30.0  # how long close() waits for an engine that restarts before leaving the container


def engine_unreachable(exc: BaseException) -> bool:
    """No answer from the engine at all (refused, reset, timed out); the SDK's APIError is an HTTP
    error too, but it is an answer: 404, 409 and the like are never waited out."""
    return isinstance(exc, requests.RequestException) and not isinstance(exc, APIError)


def driver_enforces_size(info: dict[str, Any]) -> bool:
    """Whether the engine's storage driver can cap a container's writable layer itself."""
    driver = info.get("Driver", "")
    if driver == "overlay2":
        return dict(info.get("DriverStatus") or []).get("Backing Filesystem") == "xfs"
    return driver in QUOTA_DRIVERS


class DockerBackend:
    """Starts Docker sandboxes; owns the client and the bound on concurrent container starts."""

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        max_concurrent_starts: int = 4,
        trust: HostTrust | None = None,
        disk: str | None = DEFAULT_DISK,
        host_reserve: str | None = DEFAULT_HOST_RESERVE,
        min_free_disk: str | None = DEFAULT_MIN_FREE_DISK,
        watchdog_interval: float = DEFAULT_INTERVAL,
        capabilities: tuple[str, ...] = CAPABILITIES,
        reap_leaked: bool = True,
        allow_host_network: bool = False,
        files: int | None = DEFAULT_FILES,
    ) -> None:
        self.client = client or engine.connect()
        self.trust = trust or HostTrust()
        self.disk = disk  # the budget of specs that name none
        self.files = files  # files one sandbox may create (None: no budget)
        self.min_free_disk = min_free_disk  # for the image builders on this backend
        self.capabilities = capabilities
        self.allow_host_network = allow_host_network
        self._starts = threading.BoundedSemaphore(max_concurrent_starts)
        self._setup_guard = threading.Lock()
        self._reap_pending = reap_leaked
        self._host_reserve = parse_size(host_reserve)
        self._watchdog_interval = watchdog_interval
        self._watchdog: DiskWatchdog | None = None
        self._driver_quota: bool | None = None  # None: not asked yet
        self.reaped: list[str] = []  # leaked containers of dead processes removed at the first start

    @property
    def watchdog(self) -> DiskWatchdog:
        self._setup()
        assert self._watchdog is not None
        return self._watchdog

    def _setup(self) -> None:
        """Once, before the first start: remove what dead processes leaked, learn the storage driver."""
        with self._setup_guard:
            if self._reap_pending:
                self._reap_pending = False
                # best effort: a failed clean-up must not stop this run; the next one tries again
                with contextlib.suppress(*ENGINE_ERRORS):
                    self.reaped = reaper.prune(self.client)
            if self._watchdog is None:
                try:
                    info = self.client.info()
                except ENGINE_ERRORS as exc:
                    raise SandboxStartError(f"cannot ask the engine about its storage: {exc}") from exc
                self._driver_quota = driver_enforces_size(info)
                self._watchdog = DiskWatchdog(
                    self.client,
                    interval=self._watchdog_interval,
                    host_reserve=self._host_reserve,
                    data_root=info.get("DockerRootDir"),
                )

    def start(self, spec: SandboxSpec) -> DockerSandbox:
        """Create and start a hardened container for `spec`, put it under watch, open its exec channel."""
        if spec.network is Network.HOST and not self.allow_host_network:
            raise ConfigError(
                "network 'host' gives a sandbox the host's network stack (every service on its loopback); "
                "use 'none' or 'bridge', or set DockerConfig.allow_host_network"
            )
        self._setup()
        labels = {**engine.ownership_labels(), **{engine.LABEL_PREFIX + k: v for k, v in spec.labels.items()}}
        mounts = (*self.trust.mounts(), *spec.mounts)
        environment, withheld = scrub_env({**self.trust.container_env(), **spec.env})
        limit = parse_size(spec.disk if spec.disk is not None else self.disk)
        options: dict[str, Any] = {
            "init": True,
            "labels": labels,
            "network_mode": spec.network.value,
            "nano_cpus": int(spec.cpus * 1e9) if spec.cpus else None,
            "mem_limit": spec.memory,
            "memswap_limit": spec.memory,  # no swap: a memory hog meets the OOM killer, not the disk
            "pids_limit": spec.pids_limit,
            "environment": environment,
            "working_dir": spec.workdir,
            # `mounts`, not `volumes`: the SDK would also declare each target a VOLUME in the
            # container config, which a committed build container passes on to its image
            "mounts": [Mount(inside, host, type="bind", read_only=True) for host, inside in mounts],
            "cap_drop": ["ALL"],
            "cap_add": list(self.capabilities),
            "security_opt": list(SECURITY_OPT),
        }
        if spec.tmp_size:
            options["tmpfs"] = {"/tmp": f"size={parse_size(spec.tmp_size)},mode=1777"}
        with self._starts:
            container, quota = self._create(spec, options, limit)
            sandbox = DockerSandbox(self.client, container, spec, watchdog=self.watchdog)
            sandbox.withheld_env = withheld
            try:
                container.reload()  # the start fills in the paths of /etc/hosts and friends
                sandbox.watched = Watched(
                    container, None if quota else limit, host_paths(container.attrs), files_limit=self.files
                )
                self.watchdog.watch(sandbox.watched)
                sandbox.connect()
            except BaseException:
                sandbox.close()
                raise
        return sandbox

    def _create(self, spec: SandboxSpec, options: dict[str, Any], limit: int | None) -> tuple[Any, bool]:
        """The running container, and whether the storage driver enforces its disk budget."""
        quota = bool(limit and self._driver_quota)
        try:
            try:
                extra = {"storage_opt": {"size": str(limit)}} if quota else {}
                return self._run(spec.image, {**options, **extra}), quota
            except APIError as exc:
                if not quota or not any(word in str(exc).lower() for word in ("storage", "quota")):
                    raise
                self._driver_quota = False  # e.g. overlay2 on xfs without pquota: the watchdog takes over
                return self._run(spec.image, options), False
        except ImageNotFound as exc:
            raise SandboxStartError(
                f"image {spec.image!r} does not exist locally; build it (`patchfleet images build`)"
            ) from exc
        except APIError as exc:
            raise SandboxStartError(f"cannot start a container from {spec.image!r}: {exc}") from exc
        except ENGINE_ERRORS as exc:
            raise SandboxStartError(f"the engine failed while starting {spec.image!r}: {exc}") from exc

    def _run(self, image: str, options: dict[str, Any]) -> Any:
        """Create, then start: unlike the SDK's `run`, never pull a missing image from a registry (an
        image deleted under us must fail fast), and never leave a created container behind."""
        container = self.client.containers.create(image, ["sleep", "infinity"], **options)
        try:
            container.start()
        except BaseException:
            with contextlib.suppress(*ENGINE_ERRORS):
                container.remove(force=True)
            raise
        return container


class DockerSandbox:
    """One running container. Thread-safe for sequential use; one command runs at a time."""

    def __init__(
        self,
        client: docker.DockerClient,
        container: Any,
        spec: SandboxSpec,
        *,
        watchdog: DiskWatchdog | None = None,
    ) -> None:
        self.client = client
        self.container = container
        self.spec = spec
        self.base_commit: str | None = spec.base_commit
        self.withheld_env: list[str] = []  # names of credentials kept out of its environment
        self.watched: Watched | None = None  # its record with the disk watchdog
        self._watchdog = watchdog
        self._image_id: str = (container.attrs or {}).get("Image", "")
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
        if self.spec.user:
            probe = self._slow_exec("id -u", timeout=30)
            if not probe.ok:
                raise SandboxStartError(
                    f"cannot run commands as user {self.spec.user!r} in {self.spec.image}: "
                    f"{probe.output.strip()[:300]}"
                )
        self._open_channel()
        if self.spec.workdir:
            self.base_commit = git.prepare_baseline(self, self.spec.workdir, self.base_commit)

    def _open_channel(self) -> None:
        try:
            self._channel = ExecChannel.open(self.client.api, self.container.id, user=self.spec.user)
        except ChannelClosed:
            self._ensure_running()
            self._channel = None  # no interpreter in the image: every command takes the slow path
            return
        except ENGINE_ERRORS as exc:  # e.g. 409 "is not running": killed between a check and the exec
            self._ensure_running()
            raise SandboxCrashed(f"cannot start the exec server in {self.container.short_id}: {exc}") from exc
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

    @property
    def stopped_by(self) -> SandboxResourceError | None:
        """The budget the watchdog stopped this sandbox for, if it did."""
        return self.watched.violation if self.watched is not None else None

    def _ensure_running(self) -> None:
        if self.watched is not None:
            self.watched.raise_if_stopped()
        try:
            self.container.reload()
        except NotFound as exc:
            raise SandboxCrashed(f"container {self.container.short_id} no longer exists") from exc
        except ENGINE_ERRORS as exc:
            raise SandboxCrashed(
                f"cannot reach the engine to check container {self.container.short_id}: {exc}"
            ) from exc
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
            self._slow_exec(f"kill -9 {self._server_pid} 2>/dev/null; true", timeout=10, user="root")
        self._open_channel()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.unwatch(self.container.id)
        if self._channel is not None:
            self._channel.close()
        try:
            self._remove_container()
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise SandboxError(f"cannot remove container {self.container.short_id}: {exc}") from exc
        except ENGINE_ERRORS as exc:
            raise SandboxError(
                f"cannot remove container {self.container.short_id}, the engine is unreachable ({exc}); "
                "the next patchfleet command that starts sandboxes removes it once this process is gone"
            ) from exc
        self._remove_orphaned_image()

    @retry(
        retry=retry_if_exception(engine_unreachable),
        wait=wait_fixed(0.5),
        stop=stop_after_delay(REMOVE_PATIENCE),
        reraise=True,
    )
    def _remove_container(self) -> None:
        """Remove the container, waiting out an engine restart (its containers outlive it, stopped)."""
        self.container.remove(force=True)

    def _remove_orphaned_image(self) -> None:
        """Someone deleted our image while we used it (`docker rmi -f`): its untagged remains are ours."""
        if not self._image_id:
            return
        try:
            image = self.client.images.get(self._image_id)
            if image.tags or engine.LAYER_LABEL not in (image.labels or {}):
                return
            self.client.images.remove(self._image_id)
        except (NotFound, APIError, *ENGINE_ERRORS):
            return  # still used by another container, or gone: either way not ours to force

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
        if self.watched is not None:
            self.watched.raise_if_stopped()
        if self._closed:
            raise SandboxError("sandbox is closed")
        env, _ = scrub_env(env)
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
        user: str | None = None,
    ) -> ExecResult:
        """Plain `docker exec` under coreutils `timeout`: for images without Python, and for recovery."""
        api = self.client.api
        wrapped = ["timeout", "-s", "KILL", str(max(int(timeout + 0.999), 1)), "/bin/sh", "-c", command]
        start = time.monotonic()
        env, _ = scrub_env(env)
        try:
            exec_id = api.exec_create(
                self.container.id, wrapped, workdir=cwd, environment=env, user=user or self.spec.user or ""
            )["Id"]
            buffer = execserver.CappedBuffer(output_limit)
            for chunk in api.exec_start(exec_id, stream=True):
                buffer.add(chunk)
            exit_code = api.exec_inspect(exec_id)["ExitCode"]
        except NotFound as exc:
            self._ensure_running()  # raises what stopped it, if the watchdog did
            raise SandboxCrashed(f"container {self.container.short_id} is gone") from exc
        except APIError as exc:
            self._ensure_running()
            raise SandboxError(f"docker exec failed: {exc}") from exc
        except ENGINE_ERRORS as exc:
            self._ensure_running()
            raise SandboxCrashed(f"docker exec in {self.container.short_id} broke: {exc}") from exc
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
