"""The Docker sandbox against a real engine: commands, limits, files, patches, diff, reset."""

from __future__ import annotations

import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pytest

from patchfleet.errors import DockerUnavailable
from patchfleet.sandbox.base import Network, PatchMethod

pytestmark = pytest.mark.docker


def test_exec_reports_exit_code_interleaved_output_cwd_and_env(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image, workdir="/tmp")
    assert sandbox.fast_path
    result = sandbox.exec("echo out; echo err >&2; echo $FOO; pwd; exit 3", cwd="/etc", env={"FOO": "bar"})
    assert result.exit_code == 3
    assert result.output == "out\nerr\nbar\n/etc\n"
    assert not result.timed_out
    assert sandbox.exec("pwd").output.strip() == "/tmp"
    assert sandbox.exec("cd /nonexistent").exit_code != 0


def test_runaway_command_times_out_kills_the_tree_and_sandbox_stays_usable(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image)
    started = time.monotonic()
    # a daemonised grandchild (setsid, re-parented) must die with the command
    result = sandbox.exec("(setsid sleep 997 &); echo started; sleep 1000", timeout=1)
    assert time.monotonic() - started < 5
    assert result.timed_out and result.exit_code == 124
    assert "started" in result.output
    after = sandbox.exec("ps -eo args | grep -c '^sleep 99[7]' || true")
    assert after.ok and after.output.strip() == "0"


def test_background_process_does_not_block_the_command(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image)
    started = time.monotonic()
    result = sandbox.exec("sleep 30 & echo launched", timeout=20)
    assert result.ok and "launched" in result.output
    assert time.monotonic() - started < 3


