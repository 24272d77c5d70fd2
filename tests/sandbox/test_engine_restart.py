"""The Docker engine restarted while a trajectory, a test run and an evaluation are in flight, on a private
second engine (tests/fakes/scratch_engine.py): the shared engine other runs use is never restarted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from fakes.scratch_engine import ScratchEngine

from patchfleet.agent import Agent, AgentConfig
from patchfleet.agent.loop import error_kind
from patchfleet.agent.scripted import ScriptedModel
from patchfleet.data.loaders import load_predictions, load_tasks
from patchfleet.data.recipes import Recipe
from patchfleet.data.sources import LocalCheckout
from patchfleet.errors import SandboxCrashed
from patchfleet.sandbox.base import Network, SandboxSpec

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(not ScratchEngine.available(), reason="a second dockerd needs root, dockerd and ip"),
]


@pytest.fixture(scope="module")
def scratch(base_image) -> Iterator[tuple[ScratchEngine, str]]:
    with ScratchEngine() as engine:
        engine.copy_image(base_image, changes=("ENV LANG=C.UTF-8",))
        yield engine, base_image


def test_engine_restart_mid_trajectory_and_mid_tests_is_infrastructure_and_leaks_nothing(scratch, tmp_path):
    from patchfleet.sandbox.docker import DockerBackend
    from patchfleet.sandbox.engine import connect

    engine, image = scratch
    backend = DockerBackend(connect(engine.url), reap_leaked=False)
    spec = SandboxSpec(image=image, labels={"role": "test"}, workdir="/tmp")
    agent_box, tests_box = backend.start(spec), backend.start(spec)
    model = ScriptedModel(
        [
            "THOUGHT: look\n\n```bash\necho first\n```",
            "THOUGHT: run the tests\n\n```bash\nsleep 60\n```",
            "THOUGHT: never\n\n```bash\necho never\n```",
        ]
    )
    agent = Agent(AgentConfig.load(), model, agent_box, trajectory_path=tmp_path / "t.traj.json")
    outcome: dict[str, object] = {}

    def run_tests() -> None:
        try:
            tests_box.exec("python3 -c 'import time; time.sleep(60)'; echo tests-done", timeout=120)
        except SandboxCrashed as exc:
            outcome["tests"] = exc

    tests = threading.Thread(target=run_tests)
    tests.start()
    restarter = threading.Timer(2.0, engine.restart)
    restarter.start()
    try:
        result = agent.run("the engine will restart")
        tests.join(60)
    finally:
        restarter.join()
        for box in (agent_box, tests_box):
            box.close()  # waits out the restart, then removes the stopped container

    assert result.exit_status == "SandboxCrashed"
    assert result.error is not None and result.error.kind == "infrastructure"
    assert model.stats.calls == 2  # the step in flight failed; nothing after it ran
    assert error_kind(outcome["tests"]) == "infrastructure"  # type: ignore[arg-type]
    assert engine.docker("ps", "-aq").stdout.strip() == b""  # nothing leaked
    with backend.start(spec) as again:  # the same backend works once the engine is back
        assert again.exec("echo back").output == "back\n"


HUNK = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,3 +1,3 @@\n def add(a, b):\n"
GOLD = HUNK + "-    return a - b\n+    return a + b\n \n"
TEST_PATCH = (
    "diff --git a/test_hidden.py b/test_hidden.py\nnew file mode 100644\n"
    "--- /dev/null\n+++ b/test_hidden.py\n"
    "@@ -0,0 +1,4 @@\n+from calc import add\n+\n+def test_add():\n+    assert add(2, 3) == 5\n"
)


def test_engine_restart_mid_evaluation_is_an_error_not_unresolved(scratch, sample_repo, run_git, tmp_path):
    from patchfleet.runs.evaluation import Evaluator, instance_dir
    from patchfleet.sandbox.docker import DockerBackend
    from patchfleet.sandbox.engine import connect

    engine, _ = scratch
    row = {
        "instance_id": "local__calc-1",
        "repo": "local/calc",
        "base_commit": run_git(sample_repo, "rev-parse", "HEAD").strip(),
        "version": "0.1",
        "problem_statement": "add() subtracts",
        "patch": GOLD,
        "test_patch": TEST_PATCH,
        "FAIL_TO_PASS": json.dumps(["test_hidden.py::test_add"]),
        "PASS_TO_PASS": "[]",
    }
    (tmp_path / "ds.jsonl").write_text(json.dumps(row) + "\n")
    loaded = load_tasks(tmp_path / "ds.jsonl")
    gold, _ = load_predictions("gold", gold_from=loaded)
    recipe = Recipe(
        repo="local/calc",
        version="0.1",
        distro="bookworm",
        python="3.11",
        env_steps=(),
        env_vars=(),
        instance_steps=(),
        test_cmd="sleep 60; python3 -m pytest -rA",  # the engine restarts during the "tests"
        parser="parse_log_pytest",
    )
    backend = DockerBackend(connect(engine.url), reap_leaked=False)
    out = tmp_path / "eval"
    evaluator = Evaluator(
        backend,
        LocalCheckout(path=sample_repo),
        out,
        recipes=lambda task: recipe,
        allow_pull=False,
        network=Network.NONE,
        reinstall=False,
        test_timeout=300,
    )
    script = instance_dir(out, evaluator.run_id, "gold", "local__calc-1") / "eval.sh"

    def restart_once_the_tests_run() -> None:
        deadline = time.monotonic() + 120
        while not script.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        engine.restart()

    restarter = threading.Thread(target=restart_once_the_tests_run)
    restarter.start()
    try:
        spec, prediction = loaded.eval_specs["local__calc-1"], gold["local__calc-1"]
        outcome = evaluator.evaluate(loaded.tasks[0], spec, prediction)
    finally:
        restarter.join()
    assert not outcome.resolved and outcome.report is None  # no verdict: not "unresolved"
    assert outcome.error is not None and outcome.error.startswith("SandboxCrashed"), outcome.error
    assert engine.docker("ps", "-aq").stdout.strip() == b""
