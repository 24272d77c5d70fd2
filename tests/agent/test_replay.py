"""ReplayModel re-issues the assistant turns of real mini-swe-agent trajectories through our loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.null_sandbox import NullSandbox

from patchfleet.agent import Agent, ReplayModel, ReplayModelConfig, ScriptedModel, read_trajectory
from patchfleet.agent.config import SUBMIT_COMMAND, SUBMIT_SENTINEL
from patchfleet.errors import ReplayExhausted

TRAJECTORIES = Path(__file__).resolve().parents[3] / "shared/data/trajectories/mini-swe-agent-gemini-3-pro"
DATA_MISSING = not TRAJECTORIES.is_dir()


def needs_data(test):
    """Skip when ../shared/data is absent (and only then mark the test `realdata`)."""
    test = pytest.mark.skipif(DATA_MISSING, reason=f"{TRAJECTORIES} is missing")(test)
    return pytest.mark.realdata(test) if DATA_MISSING else test


def shell(command: str) -> str:
    """What a command prints in the null sandbox: the sentinel when it echoes it (mini's rule)."""
    return f"{SUBMIT_SENTINEL}\n" if f"echo {SUBMIT_SENTINEL}" in command else "ok\n"


@needs_data
@pytest.mark.parametrize(
    "instance",
    [
        "psf__requests-1766",  # short and clean
        "sphinx-doc__sphinx-8595",  # submits with `rm -rf reproduction` before the sentinel
        "mwaskom__seaborn-3187",  # contains malformed replies the recording answered with format errors
    ],
)
def test_replays_a_real_trajectory_to_its_submission(instance: str, agent_config, tmp_path: Path) -> None:
    source = TRAJECTORIES / f"{instance}.traj.json"
    recorded = json.loads(source.read_text())
    assistant = [m["content"] for m in recorded["messages"] if m["role"] == "assistant"]
    model = ReplayModelConfig(path=source).build()
    sandbox = NullSandbox(output=shell, patch=recorded["info"]["submission"])
    traj = tmp_path / "replayed.traj.json"
    config = agent_config("limits.step_limit=0", "limits.cost_limit=0", "limits.format_error_limit=0")

    result = Agent(config, model, sandbox, trajectory_path=traj).run(recorded["messages"][1]["content"])

    assert result.exit_status == "Submitted", result.error
    assert result.submission == recorded["info"]["submission"]
    assert model.remaining == 0 and model.stats.calls == len(assistant)
    # recorded usage and costs come back, so budgets behave as they did in the recording
    assert model.stats.cost == pytest.approx(recorded["info"]["model_stats"]["instance_cost"])
    replayed = read_trajectory(traj)
    assert [m["content"] for m in replayed["messages"] if m["role"] == "assistant"] == assistant


@needs_data
def test_running_out_of_recording_is_a_clear_error(agent_config) -> None:
    full = ReplayModel.from_file(TRAJECTORIES / "psf__requests-1766.traj.json")
    short = ReplayModel([full.query([]), full.query([])], source="psf__requests-1766.traj.json")
    result = Agent(agent_config(), short, NullSandbox()).run("x")
    assert result.exit_status == "ReplayExhausted" and result.error is not None
    assert result.error.kind == "agent" and "2 assistant turns" in result.error.message
    with pytest.raises(ReplayExhausted):
        short.query([])


def test_replays_our_own_format(sandbox, agent_config, tmp_path: Path) -> None:
    script = ["```bash\nsed -i 's/a - b/a + b/' calc.py\n```", f"```bash\n{SUBMIT_COMMAND}\n```"]
    first = tmp_path / "first.json"
    Agent(agent_config(), ScriptedModel(script, cost_per_call=0.5), sandbox, trajectory_path=first).run("x")
    sandbox.reset()
    replay = ReplayModel.from_file(first)
    result = Agent(agent_config(), replay, sandbox).run("x")
    assert result.submitted and "a + b" in result.submission and replay.stats.cost == 1.0
