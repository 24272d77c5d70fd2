"""A second, private Docker engine that a test may restart, kill or break without touching the shared one.

Its own socket, data root, exec root, managed containerd and pid file, and its own bridge interface on
a test-only subnet with no iptables rules, removed again by `close()`. Never `--bridge none`: with it,
dockerd deletes the host's `docker0` at start (libnetwork's removeDefaultBridgeInterface), breaking the
bridge network of the shared engine. Needs root, `dockerd` and `ip`; see `available()`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Self

SLIM_DROP = tuple(
    f"{path}/"
    for path in (
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "usr/share/i18n",
        "usr/share/perl",
        "usr/lib/x86_64-linux-gnu/perl",
        "usr/lib/x86_64-linux-gnu/gconv",
        "var/cache",
        "var/lib/apt",
    )
)


class ScratchEngine:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pf-engine-", dir="/tmp"))  # short: socket paths are capped
        self.socket = self.root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None
        self.bridge = f"pfs{secrets.token_hex(4)}"  # interface names are capped at 15 characters
        self._bridge_up = False
        # overlay2 where the kernel has it (a container starts in under a second), else vfs (copies)
        driver = "overlay2" if "overlay" in Path("/proc/filesystems").read_text() else "vfs"
        (self.root / "daemon.json").write_text(
            json.dumps({"data-root": str(self.root / "data"), "storage-driver": driver})
        )

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("dockerd", "docker", "ip"))

    def _make_bridge(self) -> None:
        if self._bridge_up:
            return
        # 198.18.0.0/15 is reserved for benchmarking: no real network lives there
        subnet = f"198.18.{secrets.randbelow(250) + 1}.1/24"
        for args in (
            ["link", "add", "name", self.bridge, "type", "bridge"],
            ["addr", "add", subnet, "dev", self.bridge],
            ["link", "set", self.bridge, "up"],
        ):
            subprocess.run(["ip", *args], check=True, capture_output=True)
        self._bridge_up = True

    def start(self, timeout: float = 60.0) -> None:
        self._make_bridge()
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - lives as long as the daemon
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--config-file",
                str(self.root / "daemon.json"),
                "--host",
                self.url,
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "docker.pid"),
                "--bridge",
                self.bridge,
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.docker("info", check=False).returncode == 0:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"scratch dockerd did not come up: {self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, as `systemctl restart docker` does: the engine stops its containers, then exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def docker(self, *args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "-H", self.url, *args], capture_output=True, check=check, timeout=120, **kwargs
        )

    def copy_image(self, tag: str, changes: tuple[str, ...] = ()) -> None:
        """Copy an image's file system from the shared engine, without documentation, locales and perl
        (half its size, so half the copy time); on the shared engine only a container is
        created, exported and removed."""
        container = subprocess.run(["docker", "create", tag], capture_output=True, text=True, check=True)
        cid = container.stdout.strip()
        try:
            export = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
            flags = [arg for change in changes for arg in ("--change", change)]
            target = subprocess.Popen(
                ["docker", "-H", self.url, "import", *flags, "-", tag],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
            )
            assert export.stdout is not None and target.stdin is not None
            with (
                tarfile.open(fileobj=export.stdout, mode="r|") as source,
                tarfile.open(fileobj=target.stdin, mode="w|") as sink,
            ):
                for member in source:
                    if not member.name.startswith(SLIM_DROP):
                        sink.addfile(member, source.extractfile(member) if member.isfile() else None)
            target.stdin.close()
            if target.wait(120) != 0 or export.wait(120) != 0:
                raise RuntimeError(f"copying {tag} into the scratch engine failed")
        finally:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)

    def log_tail(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.docker("rm", "-f", *self.docker("ps", "-aq").stdout.decode().split(), check=False)
        self.stop()
        if self._bridge_up:
            subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)
            self._bridge_up = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
