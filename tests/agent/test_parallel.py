"""N trajectories at once: isolation of failures, diversity across the N, shared concurrency limits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakes.local_sandbox import CALC_BUG, LocalSandbox, make_repo
from fakes.openai_server import FakeOpenAIServer, FakeReply, bash_reply

from patchfleet.agent import (
    AgentConfig,
    ParallelConfig,
    PromptVariant,
    ScriptedModel,
    plan,
    read_trajectory,
    run_parallel,
)
from patchfleet.agent.config import SUBMIT_COMMAND
from patchfleet.agent.parallel import TrajectorySpec, default_model_factory
from patchfleet.data.task import Task
from patchfleet.errors import SandboxStartError

TASK = Task(id="calc-1", repo="local/calc", base_commit="HEAD", problem_statement="add() subtracts")


def fixer(body: dict[str, Any]) -> FakeReply:
    """Stateless: the number of assistant turns so far says which step this trajectory is at."""
    turns = sum(m["role"] == "assistant" for m in body["messages"])
    if turns == 0:
        return bash_reply("sed -i 's/a - b/a + b/' calc.py")
    if turns == 1:
        return bash_reply("python -c 'from calc import add; assert add(2, 3) == 5'")
    return bash_reply(SUBMIT_COMMAND)


class MaxConcurrency:
    """A limiter that also measures the highest number of holders at once."""

    def __init__(self, limit: int) -> None:
        self._semaphore = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def __enter__(self) -> None:
        self._semaphore.acquire()
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.active -= 1
        self._semaphore.release()


def local_sandboxes(root: Path, fail: frozenset[int] = frozenset()):
    @contextmanager
    def factory(index: int) -> Iterator[LocalSandbox]:
        if index in fail:
            raise SandboxStartError(f"container {index} could not be started")
        repo = make_repo(root / f"repo-{index}", CALC_BUG)
        with LocalSandbox(repo) as sandbox:
            yield sandbox

    return factory


def test_one_crashing_trajectory_does_not_stop_the_others(
    server: FakeOpenAIServer, llm_config, agent_config, tmp_path: Path
) -> None:
    server.respond_with(fixer)
    config = agent_config().model_copy(update={"model": llm_config(server)})

    def models(spec: TrajectorySpec, limiter: Any):
        if spec.index == 2:  # a bug in the middle of a trajectory
            return ScriptedModel(["```bash\nls\n```", RuntimeError("boom")], limiter=limiter)
        return default_model_factory(spec, limiter)

    outcomes = run_parallel(
        TASK,
        config,
        ParallelConfig(n=4),
        sandbox_factory=local_sandboxes(tmp_path, fail=frozenset({1})),
        out_dir=tmp_path / "out",
        model_factory=models,
    )

    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    for ok in (outcomes[0], outcomes[3]):
        assert ok.submitted and "+    return a + b" in ok.submission and ok.error is None
    start_failure, crash = outcomes[1], outcomes[2]
    assert start_failure.exit_status == "SandboxStartError"
    assert start_failure.error is not None and start_failure.error.kind == "infrastructure"
    assert crash.exit_status == "RuntimeError"
    assert crash.error is not None and crash.error.kind == "internal" and "boom" in crash.error.message
    # every trajectory leaves a readable file, failures included
    for outcome in outcomes:
        info = read_trajectory(outcome.path)["info"]
        assert info["exit_status"] == outcome.exit_status and info["trajectory_index"] == outcome.index
    assert read_trajectory(outcomes[1].path)["info"]["error"]["class"] == "SandboxStartError"


def test_llm_and_sandbox_limiters_bound_concurrency(
    server: FakeOpenAIServer, llm_config, agent_config, tmp_path: Path
) -> None:
    server.respond_with(fixer)
    server.latency = 0.05
    llm = MaxConcurrency(2)
    boxes = MaxConcurrency(3)
    config = agent_config().model_copy(update={"model": llm_config(server)})
    outcomes = run_parallel(
        TASK,
        config,
        ParallelConfig(n=6),
        sandbox_factory=local_sandboxes(tmp_path),
        out_dir=tmp_path / "out",
        llm_limiter=llm,
        sandbox_limiter=boxes,
    )
    assert all(o.submitted for o in outcomes)
    assert llm.peak == 2 and boxes.peak == 3
    assert len(server.requests) == 18


def test_plan_cycles_models_temperatures_and_prompt_variants(llm_config, agent_config) -> None:
    with FakeOpenAIServer() as server:
        a, b = llm_config(server, model="openai/a"), llm_config(server, model="openai/b")
    parallel = ParallelConfig(
        n=5,
        models=[a, b],
        temperatures=[0.0, 0.7, 1.0],
        prompt_variants=[PromptVariant(name="plain"), PromptVariant(name="tests", extra_instructions="TDD!")],
    )
    specs = plan(agent_config(), parallel)
    assert [s.model.model for s in specs] == ["openai/a", "openai/b", "openai/a", "openai/b", "openai/a"]
    assert [s.model.temperature for s in specs] == [0.0, 0.7, 1.0, 0.0, 0.7]
    assert [s.variant for s in specs] == ["plain", "tests", "plain", "tests", "plain"]
    assert [s.agent.extra_instructions for s in specs[:2]] == ["", "TDD!"]


def test_variants_and_temperatures_reach_the_provider(
    server: FakeOpenAIServer, llm_config, agent_config, tmp_path: Path
) -> None:
    server.respond_with(fixer)
    config: AgentConfig = agent_config().model_copy(update={"model": llm_config(server)})
    variants = [PromptVariant(name="a"), PromptVariant(name="b", extra_instructions="Regression test first.")]
    parallel = ParallelConfig(n=2, temperatures=[0.2, 0.9], prompt_variants=variants)
    outcomes = run_parallel(
        TASK, config, parallel, sandbox_factory=local_sandboxes(tmp_path), out_dir=tmp_path / "out"
    )
    assert [o.temperature for o in outcomes] == [0.2, 0.9] and [o.variant for o in outcomes] == ["a", "b"]
    firsts = [r.body for r in server.requests if len(r.messages) == 2]
    by_temperature = {body["temperature"]: body["messages"][1]["content"] for body in firsts}
    assert "Regression test first." in by_temperature[0.9]
    assert "Regression test first." not in by_temperature[0.2]


def test_start_spread_staggers_the_first_model_calls(
    server: FakeOpenAIServer, llm_config, agent_config, tmp_path: Path
) -> None:
    server.respond_with(fixer)
    config = agent_config().model_copy(update={"model": llm_config(server)})
    # litellm's first call in a process imports modules for seconds under the import lock, which every
    # other thread's first call waits on: warm it, or the starts line up again behind the lock
    run_parallel(
        TASK,
        config,
        ParallelConfig(n=1),
        sandbox_factory=local_sandboxes(tmp_path / "warm"),
        out_dir=tmp_path / "warm",
    )
    warm = len(server.requests)
    outcomes = run_parallel(
        TASK,
        config,
        ParallelConfig(n=4, start_spread_s=0.6),
        sandbox_factory=local_sandboxes(tmp_path),
        out_dir=tmp_path / "out",
    )
    assert all(o.submitted for o in outcomes)
    first = sorted(r.received_at for r in server.requests[warm:] if len(r.body["messages"]) == 2)
    assert len(first) == 4
    assert first[-1] - first[0] >= 0.3  # 0.45 s by design; about 0.01 s without the spread
