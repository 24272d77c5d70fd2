"""`patchfleet trajectories` as a user runs it: a dataset row for a local git repository, a scripted provider
behind the real litellm client, real Docker sandboxes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes.openai_server import FakeOpenAIServer, FakeReply, bash_reply
from typer.testing import CliRunner

from patchfleet.agent import read_trajectory
from patchfleet.agent.config import SUBMIT_COMMAND
from patchfleet.runs.cli import app

# The recipe of test_evaluation's eval command test: the same task gets the same (content-hashed) images.
SPECS = {
    "local/calc": {"0.1": {"python": "3.11", "pip_packages": ["pytest==8.3.3"], "test_cmd": "pytest -rA"}}
}
CHECK = "python3 -c 'from calc import add; assert add(2, 3) == 5'"


def fixer(body: dict[str, Any]) -> FakeReply:
    """Stateless (the turn number picks the reply), so one server drives trajectories running at once."""
    turn = sum(m["role"] == "assistant" for m in body["messages"])
    script = [CHECK, f"sed -i 's/a - b/a + b/' calc.py && {CHECK}", f"{SUBMIT_COMMAND} && git diff"]
    return bash_reply(script[min(turn, len(script) - 1)])


@pytest.fixture
def dataset(tmp_path: Path, sample_repo: Path, run_git) -> Path:
    row = {
        "instance_id": "local__calc-1",
        "repo": "local/calc",
        "base_commit": run_git(sample_repo, "rev-parse", "HEAD").strip(),
        "version": "0.1",
        "problem_statement": "add() subtracts",
    }
    # first in the file, a task whose image cannot be made (no recipe for its version)
    unbuildable = {**row, "instance_id": "local__calc-2", "version": "9.9"}
    path = tmp_path / "dataset.jsonl"
    path.write_text(json.dumps(unbuildable) + "\n" + json.dumps(row) + "\n")
    return path


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["trajectories", *args], env={"COLUMNS": "200", **(env or {})})


@pytest.mark.docker
def test_two_trajectories_fix_the_bug_and_a_task_without_image_fails_alone(
    dataset, sample_repo, base_image, server: FakeOpenAIServer, tmp_path, run_git
):
    server.respond_with(fixer)
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps(SPECS))
    config = tmp_path / "agent.yaml"
    config.write_text("model:\n  pricing: {mode: override, input_per_mtok: 1.0, output_per_mtok: 2.0}\n")
    out = tmp_path / "out"
    result = invoke(
        *("--dataset", str(dataset), "--instance-ids", "local__calc-1", "--instance-ids", "local__calc-2"),
        *("--local", str(sample_repo)),
        *("--recipes", str(specs), "--no-pull", "--config", str(config), "--n", "2"),
        *("--model", "openai/fake-model", "--api-base", server.base_url, "--api-key-env", "FAKE_KEY"),
        *("--set", "limits.step_limit=10", "--set", f"scratch_dir={tmp_path}"),
        *(
            "--temperatures",
            "0.0,0.7",
            "--start-spread",
            "0.2",
            "--max-llm-calls",
            "1",
            "--max-sandboxes",
            "2",
            "--out",
            str(out),
        ),
        env={"FAKE_KEY": "dummy"},
    )
    assert result.exit_code == 0, result.output
    assert "2 / 4 trajectories submitted over 2 task(s)" in result.output

    # the task without an image fails its own trajectories, each saying why, and no other task's
    failed = json.loads((out / "local__calc-2" / "outcomes.json").read_text())["trajectories"]
    assert [(r["exit_status"], r["error"]["kind"], r["trajectory"]) for r in failed] == [
        ("ConfigError", "config", None)
    ] * 2
    assert "no environment recipe for local/calc 9.9" in failed[0]["error"]["message"]

    rows = json.loads((out / "local__calc-1" / "outcomes.json").read_text())["trajectories"]
    assert [r["index"] for r in rows] == [0, 1] and [r["temperature"] for r in rows] == [0.0, 0.7]
    assert [r["exit_status"] for r in rows] == ["Submitted"] * 2 and not any(r["error"] for r in rows)
    assert all(r["steps"] == 3 and r["cost"] > 0 and r["model"] == "openai/fake-model" for r in rows)
    assert {request.body.get("temperature") for request in server.requests} == {0.0, 0.7}
    for r in rows:
        info = read_trajectory(out / "local__calc-1" / f"{r['index']}.traj.json")["info"]
        assert info["exit_status"] == "Submitted" and info["submission"] == r["patch"]
        assert info["temperature"] == r["temperature"]
        assert "dummy" not in json.dumps(info["config"])  # the key is a secret, never written out
        # the patch fixes the bug in a fresh checkout of the base commit
        checkout = tmp_path / f"check-{r['index']}"
        run_git(tmp_path, "clone", "-q", str(sample_repo), str(checkout))
        subprocess.run(["git", "apply"], cwd=checkout, input=r["patch"], text=True, check=True)
        fixed = subprocess.run(
            [sys.executable, "-c", "from calc import add; print(add(2, 3))"],
            cwd=checkout,
            capture_output=True,
            text=True,
        )
        assert fixed.stdout == "5\n", fixed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--instance-ids", "local__calc-9", "--model", "openai/x"], "unknown or invalid instance id"),
        (["--instance-ids", "local__calc-1", "--config", "nope.yaml"], "cannot read agent config nope.yaml"),
        (["--instance-ids", "local__calc-1"], "no model configured"),
        (["--instance-ids", "local__calc-1", "--model", "openai/unpriced-x"], "has no price"),
    ],
)
def test_bad_input_fails_before_any_sandbox_with_a_clear_message(dataset, tmp_path, args, message):
    result = invoke("--dataset", str(dataset), "--out", str(tmp_path / "out"), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()
