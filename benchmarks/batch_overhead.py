"""What the batch machinery costs on top of the trajectories themselves, side by side in one process.

The same trajectories (the real litellm client against the local OpenAI-compatible server, which adds a
fixed latency per call; sandboxes that run nothing, so only orchestration is left to measure) run three
ways: `agent.run_parallel` per task (the floor), `runs.batch.run_batch` with the silent progress, and
`run_batch` with the live dashboard rendering to a terminal. Reported: wall time and process CPU time of
each, the batch's overhead as a share of wall time, and the dashboard's CPU as a share of one core.

`--executors` instead runs the same batch with the local executor (threads) and the Ray executor on a
Ray cluster started on this machine, interleaved (local, ray, local, ray, ...) after a warm-up of each,
and reports Ray's wall time as a ratio of local's (trajectories are then Ray tasks in worker processes;
the driver's CPU time is reported, the workers' is not).

    python3 benchmarks/batch_overhead.py --out benchmarks/results/batch_overhead/batch_overhead.json
    python3 benchmarks/batch_overhead.py --executors --out benchmarks/results/batch_overhead/ray_vs_local.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the fake server and the null sandbox are test fakes

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from fakes.null_sandbox import NullSandbox  # noqa: E402
from fakes.openai_server import FakeOpenAIServer, bash_reply  # noqa: E402
from rich.console import Console  # noqa: E402

from patchfleet.agent import run_parallel  # noqa: E402
from patchfleet.agent.config import SUBMIT_COMMAND  # noqa: E402
from patchfleet.data.recipes import Recipe  # noqa: E402
from patchfleet.data.task import Task  # noqa: E402
from patchfleet.executor import LocalExecutor  # noqa: E402
from patchfleet.runs.batch import Services, majority_select, run_batch  # noqa: E402
from patchfleet.runs.config import RunConfig  # noqa: E402
from patchfleet.runs.progress import LiveProgress, RunProgress  # noqa: E402

PATCH = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"


class NullBackend:
    def start(self, spec):
        return NullSandbox(patch=PATCH)


class Builder:
    def ensure(self, spec) -> str:
        return "null"


def recipe(task: Task) -> Recipe:
    return Recipe(
        repo=task.repo,
        version="1",
        distro="bookworm",
        python="3.11",
        env_steps=(),
        env_vars=(),
        instance_steps=(),
        test_cmd="true",
        parser="parse_log_pytest",
    )


def responder(steps: int):
    def reply(body: dict[str, Any]):
        turn = sum(m["role"] == "assistant" for m in body["messages"])
        return bash_reply(f"{SUBMIT_COMMAND}" if turn >= steps - 1 else "ls")

    return reply


def measure(work) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds the server adds to every call")
    parser.add_argument("--executors", action="store_true", help="local against Ray, interleaved")
    parser.add_argument("--rounds", type=int, default=2, help="with --executors: local+ray pairs")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    tasks = [
        Task(id=f"bench__t-{i}", repo="bench/t", base_commit="0" * 40, problem_statement=f"issue {i}")
        for i in range(args.tasks)
    ]
    with (
        FakeOpenAIServer(responder(args.steps), latency=args.latency) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        overrides = [
            "agent.model.type=litellm",
            "agent.model.model=openai/bench-model",
            f"agent.model.api_base={server.base_url}",
            "agent.model.api_key=dummy",
            "agent.model.pricing={mode: free}",
            f"agent.limits.step_limit={args.steps + 5}",
            f"parallel.n={args.samples}",
            f"workers={args.tasks}",
        ]

        def config(name: str) -> RunConfig:
            return RunConfig.load(None, [*overrides, f"outputs.dir={Path(tmp) / name}"])

        def services(progress: RunProgress) -> Services:
            backend = NullBackend()
            return Services(backend, Builder(), recipe, majority_select, progress)  # type: ignore[arg-type]

        def direct() -> None:
            run = config("direct")
            with ThreadPoolExecutor(max_workers=args.tasks) as pool:
                list(
                    pool.map(
                        lambda task: run_parallel(
                            task,
                            run.agent,
                            run.parallel,
                            sandbox_factory=lambda i: NullSandbox(patch=PATCH),
                            out_dir=run.outputs.dir,
                        ),
                        tasks,
                    )
                )

        def batch(name: str, progress_factory) -> None:
            run_batch(config(name), tasks, {}, services(progress_factory()))

        if args.executors:
            report = compare_executors(args, tasks, config, services)
            report["model_calls"] = len(server.requests)
            write(args.out, report)
            return

        def live() -> LiveProgress:
            return LiveProgress(Console(file=io.StringIO(), force_terminal=True, width=160))

        direct()  # warm-up: litellm's first import and call
        results = {
            "direct": measure(direct),
            "batch": measure(lambda: batch("batch", RunProgress)),
            "batch_dashboard": measure(lambda: batch("dashboard", live)),
        }
        calls = len(server.requests)
    floor, run, dash = results["direct"], results["batch"], results["batch_dashboard"]
    report = {
        "benchmark": "batch_overhead",
        "date": dt.datetime.now(dt.UTC).isoformat(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "setup": {k: getattr(args, k) for k in ("tasks", "samples", "steps", "latency")},
        "model_calls": calls,
        "results": results,
        "batch_overhead_share_of_wall": round((run["wall_s"] - floor["wall_s"]) / run["wall_s"], 4),
        "batch_extra_cpu_s": round(run["cpu_s"] - floor["cpu_s"], 3),
        "dashboard_cpu_share_of_one_core": round((dash["cpu_s"] - run["cpu_s"]) / dash["wall_s"], 4),
    }
    write(args.out, report)
    print(f"{'run':<18}{'wall s':>9}{'cpu s':>9}")
    for name, row in results.items():
        print(f"{name:<18}{row['wall_s']:>9.2f}{row['cpu_s']:>9.2f}")
    print(
        f"batch overhead {report['batch_overhead_share_of_wall']:.2%} of wall time; "
        f"dashboard {report['dashboard_cpu_share_of_one_core']:.2%} of one core"
    )


def compare_executors(args, tasks: list[Task], config, services) -> dict[str, Any]:
    """The same batch with each executor, interleaved so that the machine's load hits both alike."""
    import fakes.null_sandbox
    import ray
    from fakes.ray_cluster import ray_head

    from patchfleet.runs.ray_executor import RayExecutor

    ray.cloudpickle.register_pickle_by_value(fakes.null_sandbox)  # Ray workers cannot import tests/
    # a head on loopback, as the tests start one (`ray.init("local")` would also leave an auth token in
    # ~/.ray that clients of later `ray start` clusters then fail with)
    with tempfile.TemporaryDirectory() as tmp, ray_head(Path(tmp) / "ray.log") as address:
        ray_executor = RayExecutor(address)  # one for the whole comparison: its workers stay warm
        try:
            return _compare(args, tasks, config, services, ray_executor)
        finally:
            ray.shutdown()


