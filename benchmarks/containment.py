"""Containment: what a sandbox stops, how fast, whether the sandbox (or run) survives, and what is left
behind. One row per case: fork bomb, memory hog, output flood, disk fill (writable layer, tmpfs /tmp, the
host's reserve), egress on each network mode, privilege escalation, writes to each read-only mount,
host credentials, and the faults (container killed, exec server killed, image deleted in use, a build on
a nearly full disk, a dead process's containers, the engine restarted on a private second engine).

    python benchmarks/containment.py --out benchmarks/results/containment/containment.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from docker.errors import ImageNotFound

from patchfleet.agent.loop import error_kind
from patchfleet.errors import (
    ConfigError,
    ImageBuildError,
    PatchfleetError,
    SandboxCrashed,
    SandboxResourceError,
    SandboxStartError,
)
from patchfleet.sandbox.base import Network, SandboxSpec
from patchfleet.sandbox.docker import DockerBackend, DockerSandbox
from patchfleet.sandbox.engine import connect
from patchfleet.sandbox.images import EnvLayer, ImageBuilder, ImageSpec
from patchfleet.sandbox.trust import CONTAINER_CA_PATH, HostTrust
from patchfleet.sandbox.watchdog import FILES_EVERY, measure

SECRETS = {
    "OPENAI_API_KEY": "sk-bench",
    "ANTHROPIC_API_KEY": "sk-ant-bench",
    "GITHUB_TOKEN": "ghp_bench",
    "GH_TOKEN": "gho_bench",
    "AWS_SECRET_ACCESS_KEY": "aws-bench",
    "GOOGLE_APPLICATION_CREDENTIALS": "/bench/gcp.json",
    "AZURE_CLIENT_SECRET": "azure-bench",
}
FORK_TIMEOUT = 8.0


@dataclass
class Row:
    case: str
    setting: str  # the limit or mode in force
    happened: str  # what the attempt met
    contained: bool  # the attempt stayed inside its limit or was refused
    containment_s: float | None  # from the attempt's start until it was stopped or refused
    survived: bool | None  # the sandbox (or, for faults, the run) is still usable afterwards
    error: str | None = None  # the patchfleet error raised, with its kind
    leaked: dict[str, int] = field(default_factory=dict)  # containers, images, bytes left on the host


class Bench:
    """Starts labelled sandboxes and checks, after each case, that none of them and none of their
    layers are left on the host."""

    def __init__(self, backend: DockerBackend, image: str) -> None:
        self.backend = backend
        self.client = backend.client
        self.image = image
        self.run = f"containment-{uuid.uuid4().hex[:8]}"

    def spec(self, **fields: Any) -> SandboxSpec:
        fields.setdefault("workdir", "/tmp")
        return SandboxSpec(image=self.image, labels={"role": "bench", "run": self.run}, **fields)

    def start(self, backend: DockerBackend | None = None, **fields: Any) -> DockerSandbox:
        return (backend or self.backend).start(self.spec(**fields))

    def leaks(self, *sandboxes: DockerSandbox, images: tuple[str, ...] = ()) -> dict[str, int]:
        """Close `sandboxes`, then count what is left: containers of this run, the given images, and
        bytes still in the sandboxes' host directories (their writable layers)."""
        paths = [p for s in sandboxes if s.watched is not None for p in s.watched.paths]
        for sandbox in sandboxes:
            with contextlib.suppress(PatchfleetError):  # counted below as a leaked container
                sandbox.close()
        containers = self.client.containers.list(all=True, filters={"label": f"patchfleet.run={self.run}"})
        left_images = 0
        for image in images:
            try:
                self.client.images.get(image)
                left_images += 1
            except ImageNotFound:
                pass
        existing = [p for p in paths if Path(p).exists()]
        return {
            "containers": len(containers),
            "images": left_images,
            "host_bytes": sum(measure(existing).values()) if existing else 0,
        }


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__} ({error_kind(exc)}): {str(exc)[:200]}"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    value = fn()
    return value, round(time.monotonic() - started, 2)


