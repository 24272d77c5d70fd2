"""The disk watchdog: per-sandbox write budgets where the storage driver cannot enforce a size.

Only overlay2 on xfs with project quotas, btrfs, zfs and devicemapper take `--storage-opt size`; on the
rest (overlay2 on ext4, fuse-overlayfs, vfs) nothing stops a container from filling the host's disk.
One thread per backend measures, every `interval` seconds, what each sandbox wrote: its writable layer
(the driver's upper directory), its anonymous volumes and Docker's per-container files (a sandbox can
append to /etc/hosts, which is a bind mount of one of them). A sandbox over its budget, or the biggest
writer when the host's free space falls under the reserve, is killed and removed (which frees its
layer); its next or current command then raises `SandboxResourceError` naming the budget.

One `du` over every watched directory per tick costs one process spawn, not a Python tree walk under
the GIL that the agents' threads share; `docker inspect --size` would take seconds per container.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from docker.errors import DockerException

from patchfleet.errors import SandboxResourceError
from patchfleet.sandbox.limits import human

DEFAULT_INTERVAL = 1.0
DU_TIMEOUT = 60.0
FILES_EVERY = 5  # rounds between file counts: creating files is slow, and the count costs a second pass
# what one round may meet and survive: du failing or slow, the engine gone for a moment
ROUND_ERRORS = (OSError, subprocess.SubprocessError, requests.RequestException, DockerException)


@dataclass(eq=False)  # one record per sandbox: identity, not field values
class Watched:
    """One sandbox under watch: where its writes land, its budget, and what happened to it."""

    container: Any
    limit: int | None  # bytes; None: only the host reserve applies
    paths: tuple[str, ...]  # host directories holding its writes; empty: ask the engine (slow)
    files_limit: int | None = None  # files and directories it may create (inodes are finite too)
    used: int = 0
    files: int = 0
    violation: SandboxResourceError | None = None  # set before the container is killed
    removed: threading.Event = field(default_factory=threading.Event)  # set once it is gone

    def raise_if_stopped(self, wait: float = 30.0) -> None:
        """Raise what stopped the sandbox, once its container (and the disk it used) is gone."""
        if self.violation is not None:
            self.removed.wait(wait)
            raise self.violation


def host_paths(attrs: dict[str, Any]) -> tuple[str, ...]:
    """The host directories a container's writes go to, if this host can see them (local engine)."""
    candidates: list[str] = []
    data = (attrs.get("GraphDriver") or {}).get("Data") or {}
    if data.get("UpperDir"):
        candidates.append(data["UpperDir"])
    elif data.get("Dir"):  # vfs: the whole root filesystem is the container's own copy
        candidates.append(data["Dir"])
    if attrs.get("HostsPath"):
        candidates.append(str(Path(attrs["HostsPath"]).parent))
    for mount in attrs.get("Mounts") or []:
        if mount.get("Type") == "volume" and mount.get("Source"):
            candidates.append(mount["Source"])
    return tuple(path for path in candidates if Path(path).is_dir())


def measure(paths: list[str], *, inodes: bool = False) -> dict[str, int]:
    """Bytes allocated (or, with `inodes`, files and directories) under each path, by one `du`; a path
    that vanished meanwhile is left out."""
    if not paths:
        return {}
    done = subprocess.run(
        ["du", "-s", "-x", "--inodes" if inodes else "-B1", "--", *paths],
        capture_output=True,
        text=True,
        timeout=DU_TIMEOUT,
        errors="replace",
    )
    sizes: dict[str, int] = {}
    for line in done.stdout.splitlines():
        size, _, path = line.partition("\t")
        if size.isdigit():
            sizes[path] = int(size)
    return sizes


