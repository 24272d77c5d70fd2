"""action.yml and the example workflow agree with the `patchfleet bot` command they drive."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
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


def _run_step(tmp_path: Path, inputs: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Run the action's bot step in bash with its inputs, a stub `patchfleet` recording what it got."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    (bot_step,) = [step for step in action["runs"]["steps"] if step.get("id") == "bot"]
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    for name, template in bot_step["env"].items():
        match = re.fullmatch(r"\$\{\{ inputs\.([\w-]+) \}\}", str(template))
        if match:
            spec = action["inputs"][match.group(1)]
            env[name] = inputs.get(match.group(1), str(spec.get("default", "")))
        else:
            env[name] = str(template)
    record = tmp_path / "record.json"
    stub = tmp_path / "patchfleet"
    stub.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(record)!r}, 'w'))\n"
    )
    stub.chmod(0o755)
    subprocess.run(["bash", "-c", bot_step["run"]], env=env, check=True)
    recorded = json.loads(record.read_text())
    return recorded["argv"], recorded["env"]


def test_the_step_turns_inputs_into_options_and_the_key_into_its_variable(tmp_path):
    argv, env = _run_step(
        tmp_path,
        {
            "model": "anthropic/claude-x",
            "llm-api-key": "sk-secret-123456789",
            "llm-api-key-env": "ANTHROPIC_API_KEY",
            "draft": "false",
            "budget": "5",
            "llm-base-url": "http://127.0.0.1:8000/v1",
            "github-token": "ghs_x",
        },
    )
    assert argv[0] == "bot" and "--ready" in argv and "--draft" not in argv
    assert argv[argv.index("--model") + 1] == "anthropic/claude-x" and argv[argv.index("--budget") + 1] == "5"
    assert argv[argv.index("--api-base") + 1] == "http://127.0.0.1:8000/v1" and "--policy" not in argv
    assert argv[argv.index("--token-env") + 1] == "PATCHFLEET_GITHUB_TOKEN"
    assert env["ANTHROPIC_API_KEY"] == "sk-secret-123456789" and "PATCHFLEET_LLM_KEY" not in env
    assert env["PATCHFLEET_GITHUB_TOKEN"] == "ghs_x"
    assert not any("sk-secret" in arg or "ghs_x" in arg for arg in argv)  # secrets never on a command line


def test_the_step_defaults_to_a_draft_and_refuses_a_bad_key_variable_name(tmp_path):
    argv, _ = _run_step(tmp_path, {"model": "openai/gpt-x"})
    assert "--draft" in argv and "--budget" not in argv and "--api-base" not in argv
    with pytest.raises(subprocess.CalledProcessError):
        _run_step(tmp_path, {"model": "m", "llm-api-key": "k", "llm-api-key-env": "PATH; rm -rf /"})
