"""SIGKILL in the middle of a trajectory leaves a valid, readable trajectory file behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fakes.openai_server import FakeOpenAIServer, bash_reply

from patchfleet.agent import read_trajectory

TESTS_DIR = Path(__file__).resolve().parents[1]  # where `fakes` lives

CHILD = """
import sys
from pathlib import Path
from fakes.local_sandbox import LocalSandbox
from patchfleet.agent import Agent, AgentConfig, LitellmModelConfig

api_base, repo, traj, scratch = sys.argv[1:5]
config = AgentConfig.load(overrides=[f"scratch_dir={scratch}", "limits.step_limit=0"])
model = LitellmModelConfig(
    model="openai/fake-model", api_base=api_base, api_key="dummy",
    pricing={"mode": "override", "input_per_mtok": 1, "output_per_mtok": 2},
).build()
with LocalSandbox(Path(repo)) as sandbox:
    Agent(config, model, sandbox, trajectory_path=traj).run("runs until killed")
"""


def steps_in(path: Path) -> int:
    try:
        return len(json.loads(path.read_text())["info"]["steps"])
    except FileNotFoundError:
        return 0


def test_sigkill_mid_trajectory_leaves_valid_file(buggy_repo: Path, tmp_path: Path) -> None:
    traj = tmp_path / "killed.traj.json"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    with FakeOpenAIServer(lambda body: bash_reply("echo working && sleep 0.05"), latency=0.02) as server:
        child = subprocess.Popen(
            [sys.executable, str(script), server.base_url, str(buggy_repo), str(traj), str(tmp_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while steps_in(traj) < 4:  # every read in this loop must parse: the file is never partial
                assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
                assert time.monotonic() < deadline, "the child made no progress"
                time.sleep(0.02)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL

    document = read_trajectory(traj)
    info = document["info"]
    assert document["trajectory_format"] == "patchfleet-1"
    assert info["exit_status"] == "Running"  # killed, not finished: a resuming run can tell
    assert len(info["steps"]) >= 4
    assert document["messages"][0]["role"] == "system"
    assert info["model_stats"]["api_calls"] >= 4