# -- resource cases ------------------------------------------------------------------------------


def fork_bomb(b: Bench) -> Row:
    sandbox = b.start()  # the default pids limit (1024)
    bomb = "bomb() { bomb | bomb & }; bomb; sleep 60"  # outlives the timeout: its tree is killed
    result, took = timed(lambda: sandbox.exec(bomb, timeout=FORK_TIMEOUT))
    alive = sandbox.exec("echo alive").output == "alive\n"
    # cgroup v1 and v2 both count the forks the pids limit refused as "max N" in pids.events
    events = sandbox.exec("cat /sys/fs/cgroup/pids/pids.events /sys/fs/cgroup/pids.events 2>/dev/null").output
    refused = next((line.split()[1] for line in events.splitlines() if line.startswith("max ")), "?")
    left = sandbox.exec("ps -e --no-headers | wc -l").output.strip()
    return Row(
        "fork bomb",
        f"pids_limit={sandbox.spec.pids_limit}, command timeout {FORK_TIMEOUT:g} s",
        f"{refused} forks refused at the limit; exit {result.exit_code} (timed out: {result.timed_out}), "
        f"tree killed {max(took - FORK_TIMEOUT, 0):.1f} s after the timeout; {left} processes left "
        "(init, sleep infinity, the exec server, the probe's shell, ps, wc)",
        contained=alive,
        containment_s=took,
        survived=alive,
        leaked=b.leaks(sandbox),
    )


def memory_hog(b: Bench) -> Row:
    sandbox = b.start(memory="256m")
    command = "python3 -c 'x = bytearray(8 * 1024**3); print(len(x))'"
    result, took = timed(lambda: sandbox.exec(command, timeout=60))
    alive = sandbox.exec("echo alive").output == "alive\n"
    return Row(
        "memory hog (8 GiB)",
        "memory=256m, no swap",
        f"exit {result.exit_code}, oom_killed={result.oom_killed}",
        contained=result.oom_killed,
        containment_s=took,
        survived=alive,
        leaked=b.leaks(sandbox),
    )


def output_flood(b: Bench) -> Row:
    sandbox = b.start()
    result, took = timed(lambda: sandbox.exec("head -c 2000000000 /dev/zero | tr '\\0' x", timeout=300))
    kept = len(result.output.encode())
    return Row(
        "output flood (2 GB)",
        "output_limit=256 KiB",
        f"{kept} bytes kept, {result.truncated_bytes} dropped from the middle",
        contained=kept < 300 * 1024,
        containment_s=took,
        survived=sandbox.exec("echo alive").ok,
        leaked=b.leaks(sandbox),
    )


def disk_fill(b: Bench, budget: str) -> Row:
    sandbox = b.start(disk=budget)
    started = time.monotonic()
    try:
        sandbox.exec("dd if=/dev/zero of=/tmp/fill bs=1M count=100000", timeout=600)
        happened, error, contained = "not stopped", None, False
    except SandboxResourceError as exc:
        took = time.monotonic() - started
        rate = exc.used / took
        happened = (
            f"stopped at {exc.used / 2**20:.0f} MiB written ({(exc.used - exc.limit) / 2**20:.0f} MiB over, "
            f"about {(exc.used - exc.limit) / rate:.1f} s of writing at {rate / 2**20:.0f} MiB/s); "
            "container killed and removed"
        )
        error, contained = describe(exc), True
    took = round(time.monotonic() - started, 2)
    leaked = b.leaks(sandbox)
    return Row(
        "disk fill (writable layer, /tmp on it)",
        f"disk={budget}, watchdog every {b.backend.watchdog.interval:g} s (driver "
        f"{'quota' if b.backend._driver_quota else 'without size option'})",
        happened,
        contained=contained,
        containment_s=took,
        survived=False,
        error=error,
        leaked=leaked,
    )


