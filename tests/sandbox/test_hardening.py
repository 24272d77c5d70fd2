"""Containment against a real engine: credentials, capabilities, read-only mounts, the disk budget, the
host-disk guards, and the reaping of a dead process's containers at the next start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from patchfleet.errors import ConfigError, ImageBuildError, SandboxResourceError
from patchfleet.sandbox.base import Network, SandboxSpec
from patchfleet.sandbox.limits import is_secret, parse_size, scrub_env

pytestmark = pytest.mark.docker

HOST_SECRETS = {
    "OPENAI_API_KEY": "sk-test-openai",
    "ANTHROPIC_API_KEY": "sk-ant-test",
    "GITHUB_TOKEN": "ghp_test",
    "GH_TOKEN": "gho_test",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_ACCESS_KEY_ID": "AKIATEST",
    "GOOGLE_APPLICATION_CREDENTIALS": "/home/me/gcp.json",
    "AZURE_CLIENT_SECRET": "azure-secret",
    "HF_TOKEN": "hf_test",
}


def test_secret_names_and_sizes():
    for name in HOST_SECRETS:
        assert is_secret(name), name
    for name in ("PATH", "HOME", "PIP_CERT", "SSL_CERT_FILE", "HTTPS_PROXY", "PYTHONPATH", "AWS_CA_BUNDLE"):
        assert not is_secret(name), name
    kept, withheld = scrub_env({"PATH": "/bin", "OPENAI_API_KEY": "x"})
    assert kept == {"PATH": "/bin"} and withheld == ["OPENAI_API_KEY"]
    assert parse_size("4g") == 4 * 2**30 and parse_size("512m") == 512 * 2**20 and parse_size("1.5k") == 1536
    assert parse_size("0") is None and parse_size(None) is None and parse_size(2048) == 2048


def test_only_drivers_with_a_size_option_are_trusted_with_the_disk_budget():
    from patchfleet.sandbox.docker import driver_enforces_size

    xfs = {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "xfs"]]}
    ext4 = {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}
    assert driver_enforces_size(xfs) and driver_enforces_size({"Driver": "btrfs"})
    assert not driver_enforces_size(ext4) and not driver_enforces_size({"Driver": "fuse-overlayfs"})
    assert not driver_enforces_size({"Driver": "vfs"})


def test_host_credentials_never_reach_the_sandbox_even_when_passed(sandbox_factory, base_image, monkeypatch):
    for name, value in HOST_SECRETS.items():
        monkeypatch.setenv(name, value)
    sandbox = sandbox_factory(base_image, workdir="/tmp", env=dict(os.environ))  # a careless caller
    assert set(HOST_SECRETS) <= set(sandbox.withheld_env)
    inside = sandbox.exec("env", env=dict(os.environ)).output  # and again per command
    for name, value in HOST_SECRETS.items():
        assert name not in inside and value not in inside
    assert "PATH=" in inside


def test_capabilities_are_minimal_and_privileges_cannot_be_gained(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image, workdir="/tmp")
    status = sandbox.exec("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status").output
    assert "NoNewPrivs:\t1" in status
    assert int(status.split("CapEff:\t")[1].split()[0], 16) == 0xFB  # CHOWN..KILL, SETGID, SETUID
    denied = {
        "raw socket": "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)'",
        "mknod": "mknod /tmp/sda b 8 0",
        "mount": "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m",
        "chroot": "chroot / true",
        "sysctl": "echo 1 > /proc/sys/kernel/sysrq",
        "sysfs": "echo 1 > /sys/kernel/profiling",
    }
    for what, command in denied.items():
        assert sandbox.exec(command).exit_code != 0, what
    # what a test run needs still works as root: chown, writing files it does not own, git
    assert sandbox.exec(
        "touch f && chown nobody f && chmod 000 f && echo x > f && git init -q r && cd r && "
        "git -c user.name=a -c user.email=a@b commit -q --allow-empty -m x"
    ).ok


def test_unprivileged_user_cannot_escalate_through_a_setuid_binary(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image, workdir="/tmp", user="nobody")
    assert sandbox.exec("id -u").output.strip() == "65534"
    # root (outside the agent's reach) plants a setuid-root interpreter; no-new-privileges defuses it
    planted = sandbox.container.exec_run(
        ["sh", "-c", "cp /usr/bin/python3 /usr/local/bin/suid-py && chmod 4755 /usr/local/bin/suid-py"],
        user="root",
    )
    assert planted.exit_code == 0
    euid = sandbox.exec("/usr/local/bin/suid-py -c 'import os; print(os.geteuid())'")
    assert euid.ok and euid.output.strip() == "65534"
    assert sandbox.exec("echo x >> /etc/passwd").exit_code != 0
    assert sandbox.exec("echo mine > /tmp/mine && cat /tmp/mine").output == "mine\n"


def mine(client, role: str) -> list:
    """This process's containers of one role (other runs share the engine)."""
    labels = [f"patchfleet.owner-pid={os.getpid()}", f"patchfleet.role={role}"]
    return client.containers.list(all=True, filters={"label": labels})


def test_host_network_is_refused_unless_allowed(docker_backend, base_image):
    spec = SandboxSpec(image=base_image, labels={"role": "host-net"}, network=Network.HOST)
    with pytest.raises(ConfigError, match="allow_host_network"):
        docker_backend.start(spec)
    assert mine(docker_backend.client, "host-net") == []