def _compare(args, tasks: list[Task], config, services, ray_executor) -> dict[str, Any]:
    executors = {"local": LocalExecutor, "ray": lambda: ray_executor}
    runs: list[dict[str, Any]] = []

    def one(kind: str, label: str) -> dict[str, Any]:
        folder = f"{kind}-{label}"
        chosen = services(RunProgress())
        chosen.executor = executors[kind]()
        summaries: list[dict[str, Any]] = []
        timing = measure(lambda: summaries.append(run_batch(config(folder), tasks, {}, chosen)))
        row = {"executor": kind, "run": label, **timing, "trajectories": summaries[0]["trajectories"]}
        row["load_average_1m"] = round(os.getloadavg()[0], 2)
        print(f"{kind:<6}{label:<8}{row['wall_s']:>9.2f} s wall{row['cpu_s']:>8.2f} s driver cpu", flush=True)
        return row

    # warm-up: litellm's first import here, and Ray's worker processes (each imports patchfleet and litellm)
    warm = {kind: one(kind, "warm-up") for kind in ("local", "ray")}
    for number in range(1, args.rounds + 1):
        runs += [one("local", str(number)), one("ray", str(number))]
    units = dict(ray_executor.units)
    workers = len(ray_executor.workers)
    local = [r["wall_s"] for r in runs if r["executor"] == "local"]
    remote = [r["wall_s"] for r in runs if r["executor"] == "ray"]
    ratios = [round(b / a, 4) for a, b in zip(local, remote, strict=True)]
    report = {
        "benchmark": "batch_overhead.executors",
        "date": dt.datetime.now(dt.UTC).isoformat(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "setup": {k: getattr(args, k) for k in ("tasks", "samples", "steps", "latency", "rounds")},
        "compared": "run_batch with LocalExecutor (threads) vs RayExecutor (each trajectory a Ray task on a "
        "one-node cluster started here), null sandboxes, the real litellm client against the local server",
        "warm_up": warm,
        "runs": runs,
        "ray_over_local_wall": ratios,
        "ray_over_local_wall_total": round(sum(remote) / sum(local), 4),
        "ray_units": units,
        "ray_worker_processes": workers,
    }
    print(f"ray / local wall time per round: {ratios}; over all rounds {report['ray_over_local_wall_total']}")
    return report


def write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