def inode_bomb(b: Bench, files: int = 10_000) -> Row:
    backend = DockerBackend(b.client, trust=b.backend.trust, files=files, reap_leaked=False)
    sandbox = b.start(backend)
    started = time.monotonic()
    try:
        sandbox.exec("mkdir -p /tmp/many && cd /tmp/many && seq 1000000 | xargs touch", timeout=600)
        happened, error, contained = "not stopped", None, False
    except SandboxResourceError as exc:
        happened = f"stopped at {exc.used:,} files ({exc.used - exc.limit:,} over); container removed"
        error, contained = describe(exc), True
    took = round(time.monotonic() - started, 2)
    return Row(
        "inode bomb (1,000,000 empty files)",
        f"files={files:,} (default 1,000,000)",
        happened,
        contained=contained,
        containment_s=took,
        survived=False,
        error=error,
        leaked=b.leaks(sandbox),
    )


def tmpfs_fill(b: Bench) -> Row:
    sandbox = b.start(workdir="/", tmp_size="256m")
    result, took = timed(lambda: sandbox.exec("dd if=/dev/zero of=/tmp/fill bs=1M count=2000", timeout=120))
    full = "No space left on device" in result.output
    alive = sandbox.exec("rm -f /tmp/fill && echo alive").output == "alive\n"
    return Row(
        "disk fill (tmpfs /tmp)",
        "tmp_size=256m",
        f"exit {result.exit_code}: {'ENOSPC at the tmpfs size' if full else result.output[-120:]}",
        contained=full,
        containment_s=took,
        survived=alive,
        leaked=b.leaks(sandbox),
    )


def host_reserve(b: Bench) -> Row:
    backend = DockerBackend(b.client, trust=b.backend.trust, host_reserve="1g", reap_leaked=False)
    sandbox = b.start(backend)
    backend.watchdog.host_reserve = shutil.disk_usage("/").free + 2**40  # as if the disk were full
    started = time.monotonic()
    while sandbox.stopped_by is None and time.monotonic() - started < 30:
        time.sleep(0.05)
    took = round(time.monotonic() - started, 2)
    error = sandbox.stopped_by
    return Row(
        "host disk under the reserve",
        "host_reserve (free space of Docker's data root)",
        "biggest writer stopped and removed" if error else "not stopped",
        contained=error is not None,
        containment_s=took,
        survived=False,
        error=describe(error) if error else None,
        leaked=b.leaks(sandbox),
    )


# -- network -------------------------------------------------------------------------------------


def egress(b: Bench, network: Network) -> Row:
    """Reach the internet (deb.debian.org:80), a service on the host's loopback, and one the host serves on
    all interfaces, through the sandbox's default gateway (the host, on a bridge)."""
    listener, everywhere = socket.socket(), socket.socket()
    listener.bind(("127.0.0.1", 0))
    everywhere.bind(("0.0.0.0", 0))
    for sock in (listener, everywhere):
        sock.listen(8)
    port, wide_port = listener.getsockname()[1], everywhere.getsockname()[1]
    probe = textwrap.dedent(f"""
        import socket, struct
        gateway = None
        for line in open("/proc/net/route").read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                gateway = socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
        targets = [("internet", ("deb.debian.org", 80)), ("host loopback", ("127.0.0.1", {port}))]
        if gateway and gateway != "0.0.0.0":
            targets.append(("host via the gateway", (gateway, {wide_port})))
        else:
            print("host via the gateway: no route")
        for name, addr in targets:
            try:
                socket.create_connection(addr, timeout=3).close()
                print(name, "reached")
            except OSError as exc:
                print(name, "blocked:", type(exc).__name__)
    """)
    refused = ""
    backend = b.backend
    if network is Network.HOST:
        try:
            b.start(network=network)
        except ConfigError as exc:
            refused = f"refused by default ({describe(exc)[:60]}...); with allow_host_network: "
        backend = DockerBackend(b.client, trust=b.backend.trust, reap_leaked=False, allow_host_network=True)
    sandbox = b.start(backend, network=network)
    try:
        sandbox.write_file("/tmp/probe.py", probe)
        result, took = timed(lambda: sandbox.exec("python3 /tmp/probe.py", timeout=30))
    finally:
        listener.close()
        everywhere.close()
    lines = result.output.strip().replace("\n", "; ")
    loopback = "host loopback reached" in result.output
    internet = "internet reached" in result.output
    expected = {
        Network.NONE: not internet and not loopback,
        Network.BRIDGE: not loopback,
        Network.HOST: bool(refused),
    }
    return Row(
        f"egress, network {network.value}",
        {
            Network.NONE: "no interface but lo (agents, by default)",
            Network.BRIDGE: "NAT to the internet (builds, evaluation)",
            Network.HOST: "the host's network stack (opt-in: allow_host_network)",
        }[network],
        refused + lines,
        contained=expected[network],
        containment_s=took,
        survived=sandbox.exec("echo alive").ok,
        leaked=b.leaks(sandbox),
    )


