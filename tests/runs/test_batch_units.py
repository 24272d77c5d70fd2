"""The batch's scheduling without Docker: scripted models, sandboxes that are git repositories on the host
(tests/fakes/local_sandbox.py), so budget, retries, resume and failure isolation are checked in seconds."""

from __future__ import annotations

import itertools
import json
import tempfile
import threading
from collections import Counter
from pathlib import Path

import pytest
from fakes.local_sandbox import CALC_BUG, LocalSandbox, make_repo

from patchfleet.agent.config import SUBMIT_COMMAND
from patchfleet.data.task import Task
from patchfleet.errors import ConfigError, SandboxStartError
from patchfleet.runs.batch import Services, majority_select, run_batch
from patchfleet.runs.config import RunConfig
from patchfleet.runs.ledger import Ledger

FIX = [
    "THOUGHT: look\n\n```bash\ncat calc.py\n```",
    "THOUGHT: fix\n\n```bash\nsed -i 's/a - b/a + b/' calc.py\n```",
    f"THOUGHT: done\n\n```bash\n{SUBMIT_COMMAND} && git diff\n```",
]


class HostBackend:
    """A fresh host-side repository per sandbox; the first `fail_first` starts fail (infrastructure)."""

    def __init__(self, root: Path, fail_first: int = 0) -> None:
        self.root, self.fail_first = root, fail_first
        self.starts = 0
        self._lock = threading.Lock()
        self._numbers = itertools.count()

    def start(self, spec):
        with self._lock:
            self.starts += 1
            if self.starts <= self.fail_first:
                raise SandboxStartError("injected: the engine refused to start a container")
            number = next(self._numbers)
        return LocalSandbox(make_repo(self.root / f"sandbox-{number}", CALC_BUG))


class Builder:
    def ensure(self, spec) -> str:
        return "local-fake"


def recipe(task: Task):
    if task.id == "bad-1":
        raise ConfigError("no environment recipe for this task")
    from patchfleet.data.recipes import Recipe

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


def tasks(*ids: str) -> list[Task]:
    return [
        Task(id=i, repo="local/calc", base_commit="HEAD", problem_statement="add() subtracts") for i in ids
    ]


def config(tmp_path: Path, *overrides: str) -> RunConfig:
    replies = json.dumps(FIX)
    return RunConfig.load(
        None,
        [
            f"outputs.dir={tmp_path / 'out'}",
            f"agent.model={{type: scripted, cost_per_call: 0.01, replies: {replies}}}",
            "agent.limits.cost_limit=0.05",
            "parallel.n=2",
            "workers=2",
            "retry.initial_wait=0",
            *overrides,
        ],
    )


def services(tmp_path: Path, backend: HostBackend) -> Services:
    return Services(backend=backend, builder=Builder(), recipe=recipe, select=majority_select)  # type: ignore[arg-type]


def test_a_batch_selects_writes_predictions_and_a_bad_task_fails_alone(tmp_path):
    run = config(tmp_path)
    summary = run_batch(run, tasks("a-1", "bad-1", "a-2"), {}, services(tmp_path, HostBackend(tmp_path)))
    out = run.outputs.dir
    assert summary["task_status"] == {"done": 2, "error": 1}
    assert summary["task_errors"]["bad-1"]["kind"] == "config"
    assert summary["trajectories"] == {"Submitted": 4}
    assert summary["cost"] == pytest.approx(4 * 3 * 0.01)
    preds = json.loads((out / "preds.json").read_text())
    assert sorted(preds) == ["a-1", "a-2"]
    assert "+    return a + b" in preds["a-1"]["model_patch"]
    canonical = [json.loads(line) for line in (out / "preds.jsonl").read_text().splitlines()]
    assert [len(row["sources"]) for row in canonical] == [2, 2]  # both trajectories proposed the fix
    with Ledger(run.ledger_url()) as ledger:
        run_id = json.loads((out / "run.json").read_text())["run_id"]
        assert ledger.counts(run_id) == {"Submitted": 4}
        assert ledger.total_cost(run_id) == pytest.approx(summary["cost"])

    # the same run again does nothing: every task is done
    backend = HostBackend(tmp_path / "again")
    again = run_batch(run, tasks("a-1", "bad-1", "a-2"), {}, services(tmp_path, backend))
    assert backend.starts == 0 and again["resumed_tasks"] == 2
    # a resumed task keeps the stage times of the run that did its work (the report's time by stage)
    assert (
        again["stage_time"]["a-1"] == summary["stage_time"]["a-1"]
        and "selection" in summary["stage_time"]["a-1"]
    )
    assert json.loads((out / "preds.json").read_text()) == preds