def test_huge_output_is_capped_without_memory_blow_up(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image)
    tracemalloc.start()
    result = sandbox.exec(
        "head -c 100000000 /dev/zero | tr '\\0' x; echo; echo THE-END", timeout=120, output_limit=64 * 1024
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.ok
    assert result.truncated_bytes > 99_000_000
    assert len(result.output) < 70 * 1024
    assert result.output.startswith("xxxx") and result.output.rstrip().endswith("THE-END")
    assert "bytes of output omitted" in result.output
    assert peak < 16 * 2**20


def test_binary_files_and_non_utf8_output_round_trip(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image)
    payload = bytes(range(256)) * 1000
    sandbox.write_file("/tmp/deep/dir/blob.bin", payload, mode=0o600)
    assert sandbox.read_file("/tmp/deep/dir/blob.bin") == payload
    assert sandbox.exec("stat -c %a /tmp/deep/dir/blob.bin").output.strip() == "600"
    result = sandbox.exec("printf 'ok \\xff\\xfe\\x80 done'")
    assert result.ok and result.output.startswith("ok ") and result.output.endswith(" done")
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("/does/not/exist")


def test_whitespace_damaged_patch_applies_through_the_fallback(sandbox_factory, repo_image):
    sandbox = sandbox_factory(repo_image)
    # upstream lost trailing whitespace: the hunk's last (blank) context line is gone, so the hunk is
    # shorter than its header says, which only `patch --fuzz` forgives
    damaged = (
        "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n"
        "@@ -1,4 +1,4 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n \n"
    )
    result = sandbox.apply_patch(damaged)
    assert result.applied, result.log
    assert result.method is PatchMethod.PATCH_FUZZ
    assert "return a + b" in sandbox.read_file("calc.py").decode()
    assert sandbox.exec("test ! -e calc.py.orig").ok  # no backup files left behind
    garbage = sandbox.apply_patch(
        "diff --git a/nope.py b/nope.py\n--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-x\n+y\n"
    )
    assert not garbage.applied
    assert "git apply" in garbage.log and "patch --batch" in garbage.log


def test_diff_covers_added_deleted_renamed_and_binary_files_and_round_trips(sandbox_factory, repo_image):
    sandbox = sandbox_factory(repo_image)
    assert sandbox.diff() == ""  # install leftovers (build_artifacts/) are part of the base state
    script = (
        "sed -i 's/a - b/a + b/' calc.py && echo 'new' > added.py && git rm -q test_calc.py && "
        "git mv notes.txt NOTES.md && head -c 600 /dev/urandom > data.bin && printf '\\x00\\x01' >> logo.bin"
    )
    assert sandbox.exec(script).ok
    patch = sandbox.diff()
    for marker in (
        "+    return a + b",
        "new file mode",
        "deleted file mode",
        "rename from notes.txt",
        "rename to NOTES.md",
        "GIT binary patch",
    ):
        assert marker in patch, marker
    assert "build_artifacts" not in patch
    sandbox.reset()
    assert sandbox.diff() == ""
    assert sandbox.exec("test -f build_artifacts/out.txt && test -f test_calc.py && test ! -f added.py").ok
    applied = sandbox.apply_patch(patch)
    assert applied.applied and applied.method is PatchMethod.GIT_APPLY, applied.log
    assert sandbox.diff() == patch


def test_reset_restores_tracked_removes_new_files_and_kills_processes(sandbox_factory, repo_image):
    sandbox = sandbox_factory(repo_image)
    sandbox.exec(
        "echo junk > calc.py; mkdir -p newdir && touch newdir/f; git add -A; "
        "git -c user.name=a -c user.email=a@b commit -qm agent; (sleep 600 &)"
    )
    sandbox.reset()
    assert sandbox.diff() == ""
    assert "return a - b" in sandbox.read_file("calc.py").decode()
    assert sandbox.exec("test ! -e newdir").ok
    assert sandbox.exec("ps -eo args | grep -c '^sleep 60[0]' || true").output.strip() == "0"


def test_fork_bomb_is_contained_by_the_pids_limit(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image, pids_limit=64)
    started = time.monotonic()
    result = sandbox.exec("bomb() { bomb | bomb & }; bomb; sleep 3", timeout=4)
    assert time.monotonic() - started < 20
    assert result.timed_out or result.exit_code != 0 or "Resource temporarily unavailable" in result.output
    assert sandbox.exec("echo alive").output.strip() == "alive"


def test_memory_hog_is_killed_and_reported(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image, memory="128m")
    result = sandbox.exec("python3 -c 'x = bytearray(1024 * 1024 * 1024); print(len(x))'", timeout=60)
    assert result.exit_code == 137
    assert result.oom_killed
    assert sandbox.exec("echo alive").output.strip() == "alive"


def test_network_none_blocks_outbound_traffic(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image, network=Network.NONE)
    probe = (
        "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=3); "
        "print('CONNECTED')\""
    )
    result = sandbox.exec(probe, timeout=20)
    assert result.exit_code != 0 and "CONNECTED" not in result.output
    assert "Network is unreachable" in result.output or "timed out" in result.output
    assert sandbox.exec("ip -o link 2>/dev/null || cat /proc/net/dev").ok


def test_eight_sandboxes_in_parallel(docker_backend, base_image):
    from patchfleet.sandbox.base import SandboxSpec

    def work(i: int) -> str:
        with docker_backend.start(SandboxSpec(image=base_image, labels={"role": "test"})) as sandbox:
            sandbox.write_file("/tmp/me", str(i))
            for _ in range(20):
                assert sandbox.exec("cat /tmp/me").output == str(i)
            return sandbox.exec("hostname").output.strip()

    with ThreadPoolExecutor(8) as pool:
        hostnames = list(pool.map(work, range(8)))
    assert len(set(hostnames)) == 8


def test_command_that_kills_the_exec_server_is_survived(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image)
    result = sandbox.exec("kill -9 $PPID; sleep 1")
    assert result.exit_code == 255 and "exec server" in result.output
    assert sandbox.exec("echo back").output.strip() == "back"


def test_image_without_python_falls_back_to_docker_exec(docker_backend, sandbox_factory, base_image):
    from patchfleet.sandbox.base import SandboxSpec

    stripped = "patchfleet-test/no-python:latest"
    with docker_backend.start(SandboxSpec(image=base_image, workdir="/")) as builder:
        builder.exec("rm -f /usr/bin/python3* /usr/local/bin/python3*")
        builder.container.commit(repository=stripped.split(":")[0], tag="latest")
    try:
        sandbox = sandbox_factory(stripped, workdir="/tmp")
        assert not sandbox.fast_path
        result = sandbox.exec("echo slow; exit 4")
        assert result.exit_code == 4 and result.output == "slow\n"
        sandbox.write_file("/tmp/x.bin", b"\x00\xffabc")
        assert sandbox.read_file("/tmp/x.bin") == b"\x00\xffabc"
        assert sandbox.exec("sleep 100", timeout=1).timed_out
    finally:
        docker_backend.client.images.remove(stripped, force=True)


def test_host_ca_bundle_and_proxy_settings_reach_the_sandbox(tmp_path, base_image):
    from patchfleet.sandbox.base import SandboxSpec
    from patchfleet.sandbox.docker import DockerBackend
    from patchfleet.sandbox.trust import CONTAINER_CA_PATH, HostTrust

    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n")
    trust = HostTrust.from_env({"PATCHFLEET_CA_BUNDLE": str(bundle), "https_proxy": "http://proxy.corp:3128"})
    backend = DockerBackend(trust=trust)
    with backend.start(SandboxSpec(image=base_image, labels={"role": "test"})) as sandbox:
        assert sandbox.read_file(CONTAINER_CA_PATH) == bundle.read_bytes()
        env = sandbox.exec("env").output
        assert f"PIP_CERT={CONTAINER_CA_PATH}" in env and f"SSL_CERT_FILE={CONTAINER_CA_PATH}" in env
        assert "HTTPS_PROXY=http://proxy.corp:3128" in env and "https_proxy=http://proxy.corp:3128" in env
        assert sandbox.exec(f"echo x >> {CONTAINER_CA_PATH}").exit_code != 0  # mounted read-only


def test_stopped_engine_gives_a_clear_error_naming_the_fix(tmp_path):
    from patchfleet.sandbox.engine import connect

    with pytest.raises(DockerUnavailable) as info:
        connect(f"unix://{tmp_path}/no-engine.sock", timeout=5)
    message = str(info.value)
    assert "Cannot reach the Docker engine" in message and "dockerd" in message and "doctor" in message


def test_the_base_image_lists_and_has_its_releases_updates_and_security_pockets(sandbox_factory, base_image):
    """Made by debootstrap (no registry) or pulled, the base lists the pockets the registry images list
    (its build upgraded from them: bullseye's Python is then 3.9.2+deb11u*, with bpo-43882)."""
    sandbox = sandbox_factory(base_image)
    sources = sandbox.exec("cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null").output
    assert "bookworm-updates" in sources and "bookworm-security" in sources, sources
    leftovers = sandbox.exec("find /var/lib/apt/lists /var/cache/apt -type f ! -name lock").output.strip()
    assert not leftovers, leftovers  # the index and package caches of the upgrade are not kept