def test_every_mount_is_read_only(docker_backend, base_image, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("host data\n")
    mounts = ((str(shared), "/data"),)
    spec = SandboxSpec(image=base_image, labels={"role": "test"}, workdir="/tmp", mounts=mounts)
    with docker_backend.start(spec) as sandbox:
        assert sandbox.read_file("/data/data.txt") == b"host data\n"
        for command in ("echo x >> /data/data.txt", "touch /data/new", "rm /data/data.txt"):
            assert sandbox.exec(command).exit_code != 0, command
    assert (shared / "data.txt").read_text() == "host data\n"
    assert sorted(shared.iterdir()) == [shared / "data.txt"]


def test_disk_fill_over_the_budget_stops_the_command_and_the_sandbox(docker_backend, base_image):
    spec = SandboxSpec(image=base_image, labels={"role": "test"}, workdir="/tmp", disk="64m")
    sandbox = docker_backend.start(spec)
    try:
        # unchecked, the command would write 4 GB and return; the budget stops it within a tick or two
        with pytest.raises(SandboxResourceError) as info:
            sandbox.exec("dd if=/dev/zero of=/tmp/fill bs=1M count=4000; echo survived", timeout=600)
        error = info.value
        assert error.budget == "disk" and error.limit == 64 * 2**20 and error.used > error.limit
        assert "disk budget of 64.0 MiB" in str(error)
        with pytest.raises(SandboxResourceError):  # every later call says why, not "crashed"
            sandbox.exec("true")
        assert not docker_backend.client.containers.list(all=True, filters={"id": sandbox.id})
    finally:
        sandbox.close()


def test_an_inode_bomb_over_the_file_budget_is_stopped(base_image):
    from patchfleet.sandbox.docker import DockerBackend

    backend = DockerBackend(files=3000, watchdog_interval=0.2, reap_leaked=False)
    sandbox = backend.start(SandboxSpec(image=base_image, labels={"role": "test"}, workdir="/tmp"))
    try:
        with pytest.raises(SandboxResourceError) as info:  # unchecked, 200,000 empty files and a result
            sandbox.exec("mkdir -p /tmp/many && cd /tmp/many && seq 200000 | xargs touch", timeout=600)
        assert info.value.budget == "files" and info.value.used > 3000
        assert "over its budget of 3,000" in str(info.value)
    finally:
        sandbox.close()


def test_tmpfs_tmp_runs_out_of_space_and_the_sandbox_survives(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image, workdir="/", tmp_size="32m")
    result = sandbox.exec("dd if=/dev/zero of=/tmp/fill bs=1M count=100")
    assert result.exit_code != 0 and "No space left on device" in result.output
    assert sandbox.exec("rm /tmp/fill && echo alive").output == "alive\n"


def test_host_disk_reserve_stops_the_biggest_writer(base_image):
    from patchfleet.sandbox.docker import DockerBackend

    backend = DockerBackend(host_reserve="1g", watchdog_interval=0.2, reap_leaked=False)
    sandbox = backend.start(SandboxSpec(image=base_image, labels={"role": "test"}, workdir="/tmp"))
    try:
        backend.watchdog.host_reserve = shutil.disk_usage("/").free + 2**40  # the disk is now "full"
        deadline = time.monotonic() + 20
        while sandbox.stopped_by is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sandbox.stopped_by is not None and sandbox.stopped_by.budget == "host_reserve"
        with pytest.raises(SandboxResourceError, match="under the reserve"):
            sandbox.exec("true")
    finally:
        sandbox.close()


def test_a_build_on_a_nearly_full_disk_fails_before_it_starts(docker_backend, base_image):
    from patchfleet.sandbox.images import EnvLayer, ImageBuilder, ImageSpec

    spec = ImageSpec(env=EnvLayer(key="never-built", steps=("echo never",)))
    huge = str(shutil.disk_usage("/").free + 2**40)
    builds_before = {c.id for c in mine(docker_backend.client, "build")}
    with pytest.raises(ImageBuildError, match="free, under the"):
        ImageBuilder(docker_backend, min_free_disk=huge).ensure(spec)
    assert {c.id for c in mine(docker_backend.client, "build")} == builds_before  # nothing started
    assert not ImageBuilder(docker_backend).exists(spec.tag())


def test_the_next_backend_reaps_the_containers_of_a_dead_process(base_image, tmp_path):
    from patchfleet.sandbox.docker import DockerBackend

    script = tmp_path / "leak.py"
    script.write_text(
        textwrap.dedent(f"""
        import os
        from patchfleet.sandbox.base import SandboxSpec
        from patchfleet.sandbox.docker import DockerBackend
        sandbox = DockerBackend(reap_leaked=False).start(
            SandboxSpec(image={base_image!r}, labels={{"role": "test", "run": "reaptest"}}))
        print(sandbox.id, flush=True)
        os._exit(0)  # dies without closing anything, as a killed run would
    """)
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    leaked = done.stdout.strip()
    assert leaked, done.stderr
    backend = DockerBackend()
    with backend.start(SandboxSpec(image=base_image, labels={"role": "test"})) as sandbox:
        assert leaked in backend.reaped
        assert sandbox.exec("echo fine").ok
    assert not backend.client.containers.list(all=True, filters={"id": leaked})