def test_the_budget_is_never_exceeded_and_the_rest_resumes_with_more(tmp_path):
    # each trajectory reserves its cost limit (0.05) and spends 0.03: with 0.12, a third one starts only
    # once two have settled (0.06 + 0.05), and a fourth never (0.09 + 0.05)
    run = config(tmp_path, "budget=0.12")
    summary = run_batch(run, tasks("a-1", "a-2", "a-3"), {}, services(tmp_path, HostBackend(tmp_path)))
    assert summary["cost"] <= 0.12 + 1e-9
    assert summary["trajectories"].get("Submitted") == 3
    assert summary["task_status"].get("incomplete", 0) >= 1
    # a bigger budget finishes the missing trajectories only
    more = config(tmp_path, "budget=1.0")
    backend = HostBackend(tmp_path / "more")
    summary = run_batch(more, tasks("a-1", "a-2", "a-3"), {}, services(tmp_path, backend))
    assert backend.starts == 3 and summary["trajectories"] == {"Submitted": 6}
    assert summary["task_status"] == {"done": 3} and summary["cost"] == pytest.approx(0.18)


def test_infrastructure_failures_are_retried_and_counted_apart(tmp_path):
    run = config(tmp_path, "parallel.n=1", "workers=1")
    backend = HostBackend(tmp_path, fail_first=2)
    summary = run_batch(run, tasks("a-1"), {}, services(tmp_path, backend))
    assert backend.starts == 3  # two failed starts, then the trajectory ran
    assert summary["trajectories"] == {"Submitted": 1}
    assert summary["earlier_attempts"] == {"SandboxStartError": 2}
    assert summary["infrastructure_failures"] == {}
    assert len(list((run.outputs.dir / "a-1" / "attempts").glob("0.*.traj.json"))) == 2


def test_a_budget_needs_a_cost_limit(tmp_path):
    run = config(tmp_path, "budget=1", "agent.limits.cost_limit=0")
    with pytest.raises(ConfigError, match="cost limit"):
        run_batch(run, tasks("a-1"), {}, services(tmp_path, HostBackend(tmp_path)))


def test_one_process_per_run_folder(tmp_path):
    from patchfleet.runs.batch import run_lock

    run = config(tmp_path)
    with run_lock(run.outputs.dir), pytest.raises(ConfigError, match="another patchfleet batch is running"):
        run_batch(run, tasks("a-1"), {}, services(tmp_path, HostBackend(tmp_path)))


def test_a_replay_model_names_one_recording_per_task(tmp_path):
    recordings = tmp_path / "recorded"
    recordings.mkdir()
    for instance_id, fix in (("a-1", "s/a - b/a + b/"), ("a-2", "s/a - b/b + a/")):
        turns = [f"THOUGHT: fix\n\n```bash\nsed -i '{fix}' calc.py\n```", FIX[2]]
        messages = [{"role": "assistant", "content": t} for t in turns]
        (recordings / f"{instance_id}.traj.json").write_text(json.dumps({"messages": messages, "info": {}}))
    template = recordings / "{instance_id}.traj.json"
    run = config(tmp_path, f"agent.model={{type: replay, path: '{template}'}}", "parallel.n=1")
    summary = run_batch(run, tasks("a-1", "a-2"), {}, services(tmp_path, HostBackend(tmp_path)))
    assert summary["trajectories"] == {"Submitted": 2}
    preds = json.loads((run.outputs.dir / "preds.json").read_text())
    assert "+    return a + b" in preds["a-1"]["model_patch"]
    assert "+    return b + a" in preds["a-2"]["model_patch"]


