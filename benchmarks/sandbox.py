"""Sandbox speed, side by side in one run: cold start vs warm-pool acquire, and a trivial command's round
trip through the docker CLI, the SDK's exec_run and our exec server, against the in-container floor.

    python benchmarks/sandbox.py --out bench-results/sandbox.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from patchfleet.data.sources import LocalCheckout
from patchfleet.sandbox.base import SandboxSpec
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.images import ImageBuilder, ImageSpec, InstanceLayer
from patchfleet.sandbox.pool import SandboxPool
from patchfleet.sandbox.trust import HostTrust

FLOOR_SCRIPT = (
    "import subprocess, time\n"
    "n = 200\n"
    "t = time.perf_counter()\n"
    "for _ in range(n): subprocess.run(['/bin/bash', '-c', 'true'])\n"
    "print((time.perf_counter() - t) / n * 1000)\n"
)


def timed(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1], 2),
        "n": len(ordered),
    }


def sample_repo_image(backend: DockerBackend, workdir: Path) -> str:
    repo = workdir / "repo"
    repo.mkdir()
    for i in range(200):
        (repo / f"module_{i}.py").write_text(f"def f{i}():\n    return {i}\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    builder = ImageBuilder(backend, repo_source=LocalCheckout(path=repo))
    return builder.ensure(ImageSpec(instance=InstanceLayer(key="bench-repo", repo="bench/repo", commit=head)))


def throughput(backend: DockerBackend, image: str, parallel: int, commands: int) -> dict[str, float]:
    spec = SandboxSpec(image=image, labels={"role": "bench"}, cpus=None)
    with ThreadPoolExecutor(parallel) as pool:
        sandboxes = list(pool.map(lambda _: backend.start(spec), range(parallel)))
    try:

        def work(sandbox) -> None:
            for _ in range(commands):
                sandbox.exec("echo hello")

        start = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(work, sandboxes))
        elapsed = time.perf_counter() - start
    finally:
        for sandbox in sandboxes:
            sandbox.close()
    total = parallel * commands
    return {
        "sandboxes": parallel,
        "commands": total,
        "seconds": round(elapsed, 2),
        "commands_per_s": round(total / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=50, help="samples per exec measurement")
    parser.add_argument("--starts", type=int, default=10, help="samples of cold start / warm acquire")
    args = parser.parse_args()

    backend = DockerBackend(trust=HostTrust.from_env())
    base = ImageBuilder(backend).ensure(ImageSpec())
    with tempfile.TemporaryDirectory() as tmp:
        repo_image = sample_repo_image(backend, Path(tmp))
    spec = SandboxSpec(image=repo_image, labels={"role": "bench"})
    results: dict[str, object] = {}

    cold_samples = []
    for _ in range(args.starts):
        start = time.perf_counter()
        sandbox = backend.start(spec)
        cold_samples.append((time.perf_counter() - start) * 1000)
        sandbox.close()
    results["cold_start"] = summary(cold_samples)

    with SandboxPool(backend, spec, size=2) as pool:
        acquire_samples = []
        for _ in range(args.starts):
            while pool._ready.qsize() < 1:
                time.sleep(0.01)
            start = time.perf_counter()
            with pool.acquire():
                acquire_samples.append((time.perf_counter() - start) * 1000)
    results["warm_acquire"] = summary(acquire_samples)

    # no CPU quota here: CFS throttling of a 1-CPU quota adds noise to millisecond samples
    with backend.start(SandboxSpec(image=repo_image, labels={"role": "bench"}, cpus=None)) as sandbox:
        cid = sandbox.id
        cli = timed(lambda: subprocess.run(["docker", "exec", cid, "true"], check=True), args.n)
        sdk = timed(lambda: sandbox.container.exec_run(["/bin/bash", "-c", "true"]), args.n)
        fast = timed(lambda: sandbox.exec("true"), args.n)
        floor = float(sandbox.exec(f'python3 -c "{FLOOR_SCRIPT}"').output.strip().splitlines()[-1])
        sandbox.exec("for i in $(seq 20); do echo x > new_$i.txt; done; echo y >> module_1.py")
        resets = []
        for _ in range(args.starts):
            sandbox.exec("echo dirty > module_2.py; touch stray.txt")
            start = time.perf_counter()
            sandbox.reset()
            resets.append((time.perf_counter() - start) * 1000)
        diffs = timed(sandbox.diff, args.starts)
    results["exec_roundtrip"] = {
        "docker_cli": summary(cli),
        "sdk_exec_run": summary(sdk),
        "exec_server": summary(fast),
        "in_container_spawn_floor_ms": round(floor, 2),
    }
    results["reset"] = summary(resets)
    results["diff"] = summary(diffs)
    results["throughput"] = [throughput(backend, base, p, 100 if p < 16 else 40) for p in (1, 4, 16)]

    ratio_exec = (
        results["exec_roundtrip"]["docker_cli"]["p50_ms"] / results["exec_roundtrip"]["exec_server"]["p50_ms"]
    )
    ratio_start = results["cold_start"]["p50_ms"] / results["warm_acquire"]["p50_ms"]
    report = {
        "benchmark": "sandbox",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "docker_server": backend.client.version().get("Version"),
        "compared": "docker CLI exec vs SDK exec_run vs patchfleet exec server; cold start vs warm pool",
        "results": results,
        "speedup_exec_server_vs_cli": round(ratio_exec, 1),
        "speedup_warm_acquire_vs_cold_start": round(ratio_start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    exec_rows = results["exec_roundtrip"]
    print(f"{'measure':<34}{'p50 ms':>10}")
    for name, row in (
        ("cold create+start", results["cold_start"]),
        ("warm-pool acquire", results["warm_acquire"]),
        ("exec: docker CLI", exec_rows["docker_cli"]),
        ("exec: SDK exec_run", exec_rows["sdk_exec_run"]),
        ("exec: exec server", exec_rows["exec_server"]),
        ("reset()", results["reset"]),
        ("diff()", results["diff"]),
    ):
        print(f"{name:<34}{row['p50_ms']:>10.2f}")
    print(f"{'in-container spawn floor':<34}{exec_rows['in_container_spawn_floor_ms']:>10.2f}")
    for row in results["throughput"]:
        print(f"throughput, {row['sandboxes']:>2} sandboxes: {row['commands_per_s']:>8.1f} commands/s")
    print(f"exec server vs CLI: {ratio_exec:.1f}x; warm acquire vs cold start: {ratio_start:.1f}x")


if __name__ == "__main__":
    main()
