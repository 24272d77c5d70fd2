"""`RayExecutor` on a one-node Ray cluster on loopback that the test starts: units run in Ray worker
processes (not the driver's), results come back in order, a unit's exception comes back as itself, a
worker that dies is a `WorkerLost` (retryable) for `run` and a rerun for `map`, relayed calls reach the
driver, and an `OnNode` is built on the worker. One instance's selection (regression discovery, a test
writer, the matrix, the verifier) runs its Docker work and judgements in workers and decides as the local
executor does. A local start (no address) leaves no token file behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from fakes.openai_server import FakeOpenAIServer, FakeReply
from fakes.ray_cluster import ray_head
from fakes.started import container_starts

from patchfleet.agent.config import SUBMIT_COMMAND
from patchfleet.errors import InfrastructureError, WorkerLost
from patchfleet.executor import LocalExecutor, NodeLimit, OnNode
from patchfleet.selection.model import content_hash

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/


@pytest.fixture(scope="module")
def executor(tmp_path_factory):
    from patchfleet.runs.ray_executor import RayExecutor

    with ray_head(tmp_path_factory.mktemp("ray") / "ray.log") as address:
        executor = RayExecutor(address)
        try:
            yield executor
        finally:
            executor.close()
            ray.shutdown()


def pid(_: object) -> int:
    return os.getpid()


def square(x: int) -> int:
    return x * x


def fail(x: int) -> int:
    if x == 1:
        raise ValueError(f"unit {x} failed")
    return x


def die(_: object) -> None:
    os._exit(3)


def test_units_run_in_worker_processes_not_in_the_driver(executor):
    assert executor.run(pid, None) != os.getpid()
    assert os.getpid() not in executor.map(pid, range(4), workers=2)
    assert LocalExecutor().run(pid, None) == os.getpid()  # the same probe says "here" for local units
    assert executor.units["pid"] == 5 and all(p != os.getpid() for _, p in executor.workers)


def test_map_keeps_order_and_raises_the_units_exception(executor):
    assert executor.map(square, range(9), workers=3) == [x * x for x in range(9)]
    with pytest.raises(ValueError, match="unit 1 failed"):
        executor.map(fail, range(3), workers=3)


def test_a_dead_worker_is_a_retryable_worker_lost(executor):
    with pytest.raises(WorkerLost) as caught:
        executor.run(die, None)
    assert isinstance(caught.value, InfrastructureError)
    # Ray restarts the node's worker; until it is back, units fail the same (retryable) way
    deadline = time.monotonic() + 120
    while True:
        try:
            assert executor.run(pid, None) != os.getpid()
            break
        except WorkerLost:
            assert time.monotonic() < deadline, "the worker did not come back"
            time.sleep(0.5)


def test_a_mapped_unit_whose_worker_died_runs_again(executor, tmp_path):
    """Matrix rows and evaluations are idempotent (their caches): a node's death costs a rerun only."""
    marker = tmp_path / "died-once"

    def unit(x: int) -> int:
        if x == 2 and not marker.exists():
            marker.touch()
            os._exit(3)  # the worker, and every unit it was running, goes with it
        return x * 10

    assert executor.map(unit, range(4), workers=4) == [0, 10, 20, 30]
    assert marker.exists()


def test_relayed_calls_reach_the_driver(executor):
    seen: list[tuple[int, int]] = []
    relayed = executor.relay(lambda worker, x: seen.append((worker, x)))

    def unit(x: int) -> int:
        relayed(os.getpid(), x)
        return x

    assert executor.map(unit, range(3), workers=3) == [0, 1, 2]
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(x for _, x in seen) == [0, 1, 2]
    assert os.getpid() not in {worker for worker, _ in seen}


def test_on_node_is_built_on_the_worker(executor):
    here = OnNode("pid:test", os.getpid, value=os.getpid())

    def unit(node: OnNode) -> tuple[int, int]:
        return node.get(), os.getpid()

    built, worker = executor.run(unit, here)
    assert built == worker != os.getpid()


def test_a_node_limit_holds_on_the_worker(executor):
    """Units run as threads of one worker per node; a `NodeLimit` bounds them there, as
    `--max-sandboxes`/`--max-llm-calls` do with Ray."""
    limit = NodeLimit("test:one-at-a-time", 1)

    def unit(x: int) -> tuple[float, float]:
        with limit:
            started = time.monotonic()
            time.sleep(0.3)
            return started, time.monotonic()

    spans = sorted(executor.map(unit, range(4), workers=4))
    assert all(later[0] >= earlier[1] for earlier, later in pairwise(spans)), spans