class PatchGrader:
    """An evaluator that resolves a patch when it carries `marker` (the hidden test's verdict), and counts
    how many times each distinct patch was graded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.graded: list[str] = []

    def evaluate(self, task, spec, prediction, *, run_id=None):
        from patchfleet.runs.evaluation import Outcome

        self.graded.append((task.id, prediction.model_name_or_path))
        resolved = self.marker in prediction.model_patch
        return Outcome(task.id, {task.id: {"resolved": resolved}})


def test_an_evaluated_batch_grades_every_candidate_and_writes_its_report(tmp_path):
    """`--evaluate`: each task's candidates (its trajectories' and other systems') get a verdict in
    `<id>/evaluation.json`, summary.json has the pool's figures (chosen, oracle, random pick, per source)
    and the run folder its report.html."""
    from patchfleet.data.task import EvalSpec
    from patchfleet.runs.candidate_eval import evaluate_candidates
    from patchfleet.runs.layout import RunLayout
    from patchfleet.selection.candidates import make_candidate
    from patchfleet.selection.model import CandidateSource

    wrong = (
        "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return 0\n"
    )
    source = CandidateSource(kind="predictions", name="sysA", ref="p.jsonl:1")
    others = {"a-1": [make_candidate("a-1", wrong, source)]}
    grader = PatchGrader("+    return a + b")
    specs = {i: EvalSpec(instance_id=i, test_patch="") for i in ("a-1", "a-2")}

    def evaluate(batch_tasks, eval_specs, out):
        evaluate_candidates(grader, RunLayout(out.parent), batch_tasks, eval_specs)
        return {"resolved_instances": 2, "resolved_ids": ["a-1", "a-2"]}

    run = config(tmp_path, "evaluate=true", "parallel.n=2")
    service = services(tmp_path, HostBackend(tmp_path))
    service.evaluate = evaluate
    summary = run_batch(run, tasks("a-1", "a-2"), specs, service, other_candidates=others)
    out = run.outputs.dir
    flags = json.loads((out / "a-1" / "evaluation.json").read_text())
    assert sorted(flags.values()) == [False, True]
    pool = summary["candidates"]
    assert pool["tasks"] == 2 and pool["chosen_resolved"] == 2 and pool["oracle_resolved"] == 2
    by_source = pool["by_source"]
    # both trajectories of each task proposed the fix: one source name across tasks, 4 of 4 resolved
    assert by_source["trajectory scripted"] == {"resolved": 4, "proposed": 4}
    assert by_source["sysA"] == {"resolved": 0, "proposed": 1}
    assert pool["random_pick_resolved"] == pytest.approx(2 / 3 + 1, abs=1e-3)
    assert len(grader.graded) == len(set(grader.graded)) == 3  # each task's distinct patches, once
    html = (out / "report.html").read_text()
    assert "Resolved over the candidate pool (2 tasks)" in html and "resolved 2 / 2" in html


class EveryTaskOfficial:
    """Official images found for every task (what `OfficialImages.for_task` says once one is here)."""

    def for_task(self, instance_id: str):
        from patchfleet.sandbox.official import OfficialImage

        return OfficialImage(f"swebench/sweb.eval.x86_64.{instance_id}:latest", f"sha256:{instance_id}", {})


def test_the_select_stage_keys_an_official_image_by_its_content_id(tmp_path):
    """Its name can move (re-pulled, rebuilt): the matrix cells are keyed by the content id it gets."""
    jobs = []

    def select(job):
        jobs.append(job)
        return majority_select(job)

    service = services(tmp_path, HostBackend(tmp_path))
    service.select, service.official = select, EveryTaskOfficial()  # type: ignore[assignment]
    run_batch(config(tmp_path), tasks("a-1"), {}, service)
    assert [(j.image, j.image_id) for j in jobs] == [("swebench/sweb.eval.x86_64.a-1:latest", "sha256:a-1")]

    ours = []
    service = services(tmp_path, HostBackend(tmp_path / "ours"))
    service.select = lambda job: ours.append(job) or majority_select(job)
    run_batch(config(tmp_path, f"outputs.dir={tmp_path / 'ours-out'}"), tasks("a-1"), {}, service)
    assert [(j.image, j.image_id) for j in ours] == [("local-fake", None)]  # ours: the name is the content


def test_a_node_refuses_an_official_image_whose_content_differs_from_the_drivers():
    """With Ray, a node makes sure of the task's image itself: under the same name it may hold (or pull)
    other content than the driver keyed the cells by, and must say so rather than run in it."""
    from patchfleet.errors import ImageBuildError
    from patchfleet.runs.batch import ensure_image

    task, official = tasks("a-1")[0], EveryTaskOfficial()
    name = "swebench/sweb.eval.x86_64.a-1:latest"
    assert ensure_image(Builder(), official, recipe, task, "sha256:a-1") == (name, {})  # type: ignore[arg-type]
    with pytest.raises(ImageBuildError, match="is sha256:a-1 on this node, sha256:other where"):
        ensure_image(Builder(), official, recipe, task, "sha256:other")  # type: ignore[arg-type]
    with pytest.raises(ImageBuildError, match="is not here on this node"):
        ensure_image(Builder(), None, recipe, task, "sha256:a-1")  # type: ignore[arg-type]
    assert ensure_image(Builder(), None, recipe, task) == ("local-fake", {})  # type: ignore[arg-type]


# -- selection's model calls within the budget: test writers and judgements on the scripted server ------

CALL_USD = 0.01  # every call: 1,000 prompt tokens at $10 per million, completions free


def priced(server, name: str) -> str:
    """A litellm model on the scripted server at a fixed price."""
    pricing = "{mode: override, input_per_mtok: 10.0, output_per_mtok: 0.0}"
    return (
        f"{{type: litellm, model: openai/{name}, api_base: '{server.base_url}', api_key: dummy, "
        f"pricing: {pricing}}}"
    )


def selection_responder(body):
    """The agent fixes (FIX), the test writer looks once and submits (no script), the judge says YES."""
    from fakes.openai_server import FakeReply

    turn = sum(m["role"] == "assistant" for m in body["messages"])
    if body["model"] == "fake-judge":
        return FakeReply("YES", prompt_tokens=1000, logprobs=[("YES", -0.05, [("YES", -0.05), ("NO", -3.0)])])
    script = FIX if body["model"] == "fake-agent" else ["THOUGHT: look\n\n```bash\nls\n```", FIX[2]]
    return FakeReply(script[min(turn, len(script) - 1)], prompt_tokens=1000)


def selection_run(tmp_path: Path, server, *overrides: str) -> RunConfig:
    """One task, 2 trajectories (3 calls each, reserving 0.05), 1 test writer (2 calls, reserving its
    config's cost limit, 1.0) and the judge (1 call a candidate, reserving 0.02): costs in cents."""
    return config(
        tmp_path,
        f"agent.model={priced(server, 'fake-agent')}",
        "workers=1",
        "selection.generated_tests=1",
        f"selection.test_writer={priced(server, 'fake-writer')}",
        f"selection.verifier={{model: {priced(server, 'fake-judge')}, cost_limit: 0.02}}",
        *("selection.regression=false", "selection.harvest=false", "selection.candidate_tests=false"),
        *overrides,
    )


class DyingExecutor:
    """The local executor, except that a test writer's worker dies: `before` times before the unit ran
    (nothing spent), then `after` times once it ran (its money spent), as a Ray node can."""

    in_process = True

    def __init__(self, before: int = 0, after: int = 0) -> None:
        from patchfleet.executor import LocalExecutor

        self.local, self.before, self.after = LocalExecutor(), before, after

    def run(self, fn, item):
        from patchfleet.errors import WorkerLost

        if getattr(fn, "__name__", "") != "write_test":
            return self.local.run(fn, item)
        if self.before:
            self.before -= 1
            raise WorkerLost("injected: the worker died before the unit started")
        result = fn(item)
        if self.after:
            self.after -= 1
            raise WorkerLost("injected: the worker died before the result came back")
        return result

    def map(self, fn, items, *, workers):
        return self.local.map(fn, items, workers=workers)

    def relay(self, callback):
        return callback

    def describe(self):
        return {"type": "dying"}

    def close(self):
        pass


def selection_services(tmp_path: Path, run: RunConfig, executor=None) -> Services:
    from patchfleet.executor import LocalExecutor
    from patchfleet.runs.wiring import pipeline_selector

    backend = HostBackend(Path(tempfile.mkdtemp(prefix="sandboxes-", dir=tmp_path)))  # one per run
    select = pipeline_selector(
        run, backend, Builder(), recipe, None, lambda line: None, executor or LocalExecutor()
    )  # type: ignore[arg-type]
    return Services(backend=backend, builder=Builder(), recipe=recipe, select=select)  # type: ignore[arg-type]


def booked(run: RunConfig, summary: dict) -> float:
    """The ledger's total, which must equal the summary's: every trajectory file and selection booking."""
    with Ledger(run.ledger_url()) as ledger:
        return ledger.total_cost(summary["run_id"])


def test_test_writers_and_judgements_spend_within_the_budget_and_resume_with_more(tmp_path, server):
    """A budget that allows the trajectories (2 x 0.05 reserved) and a judgement (0.02) but not a test
    writer (1.0): no writer call is made, the task is incomplete and says why, and every cost booked is in
    the summary, the ledger and the task's spend log. With more, the writer runs (the judgement comes from
    the verifier's cache) and its cost shows in the selection stage."""
    from patchfleet.runs.report import load_run

    server.respond_with(selection_responder)
    run = selection_run(tmp_path, server, "budget=0.5")
    summary = run_batch(run, tasks("a-1"), {}, selection_services(tmp_path, run))
    calls = Counter(r.body["model"] for r in server.requests)
    assert calls == {"fake-agent": 6, "fake-judge": 1}, calls  # the writer never started
    assert summary["task_status"] == {"incomplete": 1}
    out = run.outputs.dir
    status = json.loads((out / "a-1" / "task.json").read_text())
    assert "did not allow 1 selection unit" in status["budget"]
    assert summary["cost"] == pytest.approx(7 * CALL_USD) == booked(run, summary)
    assert status["costs"] == {"selection": pytest.approx(CALL_USD)}
    assert summary["cost"] <= 0.5

    more = selection_run(tmp_path, server, "budget=5")
    summary = run_batch(more, tasks("a-1"), {}, selection_services(tmp_path, more))
    calls = Counter(r.body["model"] for r in server.requests)
    assert calls == {"fake-agent": 6, "fake-judge": 1, "fake-writer": 2}, calls
    assert summary["task_status"] == {"done": 1}
    status = json.loads((out / "a-1" / "task.json").read_text())
    assert status["selection_costs"] == {
        "judge": pytest.approx(CALL_USD),
        "test_writer": pytest.approx(2 * CALL_USD),
    }
    assert summary["cost"] == pytest.approx(9 * CALL_USD) == booked(more, summary)
    stages = load_run(out).stages
    assert stages["selection"]["cost"] == pytest.approx(3 * CALL_USD)
    assert stages["trajectories"]["cost"] == pytest.approx(6 * CALL_USD)


def test_a_test_writer_whose_worker_died_books_what_it_spent_once(tmp_path, server):
    """A worker lost before the writer ran spent nothing and books nothing; one lost after it ran spent its
    two calls, kept in attempts/, and the run again spends them again: both are booked, nothing else."""
    server.respond_with(selection_responder)
    run = selection_run(tmp_path, server, "budget=5")
    summary = run_batch(
        run, tasks("a-1"), {}, selection_services(tmp_path, run, DyingExecutor(before=1, after=1))
    )
    calls = Counter(r.body["model"] for r in server.requests)
    assert calls == {"fake-agent": 6, "fake-judge": 1, "fake-writer": 4}, calls
    assert summary["task_status"] == {"done": 1}
    kept = [p.name for p in (run.outputs.dir / "test-writers").rglob("attempts/*.traj.json")]
    assert kept == ["0.1.traj.json"]
    status = json.loads((run.outputs.dir / "a-1" / "task.json").read_text())
    assert status["selection_costs"]["test_writer"] == pytest.approx(4 * CALL_USD)
    assert summary["cost"] == pytest.approx(11 * CALL_USD) == booked(run, summary)


def test_without_a_budget_what_selection_spends_is_in_the_run_cost(tmp_path, server):
    server.respond_with(selection_responder)
    run = selection_run(tmp_path, server)
    summary = run_batch(run, tasks("a-1"), {}, selection_services(tmp_path, run))
    assert summary["budget"] is None and summary["task_status"] == {"done": 1}
    assert summary["cost"] == pytest.approx(9 * CALL_USD) == booked(run, summary)


def test_a_budget_needs_a_cost_limit_per_judgement(tmp_path, server):
    run = selection_run(tmp_path, server, "budget=1", "selection.verifier.cost_limit=0")
    with pytest.raises(ConfigError, match="cost limit per judgement"):
        run_batch(run, tasks("a-1"), {}, selection_services(tmp_path, run))
