"""`RunConfig`: everything one run needs (data, sandbox, agent, parallelism, selection, outputs, budget,
executor, ledger) in one pydantic model, loaded from YAML with dotted `--set key=value` overrides.

Command-line flags are shorthands for its keys (`--samples 4` is `--set parallel.n=4`), applied before
`--set`, so a YAML file, a flag and an override all end up in the same place and are validated once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from patchfleet.agent.config import (
    AgentConfig,
    LitellmModelConfig,
    apply_override,
    deep_merge,
    default_config_data,
)
from patchfleet.agent.parallel import ParallelConfig
from patchfleet.errors import ConfigError
from patchfleet.sandbox.base import Network
from patchfleet.sandbox.config import DockerConfig
from patchfleet.selection.pipeline import SelectionConfig


class DataConfig(BaseModel):
    """Which tasks, where their repositories come from, and other systems' candidate patches."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = None  # SWE-bench rows: .jsonl, .json, .parquet or a HF dataset name
    instance_ids: list[str] = Field(default_factory=list)  # empty: every row of the dataset
    mirrors: Path | None = None  # folder of bare upstream mirrors
    layout: str = "{owner}/{name}.git"
    local: Path | None = None  # a local git checkout as the source of every task
    recipes: Path | None = None  # JSON specs {repo: {version: spec}} for more repos
    candidates: list[Path] = Field(default_factory=list)  # other systems' predictions files (ensembling)


class OutputsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: Path = Path("out/batch")
    run_id: str = "patchfleet"  # names the evaluation summary and the predictions' model_name_or_path


