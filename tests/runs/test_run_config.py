"""RunConfig: YAML, then command-line shorthands, then `--set`, validated once; the sandbox settings reach
every SandboxSpec; secrets never reach the run folder; bad input is a one-line error before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patchfleet.errors import ConfigError
from patchfleet.runs.cli import app
from patchfleet.runs.config import AGENT_KEYS, RunConfig, with_api_key
from patchfleet.runs.eval_command import DEFAULTS as EVAL_DEFAULTS
from patchfleet.runs.eval_command import eval_shorthands
from patchfleet.runs.trajectories_command import trajectories_shorthands
from patchfleet.runs.wiring import batch_shorthands
from patchfleet.sandbox.base import Network


def test_yaml_then_flags_then_set(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "parallel: {n: 3, temperatures: [0.0, 0.5]}\n"
        "agent: {limits: {step_limit: 40}}\n"
        "sandbox: {network: bridge, cpus: 2, memory: 8g}\n"
        "budget: 20\n"
    )
    flags = batch_shorthands(samples=5, model="openai/1e3", workers=4, candidates=[tmp_path / "c.jsonl"])
    config = RunConfig.load(path, ["parallel.n=7", "selection.policy=r2e"], flags)
    assert config.parallel.n == 7  # --set wins over the flag, the flag over the file
    assert config.parallel.temperatures == [0.0, 0.5]  # untouched keys of the file stay
    assert config.agent.limits.step_limit == 40 and config.agent.templates.system  # merged with defaults
    assert config.agent.model is not None and config.agent.model.model == "openai/1e3"  # still a string
    assert (config.workers, config.budget, config.selection.policy) == (4, 20.0, "r2e")
    assert config.data.candidates == [tmp_path / "c.jsonl"]
    spec = config.sandbox.spec("img:1", {"role": "agent"})
    assert (spec.network, spec.cpus, spec.memory, spec.labels) == (
        Network.BRIDGE,
        2.0,
        "8g",
        {"role": "agent"},
    )
    assert config.ledger_url().startswith("sqlite:///") and config.ledger_url().endswith(
        "out/batch/ledger.sqlite"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["nope=1"], "Extra inputs are not permitted"),
        (["workers=0"], "workers"),
        (["executor=slurm"], "executor"),
        (["parallel"], "not of the form dotted.key=value"),
    ],
)
def test_bad_keys_and_values_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.load(None, overrides)


def test_the_api_key_comes_from_the_environment_and_is_never_written(monkeypatch):
    monkeypatch.setenv("RUN_CONFIG_TEST_KEY", "sk-secret-123")
    config = with_api_key(
        RunConfig.load(None, shorthands=batch_shorthands(models=["openai/a", "openai/b"], model="openai/c")),
        "RUN_CONFIG_TEST_KEY",
    )
    assert config.agent.model.api_key.get_secret_value() == "sk-secret-123"
    assert [m.api_key.get_secret_value() for m in config.parallel.models] == ["sk-secret-123"] * 2
    assert "sk-secret-123" not in json.dumps(config.public())
    with pytest.raises(ConfigError, match="RUN_CONFIG_UNSET is not set"):
        with_api_key(config, "RUN_CONFIG_UNSET")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no dataset"),
        (["--dataset", "{dataset}", "--instance-ids", "x__y-1", "x__y-9"], "unknown or invalid instance id"),
        (["--dataset", "{dataset}", "--executor", "ray", "--ray-address", "127.0.0.1:1"], "Ray cluster"),
        (["--dataset", "{dataset}", "--set", "selection.policy=best"], "unknown selection policy"),
        (["--dataset", "{dataset}", "--model", "openai/unpriced-x"], "has no price"),
        (["--dataset", "{dataset}", "--temperatures", "hot"], "--temperatures"),
    ],
)
def test_batch_fails_before_any_work_with_one_line(tmp_path, args, message):
    dataset = tmp_path / "d.jsonl"
    row = {
        "instance_id": "x__y-1",
        "repo": "x/y",
        "base_commit": "a" * 40,
        "problem_statement": "p",
        "version": "1",
    }
    dataset.write_text(json.dumps(row) + "\n")
    out = tmp_path / "out"
    argv = ["batch", "--out", str(out), *[a.replace("{dataset}", str(dataset)) for a in args]]
    result = CliRunner().invoke(app, argv, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (out / "run.json").exists()


def test_candidates_and_models_take_several_values_after_one_flag(tmp_path):
    dataset = tmp_path / "d.jsonl"
    row = {"instance_id": "x__y-1", "repo": "x/y", "base_commit": "a" * 40, "problem_statement": "p"}
    dataset.write_text(json.dumps({**row, "version": "1"}) + "\n")
    present = tmp_path / "present.jsonl"
    present.write_text("")
    argv = [
        *("batch", "--dataset", str(dataset), "--out", str(tmp_path / "out")),
        *("--candidates", str(present), str(tmp_path / "missing.jsonl")),
        *("--models", "openai/gpt-4o", "openai/gpt-4o-mini", "--samples", "2"),
    ]
    result = CliRunner().invoke(app, argv, env={"COLUMNS": "300", "OPENAI_API_KEY": "dummy"})
    assert result.exit_code == 2, result.output
    assert f"--candidates {tmp_path / 'missing.jsonl'}: no such file" in result.output


def test_agent_config_keys_are_not_run_config_keys():
    # what lets `trajectories` read an agent config's top-level keys as the `agent` section
    assert AGENT_KEYS and not AGENT_KEYS & set(RunConfig.model_fields)


def test_eval_and_trajectories_flags_are_run_config_keys(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("outputs: {dir: runs/x}\neval_workers: 3\nworkers: 2\n")
    flags = eval_shorthands(
        **dict.fromkeys(("dataset", "instance_ids", "mirrors", "recipes", "images", "docker_host"))
        | {"workers": None, "layout": "{name}", "out": None, "run_id": "r", "network": "none", "pull": False}
    )
    config = RunConfig.load(path, ["eval_workers=4"], flags, defaults=EVAL_DEFAULTS)
    assert (config.outputs.dir, config.outputs.run_id, config.eval_workers) == (Path("runs/x"), "r", 4)
    assert (config.eval_network, config.sandbox.allow_pull) == (Network.NONE, False)
    assert config.data.layout == "{name}"
    assert RunConfig.load(None, [], flags, defaults=EVAL_DEFAULTS).outputs.dir == Path("out/eval")

    flags = trajectories_shorthands(
        **dict.fromkeys(("dataset", "api_base", "mirrors", "layout", "local", "recipes", "out", "pull"))
        | dict.fromkeys(("images", "docker_host", "max_llm_calls", "workers", "start_spread"))
        | {"instance_ids": ["a-1"], "n": 2, "model": "openai/m", "temperatures": "0,0.5", "max_sandboxes": 3}
    )
    # an agent config file and agent-relative --set keys, as the command took them before RunConfig
    agent = tmp_path / "agent.yaml"
    agent.write_text("limits: {step_limit: 9}\nworkers: 2\n")
    config = RunConfig.load(
        agent, ["model.pricing.mode=free", "scratch_dir=/s.d", "sandbox.cpus=2"], flags, agent_at_top=True
    )
    assert (config.agent.limits.step_limit, config.agent.scratch_dir, config.workers) == (9, "/s.d", 2)
    assert config.agent.model.model == "openai/m" and config.agent.model.pricing.mode == "free"
    assert (config.parallel.n, config.parallel.temperatures, config.max_sandboxes) == (2, [0.0, 0.5], 3)
    assert (config.data.instance_ids, config.sandbox.cpus) == (["a-1"], 2.0)
    with pytest.raises(ConfigError, match="Extra inputs"):  # elsewhere an agent key needs its section
        RunConfig.load(None, ["scratch_dir=/s"])


def test_the_evaluation_limits_are_run_config_keys_with_the_evaluators_defaults():
    import inspect

    from patchfleet.runs.evaluation import Evaluator

    params = inspect.signature(Evaluator).parameters
    defaults = RunConfig()
    assert (defaults.eval_cpus, defaults.eval_memory) == (2.0, "8g")
    assert (params["cpus"].default, params["memory"].default) == (2.0, "8g")
    config = RunConfig.load(None, ["eval_cpus=4", "eval_memory=null"])
    assert (config.eval_cpus, config.eval_memory) == (4.0, None)
    with pytest.raises(ConfigError, match="eval_cpus"):
        RunConfig.load(None, ["eval_cpus=0"])
