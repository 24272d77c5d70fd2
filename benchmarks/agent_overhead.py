"""What the agent costs on top of the model: per-step overhead of one trajectory, and throughput of many
at once, with a model whose every call takes a fixed latency (the fake OpenAI server behind the real
litellm client) and every command running in a real Docker sandbox.

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/agent_overhead.py \
        --out benchmarks/results/agent_overhead/agent_overhead.json \
        [--latency 1.0] [--steps 42] [--concurrency 32]

The model is the scripted OpenAI-compatible server of the package (`patchfleet.runs.demo_server`, the
demo's and the tests' server). It runs in a child process, as a real provider would be elsewhere:
in-process, its HTTP handling would compete with the agents for the GIL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self

from patchfleet.agent import Agent, AgentConfig, ParallelConfig, read_trajectory, run_parallel
from patchfleet.agent.config import SUBMIT_COMMAND, LitellmModelConfig
from patchfleet.agent.pricing import PricingConfig
from patchfleet.data.sources import LocalCheckout
from patchfleet.data.task import Task
from patchfleet.runs.demo_server import ScriptedReply, ScriptedServer, bash_reply
from patchfleet.sandbox.base import SandboxSpec
from patchfleet.sandbox.docker import DockerBackend, DockerSandbox
from patchfleet.sandbox.images import ImageBuilder, ImageSpec, InstanceLayer
from patchfleet.sandbox.trust import HostTrust

REPO_FILES = {
    "calc.py": "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n",
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}
# What an agent typically does before it edits: look around, reproduce. Cycled to fill --steps.
EXPLORE = (
    "ls -la",
    "cat calc.py",
    "grep -rn 'def add' --include=*.py .",
    "cat > /tmp/reproduce.py <<'EOF'\nimport sys\nsys.path.insert(0, '.')\nfrom calc import add\n"
    "print('add(2, 3) =', add(2, 3))\nEOF\npython3 /tmp/reproduce.py",
    "git log --oneline | head -5 && git status --short",
    "sed -n '1,20p' test_calc.py",
    "python3 -m py_compile calc.py && echo compiled",
    "wc -l *.py",
)
FIX = "sed -i 's/a - b/a + b/' calc.py && python3 -c 'from calc import add; print(add(2, 3))'"
# The same loop with commands that cost the sandbox almost nothing: side by side with the realistic
# mix it separates what the agent costs from what the commands cost the machine's CPUs.
LIGHT_EXPLORE = ("ls", "cat calc.py", "grep -n add calc.py", "wc -l calc.py")
LIGHT_FIX = "sed -i 's/a - b/a + b/' calc.py"
MIXES = {"realistic": (EXPLORE, FIX), "light": (LIGHT_EXPLORE, LIGHT_FIX)}
SUBMIT = f"{SUBMIT_COMMAND} && git add -A && git diff --cached"
TASK = Task(id="bench-calc", repo="bench/calc", base_commit="HEAD", problem_statement="add() subtracts")
# fixed dates give a fixed commit hash, so the content-hashed image is built once and then reused
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z",
}


def script(steps: int, mix: str = "realistic") -> list[str]:
    """`steps` commands: exploration, the fix, the submission (each one model call)."""
    explore, fix = MIXES[mix]
    commands = [explore[i % len(explore)] for i in range(max(steps - 2, 0))]
    return [*commands, fix, SUBMIT][-steps:]


def responder(commands: list[str]):
    """Stateless: the reply depends only on how many assistant turns the request already holds, so one
    server serves any number of concurrent trajectories."""

    def reply(body: dict[str, Any]) -> ScriptedReply:
        done = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        return bash_reply(commands[min(done, len(commands) - 1)])

    return reply


def serve(conn: Connection, commands: list[str], latency: float) -> None:
    """The child process: a fake server until told to stop; on request, when each call arrived."""
    with ScriptedServer(responder(commands), latency=latency) as server:
        conn.send(server.base_url)
        while (message := conn.recv()) != "stop":
            if message == "arrivals":
                conn.send([r.received_at for r in server.requests])  # CLOCK_MONOTONIC: system-wide


class RemoteServer:
    """The fake server in a child process (spawned: this process holds threads and Docker clients)."""

    def __init__(self, commands: list[str], latency: float) -> None:
        self._conn, child = multiprocessing.get_context("spawn").Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=serve, args=(child, commands, latency), daemon=True
        )
        self.base_url = ""

    def __enter__(self) -> Self:
        self._process.start()
        self.base_url = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._process.join(timeout=10)

    def arrivals(self) -> list[float]:
        self._conn.send("arrivals")
        return self._conn.recv()


def repo_image(backend: DockerBackend, workdir: Path) -> str:
    repo = workdir / "calc"
    repo.mkdir()
    for name, text in REPO_FILES.items():
        (repo / name).write_text(text)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    builder = ImageBuilder(backend, repo_source=LocalCheckout(path=repo))
    layer = InstanceLayer(key="bench-agent-overhead", repo="bench/calc", commit=head)
    return builder.ensure(ImageSpec(instance=layer))


OPENAI_CLIENT = "litellm_http"  # LitellmModelConfig.openai_client; --openai-client sets it


def model_config(server: RemoteServer) -> LitellmModelConfig:
    return LitellmModelConfig(
        model="openai/fake-model",
        api_base=server.base_url,
        api_key="dummy",
        timeout=120,
        pricing=PricingConfig(mode="free"),
        openai_client=OPENAI_CLIENT,
    )


def agent_config(tmp: Path) -> AgentConfig:
    return AgentConfig.load(overrides=[f"scratch_dir={tmp}", "limits.cost_limit=0"])


def single(
    server: RemoteServer, backend: DockerBackend, image: str, tmp: Path, repeat: int, latency: float
) -> dict[str, Any]:
    """One trajectory alone; step times from the trajectory file and from the server's clock."""
    spec = SandboxSpec(image=image, labels={"role": "bench"})
    path = tmp / f"single-{repeat}.traj.json"
    first_request = len(server.arrivals())
    with backend.start(spec) as sandbox:
        agent = Agent(agent_config(tmp), model_config(server).build(), sandbox, trajectory_path=path)
        started = time.monotonic()
        result = agent.run(TASK)
        wall = time.monotonic() - started
    info = read_trajectory(path)["info"]
    steps = info["steps"]
    llm = sum(s["llm_time"] for s in steps)
    exec_ = sum(s["exec_time"] for s in steps)
    # request-to-request intervals: one whole step each (model call, command, bookkeeping), as the
    # server saw it; the last step (the submission) ends with the diff, not with a request
    arrivals = server.arrivals()[first_request:]
    intervals = [b - a for a, b in itertools.pairwise(arrivals)]
    return {
        "submitted": result.submitted and "+    return a + b" in result.submission,
        "steps": len(steps),
        "wall_s": wall,
        "llm_s": llm,
        "exec_s": exec_,
        "wall_per_step_s": wall / len(steps),
        "llm_per_step_s": llm / len(steps),
        "exec_per_step_s": exec_ / len(steps),
        "server_step_interval_median_s": statistics.median(intervals) if intervals else None,
        "outside_model_fraction": (wall - llm) / wall,
        "loop_fraction": (wall - llm - exec_) / wall,
        "client_overhead_per_call_s": llm / len(steps) - latency,
    }


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def parallel(
    server: RemoteServer,
    sandboxes: list[DockerSandbox],
    tmp: Path,
    mix: str,
    steps: int,
    latency: float,
    start_spread: float = 0.0,
) -> dict[str, Any]:
    """N trajectories through `run_parallel`, each in its own container (started beforehand, so that
    the makespan measures the agents, not `docker run`)."""
    n = len(sandboxes)
    first_request = len(server.arrivals())
    config = agent_config(tmp)
    busy_started, total_started = cpu_ticks()
    cpu_started = time.process_time()
    started = time.monotonic()
    outcomes = run_parallel(
        TASK,
        config,
        ParallelConfig(n=n, models=[model_config(server)], start_spread_s=start_spread),
        sandbox_factory=lambda i: nullcontext(sandboxes[i]),
        out_dir=tmp / f"parallel-{mix}",
    )
    makespan = time.monotonic() - started
    cpu = time.process_time() - cpu_started
    busy, total = cpu_ticks()
    total_steps = sum(o.steps for o in outcomes)
    ideal_s = steps * latency  # only ever waiting on the model; a spread start counts against us
    infos = [read_trajectory(o.path)["info"] for o in outcomes]
    llm_per_step = [s["llm_time"] for info in infos for s in info.get("steps", [])]
    exec_per_step = [s["exec_time"] for info in infos for s in info.get("steps", [])]
    # time in a trajectory that is neither the model call nor the command: parsing, templates, the
    # trajectory file (fsynced at every step), the final diff
    loop_per_step = [
        (info["elapsed"] - info["llm_time"] - info["exec_time"]) / max(len(info["steps"]), 1)
        for info in infos
        if info.get("steps")
    ]
    first_calls = sorted(server.arrivals()[first_request:])[:n]
    return {
        "mix": mix,
        "start_spread_s": start_spread,
        "trajectories": n,
        "submitted": sum(o.submitted and "+    return a + b" in o.submission for o in outcomes),
        "errors": sorted({o.error.cls for o in outcomes if o.error}),
        "makespan_s": makespan,
        "ideal_makespan_s": ideal_s,
        "steps": total_steps,
        "steps_per_s": total_steps / makespan,
        "ideal_steps_per_s": n * steps / ideal_s,
        "efficiency": (total_steps / makespan) / (n * steps / ideal_s),
        # CPU seconds this process (all agents, litellm included) used per second of makespan: near 1
        # would mean the agents are bound by one core's worth of Python (the GIL), not by the model
        "agent_process_cores": cpu / makespan,
        # the whole machine (agents, fake server, containers, anything else running): near 1 means the
        # CPUs, not the agent, set the pace
        "host_cpu_busy_fraction": (busy - busy_started) / max(total - total_started, 1),
        "trajectory_elapsed_median_s": statistics.median(info.get("elapsed", 0.0) for info in infos),
        "trajectory_elapsed_max_s": max(info.get("elapsed", 0.0) for info in infos),
        "per_step_median_s": {
            "latency": latency,
            "client_beyond_latency": statistics.median(llm_per_step) - latency,
            "exec": statistics.median(exec_per_step),
            "loop": statistics.median(loop_per_step) if loop_per_step else None,
        },
        # how long the N trajectories took to all get going (the spread of their first model calls)
        "first_calls_spread_s": first_calls[-1] - first_calls[0] if first_calls else None,
    }