# -- one instance's selection, its units on the cluster -------------------------------------------------

CALC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST_CALC = "from calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"  # passes at base
RIGHT = (
    "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n"
    "@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
)
WRONG = RIGHT.replace("a + b", "abs(a - b) + 2")  # add(2, 3) == 3
SCRIPT = (
    "import sys\nsys.path.insert(0, '/testbed')\nfrom calc import add\n"
    "got = add(2, 3)\nprint('add(2, 3) =', got)\nsys.exit(0 if got == 5 else 2)\n"
)
UNITS_TASK = "local__units-1"


def responder(body: dict[str, Any]) -> FakeReply:
    """The test writer writes SCRIPT, runs it and submits; the judge is sure of the right patch only."""
    if body["model"] == "fake-writer":
        turn = sum(m["role"] == "assistant" for m in body["messages"])
        steps = [
            f"cat <<'EOF' > /tmp/patchfleet_test.py\n{SCRIPT}EOF",
            'cd /testbed && python /tmp/patchfleet_test.py; echo "exit code: $?"',
            SUBMIT_COMMAND,
        ]
        return FakeReply(f"THOUGHT: step {turn}\n\n```bash\n{steps[min(turn, 2)]}\n```")
    if "+    return a + b" in body["messages"][-1]["content"]:
        return FakeReply("YES", logprobs=[("YES", -0.05, [("YES", -0.05), ("NO", -3.0)])])
    return FakeReply("NO", logprobs=[("NO", -0.1, [("NO", -0.1), ("YES", -2.5)])])


def node_backend() -> Any:
    """What a worker builds for itself: the Docker engine of its node (here, the same machine's)."""
    from patchfleet.sandbox.docker import DockerBackend
    from patchfleet.sandbox.engine import connect
    from patchfleet.sandbox.trust import HostTrust

    return DockerBackend(connect(), max_concurrent_starts=2, trust=HostTrust.from_env())


@pytest.fixture(scope="module")
def units_image(docker_backend, base_image, tmp_path_factory, run_git) -> tuple[Any, str]:
    """A one-bug repository (with a test that passes at base) over the evaluation tests' environment
    layer (a venv with pytest, shared by content hash)."""
    from patchfleet.data.recipes import Recipe
    from patchfleet.data.sources import LocalCheckout
    from patchfleet.data.task import Task
    from patchfleet.sandbox.images import ImageBuilder, image_spec

    repo = tmp_path_factory.mktemp("units") / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text(CALC)
    (repo / "test_calc.py").write_text(TEST_CALC)
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "base")
    head = run_git(repo, "rev-parse", "HEAD").strip()
    task = Task(id=UNITS_TASK, repo="local/calc", base_commit=head, problem_statement="add() subtracts")
    recipe = Recipe(
        repo="local/calc",
        version="0.1",
        distro="bookworm",
        python="3.11",
        env_steps=("python3 -m venv /opt/venv", "/opt/venv/bin/pip install --no-input -q 'pytest==8.3.3'"),
        env_vars=(("PATH", "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"),),
        instance_steps=(),
        test_cmd="pytest -rA",
        parser="parse_log_pytest",
    )
    builder = ImageBuilder(docker_backend, repo_source=LocalCheckout(path=repo))
    return task, builder.ensure(image_spec(task, recipe))


def select_with(executor, backend, task, image: str, server: FakeOpenAIServer, out: Path):
    """One instance's selection with every test source and the verifier, its units on `executor`."""
    from patchfleet.agent.config import LitellmModelConfig
    from patchfleet.runs.select import node_verifier, test_writer_agent
    from patchfleet.selection.matrix_cache import MatrixCache
    from patchfleet.selection.model import Candidate
    from patchfleet.selection.pipeline import SelectionConfig, SelectionEnv, select_task
    from patchfleet.selection.verifier import Verifier, VerifierConfig

    def model(name: str) -> LitellmModelConfig:
        return LitellmModelConfig(
            model=f"openai/{name}", api_base=server.base_url, api_key="dummy", pricing={"mode": "free"}
        )

    config = SelectionConfig(
        regression_budget_s=60,
        generated_tests=1,
        test_writer=model("fake-writer"),
        verifier=VerifierConfig(model=model("fake-judge"), cache_dir=out / "verifier-cache"),
    )
    verifier = node_verifier(Verifier(config.verifier), executor)
    env = SelectionEnv(
        image=image,
        backend=backend,
        cache=MatrixCache(out / "cells"),
        verifier=verifier,
        test_writer=test_writer_agent(config, None),
        work_dir=out / "test-writers",
        executor=executor,
    )
    candidates = [Candidate(id=content_hash(p), instance_id=task.id, patch=p) for p in (WRONG, RIGHT)]
    return select_task(task, candidates, env=env, config=config, out_dir=out / "selection")


