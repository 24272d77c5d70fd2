"""`RayExecutor` on a one-node Ray cluster on loopback that the test starts: units run in Ray worker
processes (not the driver's), results come back in order, a unit's exception comes back as itself, a
worker that dies is a `WorkerLost` (retryable) for `run` and a rerun for `map`, relayed calls reach the
driver, and an `OnNode` is built on the worker."""

from __future__ import annotations

import os
import sys
import time
from itertools import pairwise

import pytest
from fakes.ray_cluster import ray_head

from patchfleet.errors import InfrastructureError, WorkerLost
from patchfleet.executor import LocalExecutor, NodeLimit, OnNode

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