class DiskWatchdog:
    """Watches every sandbox of one backend; started by the first sandbox that needs it."""

    def __init__(
        self,
        client: Any,
        *,
        interval: float = DEFAULT_INTERVAL,
        host_reserve: int | None = None,
        data_root: str | None = None,
    ) -> None:
        self.client = client
        self.interval = interval
        self.host_reserve = host_reserve
        self.data_root = data_root if data_root and Path(data_root).is_dir() else None
        self._watched: dict[str, Watched] = {}
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.last_tick_s = 0.0  # how long the last measurement took
        self.last_error: Exception | None = None  # of the last round that failed (the next one retries)

    def watch(self, watched: Watched) -> None:
        with self._guard:
            self._watched[watched.container.id] = watched
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="disk-watchdog", daemon=True)
                self._thread.start()

    def unwatch(self, container_id: str) -> None:
        with self._guard:
            self._watched.pop(container_id, None)

    def _loop(self) -> None:
        while True:
            with self._guard:
                if not self._watched:
                    self._thread = None  # the next watch() starts a fresh thread
                    return
            started = time.monotonic()
            try:
                self.check()
            except ROUND_ERRORS as exc:  # the thread must outlive one bad round, or nothing is enforced
                self.last_error = exc
            self.last_tick_s = time.monotonic() - started
            self._wake.wait(max(self.interval - self.last_tick_s, 0.05))

    def check(self) -> None:
        """One round: measure every watched sandbox, stop those over budget, guard the host's disk."""
        with self._guard:
            watched = [w for w in self._watched.values() if w.violation is None]
        self.ticks += 1
        if not watched:
            return
        local = [w for w in watched if w.paths]
        sizes = measure([p for w in local for p in w.paths])
        count_files = self.ticks % FILES_EVERY == 1  # the first round counts too
        counted = [w for w in local if w.files_limit is not None] if count_files else []
        inodes = measure([p for w in counted for p in w.paths], inodes=True)
        for w in watched:
            if w.paths:
                w.used = sum(sizes.get(p, 0) for p in w.paths)
            else:
                w.used = self._engine_size(w)
            if w in counted:
                w.files = sum(inodes.get(p, 0) for p in w.paths)
                if w.files > w.files_limit:
                    self._stop(
                        w,
                        SandboxResourceError(
                            f"sandbox {w.container.short_id} created {w.files:,} files, over its budget "
                            f"of {w.files_limit:,} (DockerConfig.files); it was stopped and removed",
                            budget="files",
                            limit=w.files_limit,
                            used=w.files,
                        ),
                    )
                    continue
            if w.limit is not None and w.used > w.limit:
                self._stop(
                    w,
                    SandboxResourceError(
                        f"sandbox {w.container.short_id} wrote {human(w.used)}, over its disk budget of "
                        f"{human(w.limit)} (SandboxSpec.disk / DockerConfig.disk); it was stopped and "
                        "removed",
                        budget="disk",
                        limit=w.limit,
                        used=w.used,
                    ),
                )
        self._guard_host([w for w in watched if w.violation is None])

    def _guard_host(self, watched: list[Watched]) -> None:
        if self.host_reserve is None or self.data_root is None or not watched:
            return
        free = shutil.disk_usage(self.data_root).free
        if free >= self.host_reserve:
            return
        biggest = max(watched, key=lambda w: w.used)
        self._stop(
            biggest,
            SandboxResourceError(
                f"the host's disk under {self.data_root} has {human(free)} free, under the reserve of "
                f"{human(self.host_reserve)} (DockerConfig.host_reserve); sandbox "
                f"{biggest.container.short_id}, the biggest writer ({human(biggest.used)}), was stopped "
                "and removed",
                budget="host_reserve",
                limit=self.host_reserve,
                used=biggest.used,
            ),
        )

    def _engine_size(self, w: Watched) -> int:
        """The writable layer's size from the engine: for remote engines, where no path is visible."""
        try:
            return int(self.client.api.inspect_container(w.container.id, size=True).get("SizeRw") or 0)
        except ROUND_ERRORS:
            return w.used

    def _stop(self, w: Watched, error: SandboxResourceError) -> None:
        w.violation = error  # first, so that the sandbox reports this and not a crash
        for action in (w.container.kill, lambda: w.container.remove(force=True)):
            try:
                action()
            except ROUND_ERRORS:
                continue  # gone, already stopping, or the engine is away: close() finishes the job
        w.removed.set()
        self.unwatch(w.container.id)