def start_sandboxes(backend: DockerBackend, image: str, n: int) -> tuple[list[DockerSandbox], float]:
    spec = SandboxSpec(image=image, labels={"role": "bench"})
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        sandboxes = list(pool.map(lambda _: backend.start(spec), range(n)))
    return sandboxes, time.monotonic() - started


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds the server takes per call")
    parser.add_argument(
        "--steps",
        type=int,
        default=42,
        help="model calls per trajectory (>= 2); 42 is the median of the 119 recorded dev trajectories",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="trajectories at once")
    parser.add_argument("--repeats", type=int, default=3, help="single-trajectory runs")
    parser.add_argument(
        "--start-spread",
        type=float,
        default=0.0,
        help="ParallelConfig.start_spread_s: spread the N starts over this many seconds (0: all at once)",
    )
    parser.add_argument(
        "--openai-client",
        choices=["litellm_http", "openai_sdk"],
        default="litellm_http",
        help="LitellmModelConfig.openai_client: how litellm sends openai/... requests",
    )
    args = parser.parse_args()
    global OPENAI_CLIENT
    OPENAI_CLIENT = args.openai_client
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the fix and the submission)")

    load_before = os.getloadavg()
    backend = DockerBackend(trust=HostTrust.from_env())
    commands = script(args.steps)
    many: dict[str, dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-agent-") as name,
        RemoteServer(commands, args.latency) as server,
        RemoteServer(script(args.steps, "light"), args.latency) as light_server,
    ):
        tmp = Path(name)
        image = repo_image(backend, tmp)
        # one untimed trajectory first: litellm's import and first client set-up are paid once per
        # process, not per step
        single(server, backend, image, tmp, -1, args.latency)
        runs = [single(server, backend, image, tmp, i, args.latency) for i in range(args.repeats)]
        sandboxes, start_s = start_sandboxes(backend, image, args.concurrency)
        try:
            many["light"] = parallel(
                light_server, sandboxes, tmp, "light", args.steps, args.latency, args.start_spread
            )
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda box: box.reset(), sandboxes))
            many["realistic"] = parallel(
                server, sandboxes, tmp, "realistic", args.steps, args.latency, args.start_spread
            )
        finally:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda box: box.close(), sandboxes))
    load_after = os.getloadavg()

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    one = {
        "runs": runs,
        "wall_per_step_s": med("wall_per_step_s"),
        "llm_per_step_s": med("llm_per_step_s"),
        "exec_per_step_s": med("exec_per_step_s"),
        "server_step_interval_s": med("server_step_interval_median_s"),
        "outside_model_fraction": med("outside_model_fraction"),
        "loop_fraction": med("loop_fraction"),
        "client_overhead_per_call_s": med("client_overhead_per_call_s"),
        "non_latency_fraction": (med("wall_per_step_s") - args.latency) / med("wall_per_step_s"),
        "target_outside_model_fraction": 0.05,
    }
    # the other reading of "ideal": N trajectories each as fast as one alone (linear scaling), which
    # keeps the command and client time a lone trajectory also pays
    for mix in many.values():
        mix["ideal_linear_steps_per_s"] = args.concurrency / one["wall_per_step_s"]
        mix["efficiency_vs_linear"] = mix["steps_per_s"] / mix["ideal_linear_steps_per_s"]
    report = {
        "benchmark": "agent_overhead",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "python": sys.version.split()[0],
        "docker_server": backend.client.version().get("Version"),
        "compared": (
            "(a) one trajectory: wall time per step vs the model call (llm_time as the trajectory "
            "records it, and the server's fixed latency); outside_model = (wall - llm) / wall, "
            "loop = (wall - llm - exec) / wall. (b) N trajectories via run_parallel, one container "
            "each (pre-started; start time reported apart): steps/s vs the latency-bound ideal "
            "N * steps / (steps * latency), with the realistic command mix and with near-free commands"
        ),
        "setup": {
            "latency_s": args.latency,
            "steps": args.steps,
            "concurrency": args.concurrency,
            "repeats": args.repeats,
            "model": "litellm openai/fake-model -> patchfleet.runs.demo_server (child process), free",
            "openai_client": args.openai_client,
            "sandbox": "DockerBackend, bookworm base + instance layer with a 2-file git repo, 1 CPU",
            "commands": commands,
            "light_commands": script(args.steps, "light"),
        },
        "single": one,
        "parallel": {"sandbox_start_s": start_s, **many},
        "targets_met": {
            "outside_model_lt_5pct": one["outside_model_fraction"] < 0.05,
            "throughput_ge_90pct": many["realistic"]["efficiency"] >= 0.9,
            "throughput_ge_90pct_light_commands": many["light"]["efficiency"] >= 0.9,
            "throughput_ge_90pct_of_linear_scaling": many["realistic"]["efficiency_vs_linear"] >= 0.9,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rounded(report), indent=2) + "\n")

    load = f"load {load_before[0]:.1f}"
    print(f"latency {args.latency}s, {args.steps} steps, cpu_count {os.cpu_count()}, {load}")
    print(f"litellm openai_client: {args.openai_client}, start spread {args.start_spread}s")
    print(f"{'one trajectory (median of ' + str(args.repeats) + ')':<44}{'value':>12}")
    print(f"{'  wall per step (s)':<44}{one['wall_per_step_s']:>12.3f}")
    print(f"{'  llm_time per step (s)':<44}{one['llm_per_step_s']:>12.3f}")
    print(f"{'  exec_time per step (s)':<44}{one['exec_per_step_s']:>12.3f}")
    print(f"{'  server-side step interval (s)':<44}{one['server_step_interval_s']:>12.3f}")
    print(f"{'  outside the model call (% of step)':<44}{one['outside_model_fraction'] * 100:>11.2f}%")
    print(f"{'  loop bookkeeping only (% of step)':<44}{one['loop_fraction'] * 100:>11.2f}%")
    print(f"{'  litellm client per call (ms)':<44}{one['client_overhead_per_call_s'] * 1000:>12.1f}")
    print(f"{args.concurrency} trajectories at once (sandbox starts {start_s:.1f}s, not counted)")
    print(f"{'':<36}{'realistic':>14}{'light cmds':>14}")
    rows = (
        ("  makespan (s)", "makespan_s", "{:.1f}"),
        ("  steps/s", "steps_per_s", "{:.1f}"),
        ("  throughput vs latency-bound ideal", "efficiency", "{:.1%}"),
        ("  throughput vs N x one trajectory", "efficiency_vs_linear", "{:.1%}"),
        ("  trajectory elapsed, median (s)", "trajectory_elapsed_median_s", "{:.1f}"),
        ("  agent process CPU (cores)", "agent_process_cores", "{:.2f}"),
        ("  whole machine CPU busy", "host_cpu_busy_fraction", "{:.0%}"),
        ("  submitted the fix", "submitted", "{}"),
    )
    for label, key, fmt in rows:
        cells = "".join(f"{fmt.format(many[mix][key]):>14}" for mix in ("realistic", "light"))
        print(f"{label:<36}{cells}")
    for part in ("client_beyond_latency", "exec", "loop"):
        cells = "".join(
            f"{many[mix]['per_step_median_s'][part] * 1000:>14.1f}" for mix in ("realistic", "light")
        )
        print(f"{'  per step, ' + part + ' (ms)':<36}{cells}")
    print(f"ideal: {args.steps * args.latency:.1f}s makespan, {args.concurrency / args.latency:.1f} steps/s")


if __name__ == "__main__":
    main()
