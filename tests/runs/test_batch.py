"""`patchfleet batch` as a user runs it, in a subprocess: three tasks on a small real repository, real Docker
sandboxes, the real litellm client against a scripted server, another system's predictions in the pool,
and `--evaluate`. Killed with SIGKILL while trajectories run, the same command resumes to the right
predictions; the server's log shows that no finished trajectory ran twice and only the killed ones ran
again; a third run does nothing at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fakes.openai_server import FakeOpenAIServer, FakeReply, bash_reply
from fakes.ray_cluster import ray_head
from fakes.started import container_starts

from patchfleet.agent.config import SUBMIT_COMMAND
from patchfleet.runs.ledger import Ledger

pytestmark = pytest.mark.docker

# the recipe of test_trajectories and test_evaluation: the same environment layer is reused
SPECS = {
    "local/calc": {"0.1": {"python": "3.11", "pip_packages": ["pytest==8.3.3"], "test_cmd": "pytest -rA"}}
}
CALC = (
    "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a + b\n\n\ndef neg(a):\n    return a\n"
)
HIDDEN = (
    "from calc import add, mul, neg\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_mul():\n    assert mul(2, 3) == 6\n\n\ndef test_neg():\n    assert neg(2) == -2\n"
)
TASKS = {  # instance -> (problem statement, the agent's fix, the hidden test that must flip)
    "local__tri-1": ("add() subtracts", "sed -i '2s/a - b/a + b/' calc.py", "test_add"),
    "local__tri-2": ("mul() adds", "sed -i '6s/a + b/a * b/' calc.py", "test_mul"),
    "local__tri-3": ("neg() returns its argument", "sed -i '10s/return a/return -a/' calc.py", "test_neg"),
}
SLOW_EXTRA_TURNS = 4  # the trajectories at temperature 1 look around before fixing: killed mid-way


def statement_of(body: dict[str, Any]) -> str:
    first_user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return next(s for s, _, _ in TASKS.values() if s in first_user)


def responder(body: dict[str, Any]) -> FakeReply:
    """Stateless: the task comes from the prompt, the turn from the conversation, the pace from the
    temperature (0: fix at once, 1: a few extra looks first)."""
    fix = next(f for s, f, _ in TASKS.values() if s == statement_of(body))
    turn = sum(m["role"] == "assistant" for m in body["messages"])
    extra = SLOW_EXTRA_TURNS if body.get("temperature") == 1.0 else 0
    script = ["cat calc.py"] + ["ls -la"] * extra + [fix, f"{SUBMIT_COMMAND} && git diff"]
    return bash_reply(script[min(turn, len(script) - 1)], latency=0.15)


@pytest.fixture
def project(tmp_path: Path, run_git) -> dict[str, Path]:
    repo = tmp_path / "tri"
    repo.mkdir()
    (repo / "calc.py").write_text(CALC)
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "add", "-A")
    # a fixed date makes a fixed commit, whose content-hashed image layers the next test run reuses
    date = {"GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z"}
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "three bugs"],
        cwd=repo,
        env={**os.environ, **date},
        check=True,
        capture_output=True,
    )
    head = run_git(repo, "rev-parse", "HEAD").strip()
    test_patch = (
        "diff --git a/test_hidden.py b/test_hidden.py\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/test_hidden.py\n"
        f"@@ -0,0 +1,{len(HIDDEN.splitlines())} @@\n" + "".join(f"+{line}\n" for line in HIDDEN.splitlines())
    )
    rows = [
        {
            "instance_id": instance_id,
            "repo": "local/calc",
            "base_commit": head,
            "version": "0.1",
            "problem_statement": statement,
            "test_patch": test_patch,
            "FAIL_TO_PASS": json.dumps([f"test_hidden.py::{test}"]),
            "PASS_TO_PASS": "[]",
        }
        for instance_id, (statement, _, test) in TASKS.items()
    ]
    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # another system's (wrong) patch for the first task joins the pool
    (repo / "calc.py").write_text(CALC.replace("a - b", "a * b"))
    wrong = run_git(repo, "diff")
    run_git(repo, "checkout", "--", "calc.py")
    other = tmp_path / "other.jsonl"
    other.write_text(
        json.dumps({"instance_id": "local__tri-1", "model_patch": wrong, "model_name_or_path": "other"})
        + "\n"
    )
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps(SPECS))
    return {"repo": repo, "dataset": dataset, "other": other, "specs": specs, "out": tmp_path / "out"}


def command(project: dict[str, Path], server: FakeOpenAIServer) -> list[str]:
    return [
        *(sys.executable, "-c", "from patchfleet.runs.cli import app; app()", "batch"),
        *(
            "--dataset",
            str(project["dataset"]),
            "--local",
            str(project["repo"]),
            "--recipes",
            str(project["specs"]),
        ),
        *("--model", "openai/fake-model", "--api-base", server.base_url, "--api-key-env", "FAKE_KEY"),
        *("--samples", "2", "--temperatures", "0,1", "--workers", "3", "--budget", "5"),
        *(
            "--candidates",
            str(project["other"]),
            "--evaluate",
            "--no-pull",
            "--no-live",
            "--out",
            str(project["out"]),
        ),
        *("--set", "agent.model.pricing={mode: override, input_per_mtok: 1.0, output_per_mtok: 2.0}"),
        *("--set", "agent.limits.cost_limit=0.5", "--set", "agent.limits.step_limit=20"),
        *("--set", "eval_workers=3"),
    ]


def launch(cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "FAKE_KEY": "dummy", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "COLUMNS": "200"}
    with log.open("ab") as handle:
        return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def kill_when(process: subprocess.Popen, condition, log: Path, timeout: float = 240) -> None:
    """SIGKILL the whole process group as soon as `condition()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if condition():
                break
        except (OSError, ValueError):  # a file being replaced: look again
            pass
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before the kill:\n" + log.read_text()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def states(out: Path) -> dict[tuple[str, int], str]:
    found = {}
    for instance_id in TASKS:
        for path in (out / instance_id).glob("*.traj.json"):
            try:
                status = json.loads(path.read_text())["info"]["exit_status"]
            except (OSError, ValueError, KeyError):
                continue
            found[(instance_id, int(path.name.split(".")[0]))] = status
    return found


def starts(server: FakeOpenAIServer) -> Counter[tuple[str, int]]:
    """How many times each trajectory (task, index) started: its first model call has two messages."""
    ids = {s: i for i, (s, _, _) in TASKS.items()}
    return Counter(
        (ids[statement_of(r.body)], int(r.body["temperature"]))
        for r in server.requests
        if len(r.body["messages"]) == 2
    )


def test_batch_killed_during_trajectories_resumes_to_the_same_predictions(
    project, server, base_image, tmp_path
):
    server.respond_with(responder)
    cmd, out, log = command(project, server), project["out"], tmp_path / "batch.log"

    # 1. start, and kill -9 once some trajectory has finished and another is still running
    def mid_trajectories() -> bool:
        now = states(out).values()
        return "Submitted" in now and "Running" in now

    kill_when(launch(cmd, log), mid_trajectories, log)
    at_kill = states(out)
    finished = {key for key, s in at_kill.items() if s != "Running"}
    partial = {key for key, s in at_kill.items() if s == "Running"}
    assert finished and partial, at_kill
    calls_before = Counter(starts(server))

    # 2. the same command again; killed once more when every trajectory has ended and a task is selecting
    def selecting() -> bool:
        if list(states(out).values()).count("Submitted") < 6:
            return False
        return any(
            (json.loads(p.read_text()) if p.stat().st_size else {}).get("stage") == "selection"
            for p in out.glob("*/task.json")
        )

    kill_when(launch(cmd, log), selecting, log)

    # 3. and again: the run finishes
    assert launch(cmd, log).wait(timeout=240) == 0, log.read_text()[-4000:]
    ran = starts(server)
    assert set(ran) == {(i, t) for i in TASKS for t in (0, 1)}
    for key, times in ran.items():
        if key in finished:
            assert times == calls_before[key] == 1, f"{key} finished before the kill and ran again"
        else:  # killed mid-way (a file that says Running) or before its first step was saved: once more
            assert times == calls_before[key] + 1, f"{key}: {calls_before[key]} start(s), then {times}"

    # the right predictions, with the other system's wrong patch outvoted by our two trajectories
    preds = json.loads((out / "preds.json").read_text())
    assert sorted(preds) == sorted(TASKS)
    assert "+    return a + b" in preds["local__tri-1"]["model_patch"]
    assert "+    return a * b" in preds["local__tri-2"]["model_patch"]
    assert "+    return -a" in preds["local__tri-3"]["model_patch"]
    candidates = json.loads((out / "selection" / "local__tri-1" / "candidates.json").read_text())
    assert len(candidates) == 2 and {s["kind"] for c in candidates for s in c["sources"]} == {
        "trajectory",
        "predictions",
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trajectories"] == {"Submitted": 6}
    assert summary["earlier_attempts"] == {"Running": len(partial)}
    assert summary["evaluation"]["resolved_instances"] == 3, summary
    assert summary["cost"] <= 5
    with Ledger(f"sqlite:///{out / 'ledger.sqlite'}") as ledger:
        run_id = summary["run_id"]
        assert ledger.counts(run_id) == {"Submitted": 6}
        assert ledger.total_cost(run_id) == pytest.approx(summary["cost"])

    # 4. once more: nothing runs, nothing changes
    requests = len(server.requests)
    third = launch(cmd, log)
    assert third.wait(timeout=240) == 0, log.read_text()[-3000:]
    assert len(server.requests) == requests
    assert json.loads((out / "preds.json").read_text()) == preds
    assert calls_before  # the first run had started trajectories before it was killed

    # 5. carried to another folder (another machine) as an archive: the same command there runs nothing
    from patchfleet.runs.archive import export_run, import_run

    export_run(out, tmp_path / "run.tar.gz")
    moved = tmp_path / "moved"
    assert import_run(tmp_path / "run.tar.gz", moved).run_id == run_id
    elsewhere = [moved.as_posix() if arg == str(out) else arg for arg in cmd]
    assert launch(elsewhere, log).wait(timeout=240) == 0, log.read_text()[-3000:]
    assert len(server.requests) == requests
    assert json.loads((moved / "preds.json").read_text()) == preds
    assert json.loads((moved / "summary.json").read_text())["evaluation"]["resolved_instances"] == 3


@pytest.fixture(autouse=True)
def _remove_the_killed_runs_containers(docker_backend, project):
    """SIGKILL leaves the first run's sandboxes behind (a later start reaps them too)."""
    yield
    from patchfleet.sandbox import reaper

    run = json.loads((project["out"] / "run.json").read_text())["run_id"]
    reaper.prune(docker_backend.client, everything=False, run=run)


@pytest.fixture
def ray_cluster(tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    with ray_head(tmp_path / "ray.log") as address:
        yield address


def test_the_same_batch_on_a_local_ray_cluster(
    project, server, base_image, ray_cluster, docker_backend, tmp_path
):
    """Same predictions as the local executor, and every trajectory, regression discovery, selection test
    run and evaluation ran in a Ray worker: the engine's start events name the process that started each
    container. (Test writers and the verifier as units: test_ray_executor.py.)"""
    server.respond_with(responder)
    cmd, log = command(project, server), tmp_path / "batch.log"
    with container_starts(docker_backend.client) as started:
        driver = launch([*cmd, "--executor", "ray", "--ray-address", ray_cluster], log)
        assert driver.wait(timeout=420) == 0, log.read_text()[-4000:]
        time.sleep(1)  # the last start events on their way
    out = project["out"]
    preds = json.loads((out / "preds.json").read_text())
    assert "+    return a + b" in preds["local__tri-1"]["model_patch"]
    assert "+    return a * b" in preds["local__tri-2"]["model_patch"]
    assert "+    return -a" in preds["local__tri-3"]["model_patch"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trajectories"] == {"Submitted": 6} and summary["task_status"] == {"done": 3}
    assert summary["evaluation"]["resolved_instances"] == 3, summary
    assert sum(starts(server).values()) == 6
    text = log.read_text()
    assert "local__tri-2: trajectory 1 Submitted" in text  # outcomes reach the driver's log

    executor = summary["executor"]
    assert executor["type"] == "ray" and executor["pid"] == driver.pid
    units = executor["units"]
    assert units["run_trajectory_job"] == 6 and units["_evaluate_one"] == 3, executor
    assert units["_Runner.run_row"] >= 3 and units["discover_regression"] == 3, executor
    workers = {str(w["pid"]) for w in executor["workers"]}
    assert str(driver.pid) not in workers
    by_role: dict[str, list[str]] = {}  # this run's containers (the machine is shared): by who started them
    for labels in started:
        owner = labels["patchfleet.owner-pid"]
        if labels.get("patchfleet.task") in TASKS and owner in workers | {str(driver.pid)}:
            by_role.setdefault(labels.get("patchfleet.role", ""), []).append(owner)
    assert len(by_role.get("agent", [])) == 6, by_role
    # the 3 chosen predictions, then the other system's candidate for tri-1 (the rest: cached verdicts)
    assert len(by_role.get("eval", [])) == 4, by_role
    assert by_role.get("selection"), by_role  # at least one row per task
    assert len(by_role.get("regression", [])) == 3, by_role  # one discovery per task
    for role in ("agent", "selection", "eval", "regression"):  # each started in a Ray worker, not the driver
        assert set(by_role[role]) <= workers, (role, driver.pid, by_role)