# -- privileges and mounts ----------------------------------------------------------------------


def privilege_escalation(b: Bench) -> Row:
    sandbox = b.start(user="nobody")
    planted = sandbox.container.exec_run(
        ["sh", "-c", "cp /usr/bin/python3 /usr/local/bin/suid-py && chmod 4755 /usr/local/bin/suid-py"],
        user="root",
    )
    attempts = {
        "setuid-root binary": "/usr/local/bin/suid-py -c 'import os; os.setuid(0)'",
        "su root": "su -c true root </dev/null",
        "write /etc/shadow": "echo x >> /etc/shadow",
    }
    root_box = b.start()
    as_root = {
        "raw socket": "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)'",
        "mknod a disk": "mknod /tmp/sda b 8 0",
        "mount": "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m",
        "chroot": "chroot / true",
        "load a module / sysctl": "echo 1 > /proc/sys/kernel/sysrq",
    }
    started = time.monotonic()
    outcomes = {name: sandbox.exec(cmd).exit_code != 0 for name, cmd in attempts.items()}
    outcomes |= {f"root: {name}": root_box.exec(cmd).exit_code != 0 for name, cmd in as_root.items()}
    took = round(time.monotonic() - started, 2)
    caps = root_box.exec("grep CapEff /proc/self/status").output.split()[-1]
    refused = [name for name, denied in outcomes.items() if denied]
    allowed = [name for name, denied in outcomes.items() if not denied]
    return Row(
        "privilege escalation",
        f"user nobody + root with CapEff {caps}, no-new-privileges",
        f"refused: {', '.join(refused)}" + (f"; ALLOWED: {', '.join(allowed)}" if allowed else ""),
        contained=planted.exit_code == 0 and not allowed,
        containment_s=took,
        survived=sandbox.exec("echo alive").ok and root_box.exec("echo alive").ok,
        leaked=b.leaks(sandbox, root_box),
    )


def credentials(b: Bench) -> Row:
    os.environ.update(SECRETS)
    try:
        sandbox = b.start(env=dict(os.environ))  # a careless caller passes the whole host environment
        listed, took = timed(lambda: sandbox.exec("env", env=dict(os.environ)).output)
    finally:
        for name in SECRETS:
            os.environ.pop(name, None)
    seen = [name for name, value in SECRETS.items() if name in listed or value in listed]
    return Row(
        "host credentials in the environment",
        "LLM keys, GitHub tokens, cloud variables set on the host and passed by the caller",
        f"{len(sandbox.withheld_env)} withheld; visible inside: {seen or 'none'}",
        contained=not seen,
        containment_s=took,
        survived=True,
        leaked=b.leaks(sandbox),
    )


