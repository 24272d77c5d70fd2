"""A run's budget is a hard bound: trajectories reserve their cost limit, and a trajectory never makes the
call that could take it past that limit, so what the run spends never exceeds its budget. Before, each
running trajectory could overrun its limit by one call, and the run its budget by one call per running
trajectory. No Docker: host-side sandboxes (tests/fakes/local_sandbox.py), the real litellm client on the
scripted server, which bills every prompt token litellm counts and a full max_tokens completion."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import litellm
import pytest
from fakes.local_sandbox import CALC_BUG, LocalSandbox, make_repo
from fakes.openai_server import FakeReply

from patchfleet.agent.config import SUBMIT_COMMAND
from patchfleet.data.recipes import Recipe
from patchfleet.data.task import Task
from patchfleet.runs.batch import Services, majority_select, run_batch
from patchfleet.runs.config import RunConfig
from patchfleet.runs.ledger import Ledger

FIX = [
    "THOUGHT: look\n\n```bash\ncat calc.py\n```",
    "THOUGHT: fix\n\n```bash\nsed -i 's/a - b/a + b/' calc.py\n```",
    f"THOUGHT: done\n\n```bash\n{SUBMIT_COMMAND} && git diff\n```",
]


def honest(body):
    """The agent's next scripted turn, billed as a provider would at worst; slow enough that both
    trajectories of a task are running (each holding its reservation) before either settles."""
    turn = sum(m["role"] == "assistant" for m in body["messages"])
    return FakeReply(
        FIX[min(turn, len(FIX) - 1)],
        prompt_tokens=litellm.token_counter(model=body["model"], messages=body["messages"]),
        completion_tokens=body["max_tokens"],
        latency=0.3,
    )


class HostBackend:
    """A fresh host-side repository per sandbox."""

    def __init__(self, root: Path) -> None:
        self.root, self.starts = root, 0
        self._lock = threading.Lock()

    def start(self, spec):
        with self._lock:
            self.starts += 1
            number = self.starts
        return LocalSandbox(make_repo(self.root / f"sandbox-{number}", CALC_BUG))


class Builder:
    def ensure(self, spec) -> str:
        return "local-fake"


def recipe(task: Task) -> Recipe:
    return Recipe(
        repo=task.repo,
        version="1",
        distro="bookworm",
        python="3.11",
        env_steps=(),
        env_vars=(),
        instance_steps=(),
        test_cmd="pytest",
        parser="parse_log_pytest",
    )


def run_config(tmp_path: Path, server, out: str, *overrides: str) -> RunConfig:
    pricing = "{mode: override, input_per_mtok: 10.0, output_per_mtok: 100.0}"
    model = (
        f"{{type: litellm, model: openai/fake-agent, api_base: '{server.base_url}', api_key: dummy, "
        f"max_tokens: 100, pricing: {pricing}}}"
    )
    return RunConfig.load(
        None,
        [
            f"outputs.dir={tmp_path / out}",
            f"agent.model={model}",
            f"agent.scratch_dir={tmp_path}",
            "parallel.n=2",
            "workers=1",
            "retry.initial_wait=0",
            *overrides,
        ],
    )


def batch(run: RunConfig, tmp_path: Path, *ids: str) -> dict:
    tasks = [
        Task(id=i, repo="local/calc", base_commit="HEAD", problem_statement="add() subtracts") for i in ids
    ]
    services = Services(
        backend=HostBackend(tmp_path / f"boxes-{run.outputs.dir.name}"),
        builder=Builder(),
        recipe=recipe,
        select=majority_select,
    )  # type: ignore[arg-type]
    return run_batch(run, tasks, {}, services)


def test_a_runs_total_never_exceeds_its_budget(tmp_path, server):
    """Unlimited, a trajectory makes 3 calls costing c1, c2, c3. With a cost limit of c1 + c2 + c3/2 and a
    budget of two limits, both trajectories of a task start (each reserves its limit); the old check made
    each one's third call (c1 + c2 < limit), overrunning each limit by c3/2 and the budget by c3. Now each
    stops before its third call: the run spends 2 (c1 + c2) <= budget, and no third trajectory starts."""
    server.respond_with(honest)
    free = run_config(tmp_path, server, "free", "parallel.n=1")
    summary = batch(free, tmp_path, "a-0")
    assert summary["trajectories"] == {"Submitted": 1}
    steps = json.loads(next((free.outputs.dir / "a-0").rglob("0.traj.json")).read_text())["info"]["steps"]
    c1, c2, c3 = (step["cost"] for step in steps)
    server.requests.clear()

    limit = c1 + c2 + c3 / 2
    budget = 2 * limit
    run = run_config(tmp_path, server, "bounded", f"agent.limits.cost_limit={limit}", f"budget={budget}")
    summary = batch(run, tmp_path, "a-1", "a-2")
    assert summary["cost"] <= budget
    assert summary["cost"] == pytest.approx(2 * (c1 + c2), rel=1e-2)  # prompts differ by a token or two
    assert summary["trajectories"] == {"LimitsExceeded": 2}, summary["trajectories"]
    assert summary["task_status"] == {"done": 1, "incomplete": 1}  # a-2's trajectories were refused
    assert len(server.requests) == 4  # two calls in each of the two trajectories that ran
    with Ledger(run.ledger_url()) as ledger:
        assert ledger.total_cost(summary["run_id"]) == pytest.approx(summary["cost"])
    ran = [json.loads(p.read_text())["info"] for p in run.outputs.dir.rglob("*.traj.json")]
    ran = [info for info in ran if info["exit_status"] == "LimitsExceeded"]
    assert len(ran) == 2
    for info in ran:
        assert info["model_stats"]["api_calls"] == 2 and info["model_stats"]["instance_cost"] <= limit
        assert info["limit"] == "cost" and "the next call may cost up to" in info["limit_detail"]


def selection_responder(body):
    """The agent fixes (FIX), the test writer looks once and submits (no script), the judge says YES."""
    if body["model"] == "fake-judge":
        script = ["YES"]
    elif body["model"] == "fake-writer":
        script = ["THOUGHT: look\n\n```bash\nls\n```", FIX[2]]
    else:
        script = FIX
    turn = sum(m["role"] == "assistant" for m in body["messages"])
    return FakeReply(
        script[min(turn, len(script) - 1)],
        prompt_tokens=litellm.token_counter(model=body["model"], messages=body["messages"]),
        completion_tokens=body["max_tokens"],
    )


def test_selection_spends_within_its_units_limits_and_writers_land_in_one_test_writers_folder(
    tmp_path, server
):
    """Test writers and judgements go through the same bound (the judge's limit fits one call, so its
    sampling stops there), and a writer's trajectory is <out>/test-writers/<id>/0.traj.json (it was
    <out>/test-writers/test-writers/<id>/: the selector's work folder and the pipeline both added it)."""
    from patchfleet.executor import LocalExecutor
    from patchfleet.runs.wiring import pipeline_selector

    server.respond_with(selection_responder)
    pricing = "{mode: override, input_per_mtok: 10.0, output_per_mtok: 100.0}"

    def model(name: str) -> str:
        return (
            f"{{type: litellm, model: openai/{name}, api_base: '{server.base_url}', api_key: dummy, "
            f"max_tokens: 100, pricing: {pricing}}}"
        )

    run = run_config(
        tmp_path,
        server,
        "selection",
        "agent.limits.cost_limit=1",
        "budget=5",
        "selection.generated_tests=1",
        f"selection.test_writer={model('fake-writer')}",
        f"selection.verifier={{model: {model('fake-judge')}, method: sampled, samples: 5, cost_limit: 0.01}}",
        *("selection.regression=false", "selection.harvest=false", "selection.candidate_tests=false"),
    )
    backend = HostBackend(tmp_path / "selection-boxes")
    select = pipeline_selector(run, backend, Builder(), recipe, None, lambda line: None, LocalExecutor())  # type: ignore[arg-type]
    tasks = [Task(id="a-1", repo="local/calc", base_commit="HEAD", problem_statement="add() subtracts")]
    summary = run_batch(
        run, tasks, {}, Services(backend=backend, builder=Builder(), recipe=recipe, select=select)
    )  # type: ignore[arg-type]

    out = run.outputs.dir
    assert (out / "test-writers" / "a-1" / "0.traj.json").is_file()
    assert not (out / "test-writers" / "test-writers").exists()
    calls = Counter(r.body["model"] for r in server.requests)
    # one judgement (one distinct candidate), five samples asked for: each may cost its prompt plus 8
    # answer tokens at $100/M (about $0.004), so the $0.01 limit stops the sampling early
    judge_calls = calls.pop("fake-judge")
    assert calls == {"fake-agent": 6, "fake-writer": 2} and 1 <= judge_calls < 5, (calls, judge_calls)
    verdicts = json.loads((out / "a-1" / "task.json").read_text())["selection_costs"]
    assert verdicts["judge"] <= 0.01
    assert summary["cost"] <= 5 and summary["task_status"] == {"done": 1}
