"""The Docker engine restarted while a trajectory and a test run are in flight, on a private second
engine (tests/fakes/scratch_engine.py): the shared engine other runs use is never restarted."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fakes.scratch_engine import ScratchEngine

from patchfleet.agent import Agent, AgentConfig
from patchfleet.agent.loop import error_kind
from patchfleet.agent.scripted import ScriptedModel
from patchfleet.errors import SandboxCrashed
from patchfleet.sandbox.base import SandboxSpec

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