def read_only_mount(b: Bench, target: str, what: str, backend: DockerBackend | None = None, **fields) -> Row:
    sandbox = b.start(backend, **fields)
    result, took = timed(lambda: sandbox.exec(f"echo x >> {target}"))
    return Row(
        f"write to {what}",
        target,
        f"exit {result.exit_code}: {result.output.strip()[-100:]}",
        contained=result.exit_code != 0,
        containment_s=took,
        survived=sandbox.exec("echo alive").ok,
        leaked=b.leaks(sandbox),
    )


def read_only_mounts(b: Bench, scratch: Path) -> list[Row]:
    bundle = scratch / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nBENCH\n-----END CERTIFICATE-----\n")
    shared = scratch / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("host data\n")
    trust = HostTrust(ca_bundle=bundle)
    with_ca = DockerBackend(b.client, trust=trust, reap_leaked=False)
    rows = [
        read_only_mount(b, CONTAINER_CA_PATH, "the host CA bundle mount", with_ca),
        read_only_mount(b, "/data/data.txt", "a caller's mount", mounts=((str(shared), "/data"),)),
        read_only_mount(b, "/sys/kernel/profiling", "/sys"),
        read_only_mount(b, "/proc/sys/vm/drop_caches", "/proc/sys"),
    ]
    untouched = bundle.read_text().endswith("BENCH\n-----END CERTIFICATE-----\n") and (
        shared / "data.txt"
    ).read_text() == ("host data\n")
    for row in rows[:2]:
        row.contained = row.contained and untouched
    return rows


# -- faults --------------------------------------------------------------------------------------


def container_killed(b: Bench) -> Row:
    sandbox = b.start()
    threading.Timer(1.0, lambda: b.client.containers.get(sandbox.id).kill()).start()
    started = time.monotonic()
    try:
        sandbox.exec("sleep 60", timeout=120)
        happened, error, contained = "not noticed", None, False
    except SandboxCrashed as exc:
        happened, error, contained = "the command in flight raised SandboxCrashed", describe(exc), True
    took = round(time.monotonic() - started - 1.0, 2)
    return Row(
        "fault: container killed from outside",
        "docker kill during a command",
        happened,
        contained=contained,
        containment_s=took,
        survived=False,
        error=error,
        leaked=b.leaks(sandbox),
    )


def exec_server_killed(b: Bench) -> Row:
    sandbox = b.start()
    pid = sandbox._server_pid
    threading.Timer(1.0, lambda: sandbox.container.exec_run(["kill", "-9", str(pid)], user="root")).start()
    started = time.monotonic()
    result = sandbox.exec("sleep 30", timeout=60)
    took = round(time.monotonic() - started - 1.0, 2)
    back = sandbox.exec("echo back").output == "back\n"
    return Row(
        "fault: exec server killed",
        "kill -9 of the in-container server during a command",
        f"the command reported exit {result.exit_code} ({result.output[:60]}...); a new server answered",
        contained=result.exit_code == 255 and back,
        containment_s=took,
        survived=back,
        leaked=b.leaks(sandbox),
    )


def image_deleted(b: Bench) -> Row:
    repository, tag = "patchfleet-bench/doomed", uuid.uuid4().hex[:12]
    name = f"{repository}:{tag}"
    maker = b.start(workdir="/")
    maker.exec("echo doomed > /doomed")
    image_id = maker.container.commit(repository=repository, tag=tag).id
    b.leaks(maker)
    sandbox = b.backend.start(SandboxSpec(image=name, labels={"role": "bench", "run": b.run}, workdir="/"))
    started = time.monotonic()
    b.client.images.remove(name, force=True)
    running = sandbox.exec("cat /doomed").output == "doomed\n"
    try:
        b.backend.start(SandboxSpec(image=name, labels={"role": "bench", "run": b.run}))
        error = None
    except SandboxStartError as exc:
        error = describe(exc)
    took = round(time.monotonic() - started, 2)
    return Row(
        "fault: image deleted while in use",
        "docker rmi -f of a running sandbox's image",
        f"the running sandbox {'kept working' if running else 'broke'}; a new start raised SandboxStartError "
        "at once (no registry pull); the untagged layers were removed at close",
        contained=running and error is not None,
        containment_s=took,
        survived=running,
        error=error,
        leaked=b.leaks(sandbox, images=(image_id,)),
    )