@pytest.mark.docker
def test_a_selections_units_run_in_workers_and_decide_as_locally(
    executor, docker_backend, units_image, server, tmp_path
):
    """Regression discovery, the test writer's trajectory, the matrix rows and every judgement are units:
    on Ray, each container is started by a worker with its own engine, and the tests, cells, scores and
    decision are those of the local executor."""
    server.respond_with(responder)
    task, image = units_image
    here = select_with(LocalExecutor(), docker_backend, task, image, server, tmp_path / "local")
    before = executor.describe()["units"]
    backend = OnNode("backend:test-units", node_backend, value=docker_backend)
    with container_starts(docker_backend.client) as started:
        there = select_with(executor, backend, task, image, server, tmp_path / "ray")
        time.sleep(1)  # the last start events on their way

    kinds = sorted(t.kind.value for t in here.inputs.tests)
    assert kinds == ["generated", "regression"], here.inputs.tests
    assert [t.id for t in there.inputs.tests] == [t.id for t in here.inputs.tests]

    def cells(result) -> dict[tuple[str, str], tuple[int | None, str | None]]:
        return {(c.candidate_id, c.test_id): (c.exit_code, c.error) for c in result.inputs.matrix.cells}

    assert cells(there) == cells(here) and len(cells(here)) == 6  # BASE and 2 candidates x 2 tests
    assert {k: s.score for k, s in there.inputs.verifier.items()} == {
        k: s.score for k, s in here.inputs.verifier.items()
    }
    right = content_hash(RIGHT)
    assert here.decision.chosen == there.decision.chosen == right
    assert here.decision.ranking == there.decision.ranking
    decided = json.loads((tmp_path / "ray" / "selection" / task.id / "decision.json").read_text())
    assert decided["decision"]["chosen"] == right

    units = executor.describe()["units"]
    ran = {name: units.get(name, 0) - before.get(name, 0) for name in units}
    assert ran.get("discover_regression") == 1 and ran.get("write_test") == 1, ran
    assert ran.get("judge") == 2 and ran.get("_Runner.run_row") == 3, ran
    owners: dict[str, set[str]] = {}
    for labels in started:
        if labels.get("patchfleet.task") == task.id:
            owners.setdefault(labels.get("patchfleet.role", ""), set()).add(labels["patchfleet.owner-pid"])
    workers = {str(pid) for _, pid in executor.workers}
    assert set(owners) == {"regression", "test-writer", "selection"}, owners
    assert all(pids <= workers and str(os.getpid()) not in pids for pids in owners.values()), owners


# -- a local start ----------------------------------------------------------------------------------------

LOCAL_START = """
import os
from patchfleet.runs.ray_executor import RayExecutor

executor = RayExecutor(None)
worker = executor.run(lambda _: (os.getpid(), os.environ.get("RAY_AUTH_MODE")), None)
print("RESULT", os.getpid(), *worker)
"""


def test_a_local_start_leaves_no_token_file_behind(tmp_path):
    """`--executor ray` without an address starts a cluster here. Ray (2.5x) would turn token auth on
    and write ~/.ray/auth_token, which every later `ray start --head` then requires of clients that do not
    send it; the cluster gets a token of the process's own instead, and HOME stays as it was."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_")}
    env |= {"HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    run = subprocess.run(
        [sys.executable, "-c", LOCAL_START], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT"))
    _, driver, worker, mode = line.split()
    assert worker != driver and mode == "token"  # a unit ran in a worker of a cluster that wants a token
    assert not (home / ".ray").exists(), sorted(str(p) for p in home.rglob("*"))