class RetryPolicy(BaseModel):
    """Infrastructure failures (sandbox starts, rate limits that outlived the model's own retries, a
    Docker restart) are retried this many times in all, with exponential waits; agent failures never."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(3, ge=1)
    initial_wait: float = Field(2.0, ge=0)
    max_wait: float = Field(60.0, ge=0)


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    sandbox: DockerConfig = Field(default_factory=DockerConfig)
    agent: AgentConfig = Field(default_factory=lambda: AgentConfig.model_validate(default_config_data()))
    parallel: ParallelConfig = Field(default_factory=lambda: ParallelConfig(n=4))
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    budget: float | None = Field(None, ge=0)  # USD over the whole run; None: unlimited
    workers: int = Field(1, ge=1)  # tasks at once
    max_llm_calls: int | None = Field(None, ge=1)  # model calls in flight at once, over all tasks
    max_sandboxes: int | None = Field(None, ge=1)  # live agent sandboxes at once, over all tasks
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    images: Literal["auto", "official", "local"] = "auto"  # official SWE-bench images where available
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    db: str | None = None  # SQLAlchemy URL of the ledger; None: SQLite in the output folder
    evaluate: bool = False  # evaluate the predictions with the hidden tests (benchmarks only)
    eval_workers: int = Field(1, ge=1)
    # the hidden tests' containers: bridge, as the harness (some suites need the network), or none
    eval_network: Network = Network.BRIDGE
    # and their limits (the tests of some repositories build extensions or run in parallel): CPUs and
    # memory in Docker's notation, None for none; the same for `eval` and for a batch's --evaluate
    eval_cpus: float | None = Field(2.0, gt=0)
    eval_memory: str | None = "8g"

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        overrides: Sequence[str] = (),
        shorthands: Mapping[str, Any] | None = None,
        *,
        defaults: Mapping[str, Any] | None = None,
        agent_at_top: bool = False,
        label: str = "run config",
    ) -> RunConfig:
        """Defaults <- the command's `defaults` (dotted keys, e.g. its own output folder) <- YAML file <-
        `shorthands` (flag values by dotted key; None means "not given") <- `overrides` (`key=value`,
        values parsed as YAML).

        `agent_at_top`: keys of the agent config at the top level of the file or of an override
        (`model`, `limits`, ...) are read as `agent.` keys, so an agent config file and agent-relative
        `--set` keys keep working where a command took those before (`patchfleet trajectories`)."""
        data: dict[str, Any] = {"agent": default_config_data()}
        for override in shorthand_overrides(defaults or {}):
            apply_override(data, override)
        if path is not None:
            try:
                user = yaml.safe_load(Path(path).read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read {label} {path}: {exc}") from exc
            if not isinstance(user, dict):
                raise ConfigError(f"{label} {path}: expected a mapping at the top level")
            data = deep_merge(data, lift_agent_keys(user) if agent_at_top else user)
        if agent_at_top:
            overrides = [lift_agent_override(override) for override in overrides]
        for override in [*shorthand_overrides(shorthands or {}), *overrides]:
            apply_override(data, override)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid run config: {validation_summary(exc)}") from exc

    def ledger_url(self) -> str:
        return self.db or f"sqlite:///{(self.outputs.dir / 'ledger.sqlite').resolve()}"

    def public(self) -> dict[str, Any]:
        """The config as written into the run folder: JSON, secrets masked (pydantic's SecretStr)."""
        return self.model_dump(mode="json")


def validation_summary(exc: ValidationError) -> str:
    """pydantic's report on one line (each problem as `dotted.key: message (got value)`), so that a bad
    value is one line of the CLI's `error:`, as every other input error is."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        got = error.get("input")
        shown = f" (got {got!r})" if isinstance(got, str | int | float) and len(repr(got)) <= 80 else ""
        problems.append(f"{where}: {error['msg']}{shown}")
    return "; ".join(problems)


# an agent config's top-level keys; none is also a RunConfig key (a test holds it), so moving them under
# `agent` is unambiguous
AGENT_KEYS = frozenset(AgentConfig.model_fields)


def lift_agent_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """`{model: ..., limits: ..., workers: 2}` -> `{agent: {model: ..., limits: ...}, workers: 2}`."""
    lifted = {key: value for key, value in data.items() if key not in AGENT_KEYS}
    agent = {key: value for key, value in data.items() if key in AGENT_KEYS}
    return deep_merge(lifted, {"agent": agent}) if agent else lifted


def lift_agent_override(override: str) -> str:
    """`model.pricing.mode=free` -> `agent.model.pricing.mode=free`; other keys unchanged."""
    return f"agent.{override}" if override.partition("=")[0].split(".")[0] in AGENT_KEYS else override


def shorthand_overrides(values: Mapping[str, Any]) -> list[str]:
    """`{"parallel.n": 4, "agent.model.model": "openai/x"}` -> `["parallel.n=4", ...]`, skipping None.

    Values are JSON-quoted: JSON is YAML, and a model name such as `1e3` or `yes` stays a string."""
    return [f"{key}={json.dumps(value, default=str)}" for key, value in values.items() if value is not None]


def model_shorthands(model: str | None, api_base: str | None, models: Sequence[str] = ()) -> dict[str, Any]:
    """`--model M [--api-base U]`: one litellm model; `--models A B`: several, cycled over trajectories."""
    keys: dict[str, Any] = {}
    if model:
        keys |= {"agent.model.type": "litellm", "agent.model.model": model}
    if api_base:
        keys["agent.model.api_base"] = api_base
    if models:
        keys["parallel.models"] = [
            {"type": "litellm", "model": m, **({"api_base": api_base} if api_base else {})} for m in models
        ]
    return keys


def with_api_key(config: RunConfig, env_name: str | None) -> RunConfig:
    """Read the API key of every litellm model from `env_name`; the key is a SecretStr, never written."""
    if not env_name:
        return config
    key = os.environ.get(env_name)
    if not key:
        raise ConfigError(f"--api-key-env: the environment variable {env_name} is not set")
    secret = SecretStr(key)

    def keyed(model: Any) -> Any:
        return (
            model.model_copy(update={"api_key": secret}) if isinstance(model, LitellmModelConfig) else model
        )

    agent = config.agent.model_copy(update={"model": keyed(config.agent.model)})
    parallel = config.parallel.model_copy(update={"models": [keyed(m) for m in config.parallel.models]})
    return config.model_copy(update={"agent": agent, "parallel": parallel})