def build_on_full_disk(b: Bench) -> Row:
    spec = ImageSpec(env=EnvLayer(key=f"bench-never-{uuid.uuid4().hex[:6]}", steps=("echo never",)))
    before = {c.id for c in b.client.containers.list(all=True)}
    builder = ImageBuilder(b.backend, min_free_disk=str(shutil.disk_usage("/").free + 2**40))
    started = time.monotonic()
    try:
        builder.ensure(spec)
        error = None
    except ImageBuildError as exc:
        error = describe(exc)
    took = round(time.monotonic() - started, 2)
    new = {c.id for c in b.client.containers.list(all=True)} - before
    return Row(
        "fault: host disk nearly full before a build",
        "min_free_disk above the free space",
        "ImageBuildError before any container was started" if error and not new else "build started",
        contained=error is not None and not new,
        containment_s=took,
        survived=True,
        error=error,
        leaked={"containers": len(new), "images": int(builder.exists(spec.tag())), "host_bytes": 0},
    )


def dead_owner(b: Bench) -> Row:
    script = textwrap.dedent(f"""
        import os
        from patchfleet.sandbox.base import SandboxSpec
        from patchfleet.sandbox.docker import DockerBackend
        box = DockerBackend(reap_leaked=False).start(
            SandboxSpec(image={b.image!r}, labels={{"role": "bench", "run": {b.run!r}}}))
        print(box.id, flush=True)
        os._exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    leaked_id = done.stdout.strip()
    started = time.monotonic()
    backend = DockerBackend(b.client, trust=b.backend.trust)  # the next command that starts sandboxes
    sandbox = b.start(backend)
    took = round(time.monotonic() - started, 2)
    reaped = leaked_id in backend.reaped
    return Row(
        "leak: containers of a process that died",
        "reaped before the next backend's first start",
        f"{len(backend.reaped)} leaked container(s) removed, the dead process's among them: {reaped}",
        contained=reaped,
        containment_s=took,
        survived=True,
        leaked=b.leaks(sandbox),
    )


def engine_restart(b: Bench) -> Row:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from fakes.scratch_engine import ScratchEngine  # a private engine: the shared one is never restarted

    if not ScratchEngine.available():
        case = "fault: engine restarted mid-command"
        return Row(case, "", "not run: needs root, dockerd and ip", False, None, None)
    with ScratchEngine() as engine:
        engine.copy_image(b.image, changes=("ENV LANG=C.UTF-8",))
        backend = DockerBackend(connect(engine.url), reap_leaked=False)
        spec = SandboxSpec(image=b.image, labels={"role": "bench"}, workdir="/tmp")
        sandbox = backend.start(spec)
        threading.Timer(1.0, engine.restart).start()
        started = time.monotonic()
        try:
            sandbox.exec("sleep 60", timeout=120)
            error = None
        except SandboxCrashed as exc:
            error = describe(exc)
        took = round(time.monotonic() - started - 1.0, 2)
        sandbox.close()
        left = len(engine.docker("ps", "-aq").stdout.split())
        with backend.start(spec) as again:
            back = again.exec("echo back").ok
    return Row(
        "fault: engine restarted mid-command",
        "SIGTERM to a private second dockerd, then started again",
        "the command in flight raised SandboxCrashed; close() waited for the engine and removed the "
        f"stopped container; a new sandbox on the same backend {'worked' if back else 'failed'}",
        contained=error is not None,
        containment_s=took,
        survived=back,
        error=error,
        leaked={"containers": left, "images": 0, "host_bytes": 0},
    )


def watchdog_cost(b: Bench, sandboxes: int = 16, rounds: int = 20) -> dict[str, Any]:
    """What one watchdog round costs with many sandboxes, one of them holding 20,000 small files."""
    boxes = [b.start() for _ in range(sandboxes)]
    try:
        boxes[0].exec("mkdir -p /tmp/many && cd /tmp/many && seq 20000 | xargs touch", timeout=300)
        bytes_only: list[float] = []
        with_files: list[float] = []  # every FILES_EVERY-th round also counts files (a second du)
        for _ in range(rounds):
            started = time.perf_counter()
            b.backend.watchdog.check()
            took = (time.perf_counter() - started) * 1000
            counted = b.backend.watchdog.ticks % FILES_EVERY == 1
            (with_files if counted else bytes_only).append(took)
    finally:
        leaked = b.leaks(*boxes)

    def p50(samples: list[float]) -> float | None:
        return round(sorted(samples)[len(samples) // 2], 1) if samples else None

    return {
        "sandboxes": sandboxes,
        "files_in_one": 20000,
        "round_ms_p50": p50(bytes_only),
        "round_with_file_count_ms_p50": p50(with_files),
        "rounds": rounds,
        "interval_s": b.backend.watchdog.interval,
        "files_every_rounds": FILES_EVERY,
        "leaked": leaked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--disk", default="1g", help="disk budget of the disk-fill case")
    args = parser.parse_args()

    load_before = os.getloadavg()
    backend = DockerBackend(trust=HostTrust.from_env())
    image = ImageBuilder(backend).ensure(ImageSpec())
    b = Bench(backend, image)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        cases: list[Callable[[], Row | list[Row]]] = [
            lambda: fork_bomb(b),
            lambda: memory_hog(b),
            lambda: output_flood(b),
            lambda: disk_fill(b, args.disk),
            lambda: inode_bomb(b),
            lambda: tmpfs_fill(b),
            lambda: host_reserve(b),
            *[lambda n=n: egress(b, n) for n in Network],
            lambda: privilege_escalation(b),
            lambda: credentials(b),
            lambda: read_only_mounts(b, Path(tmp)),
            lambda: container_killed(b),
            lambda: exec_server_killed(b),
            lambda: image_deleted(b),
            lambda: build_on_full_disk(b),
            lambda: dead_owner(b),
            lambda: engine_restart(b),
        ]
        for case in cases:
            produced = case()
            for row in produced if isinstance(produced, list) else [produced]:
                rows.append(row)
                leaked = sum(row.leaked.values())
                print(
                    f"{row.case:<44} {'contained' if row.contained else 'NOT CONTAINED':<14} "
                    f"{row.containment_s if row.containment_s is not None else '-':>7} s  "
                    f"survived={row.survived}  leaked={leaked}",
                    flush=True,
                )
    cost = watchdog_cost(b)
    print(
        f"watchdog round over {cost['sandboxes']} sandboxes: {cost['round_ms_p50']} ms (p50), "
        f"{cost['round_with_file_count_ms_p50']} ms when it also counts files"
    )
    report = {
        "benchmark": "containment",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        # the machine is shared: other runs' load stretches every timing here
        "load_average_1m": {"start": round(load_before[0], 1), "end": round(os.getloadavg()[0], 1)},
        "python": sys.version.split()[0],
        "docker_server": backend.client.version().get("Version"),
        "storage_driver": backend.client.info().get("Driver"),
        "compared": "each attack or fault against the hardened Docker backend's defaults "
        "(cap set, no-new-privileges, pids 1024, memory 4g, disk 4g, network none) unless the row says",
        "rows": [asdict(row) for row in rows],
        "watchdog_cost": cost,
        "all_contained": all(row.contained for row in rows),
        "leaked_total": sum(sum(row.leaked.values()) for row in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
