"""action.yml and the example workflow agree with the `patchfleet bot` command they drive."""

from __future__ import annotations

import re
from pathlib import Path

import typer
import yaml

from patchfleet.runs.cli import app

ROOT = Path(__file__).resolve().parents[3]


def _bot_options() -> set[str]:
    command = typer.main.get_command(app).commands["bot"]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def test_every_input_and_output_is_documented_and_wired():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    for name, spec in action["inputs"].items():
        assert spec.get("description"), name
    wanted = {
        "model",
        "samples",
        "policy",
        "budget",
        "trigger-label",
        "trigger-command",
        "branch-prefix",
        "draft",
        "llm-api-key",
        "llm-base-url",
        "github-token",
    }
    assert wanted <= set(action["inputs"])
    assert "do not trigger" in action["inputs"]["github-token"]["description"]
    (bot_step,) = [step for step in action["runs"]["steps"] if step.get("id") == "bot"]
    for name, spec in action["outputs"].items():
        assert spec["description"] and spec["value"] == f"${{{{ steps.bot.outputs.{name} }}}}"
    assert set(action["outputs"]) == {"pr-url", "branch", "cost", "outcome"}
    # every input reaches the step through the environment, never spliced into the script
    assert "${{" not in bot_step["run"]
    used = set(re.findall(r"inputs\.([\w-]+)", str(bot_step["env"])))
    assert used >= wanted
    # the script passes only options the command has
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", bot_step["run"]))
    assert flags and flags <= _bot_options(), flags - _bot_options()


def test_the_example_workflow_uses_the_actions_inputs_and_outputs():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    workflow = yaml.safe_load((ROOT / "examples" / "patchfleet-bot.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as true
    assert triggers == {"issues": {"types": ["labeled"]}, "issue_comment": {"types": ["created"]}}
    steps = workflow["jobs"]["fix"]["steps"]
    (uses,) = [step for step in steps if step.get("id") == "patchfleet"]
    assert set(uses["with"]) <= set(action["inputs"])
    outputs = set(re.findall(r"steps\.patchfleet\.outputs\.([\w-]+)", yaml.safe_dump(workflow)))
    assert outputs and outputs <= set(action["outputs"])
