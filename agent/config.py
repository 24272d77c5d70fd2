"""Agent configuration: limits, prompt templates, and the model as a union tagged by `type`.

Each model config has a `build()` factory that imports its implementation lazily, so loading a
config never imports litellm. `AgentConfig.load` merges the shipped `config/default.yaml`, an optional
user file and dotted overrides (`limits.step_limit=50`, values parsed as YAML).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from patchfleet.agent.pricing import PricingConfig
from patchfleet.errors import ConfigError

if TYPE_CHECKING:
    from patchfleet.agent.litellm_model import LitellmModel
    from patchfleet.agent.model import Limiter
    from patchfleet.agent.replay import ReplayModel
    from patchfleet.agent.scripted import ScriptedModel

SUBMIT_SENTINEL = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
SUBMIT_COMMAND = f"echo {SUBMIT_SENTINEL}"


class RetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(6, ge=1)  # including the first
    initial_wait: float = 1.0  # seconds; exponential with jitter when no Retry-After is given
    max_wait: float = 60.0
    max_retry_after: float = 120.0  # cap on what a provider may ask us to wait


class LitellmModelConfig(BaseModel):
    """Any litellm model string: openai/..., anthropic/..., hosted_vllm/... (with api_base), ollama/..."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["litellm"] = "litellm"
    model: str
    api_base: str | None = None
    api_key: SecretStr | None = None  # None: the provider's usual environment variable
    temperature: float | None = None
    top_p: float | None = None
    # max output tokens a call; None: DEFAULT_MAX_TOKENS (8192, or the model's maximum when litellm's map
    # says less) unless pricing.mode=free, so that a priced call's cost is bounded before it is made
    max_tokens: int | None = Field(None, ge=1)
    timeout: float = 300.0  # seconds per HTTP request
    logprobs: bool = False
    top_logprobs: int | None = None
    prompt_caching: Literal["auto", "on", "off"] = "auto"  # auto: cache_control marks for Claude models
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    extra_params: dict[str, Any] = Field(default_factory=dict)  # passed through to litellm.completion
    # How litellm sends `openai/...` requests. "litellm_http": its own httpx handler. "openai_sdk": through
    # the OpenAI SDK, whose request validation walks every message of every call (16 ms of CPU a call at
    # 84 messages against 2.5 ms, benchmarks/agent_overhead.py), under the GIL that all trajectories share.
    # Process-wide (litellm reads it from the environment); EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER wins.
    openai_client: Literal["litellm_http", "openai_sdk"] = "litellm_http"

    def build(self, limiter: Limiter | None = None) -> LitellmModel:
        from patchfleet.agent.litellm_model import LitellmModel

        return LitellmModel(self, limiter=limiter)


class ReplayModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["replay"] = "replay"
    path: Path
    with_cost: bool = True  # report the recorded costs, so that cost limits replay faithfully

    def build(self, limiter: Limiter | None = None) -> ReplayModel:
        from patchfleet.agent.replay import ReplayModel

        return ReplayModel.from_file(self.path, with_cost=self.with_cost, limiter=limiter)


class ScriptedModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["scripted"] = "scripted"
    replies: list[str]
    cost_per_call: float = 0.0

    def build(self, limiter: Limiter | None = None) -> ScriptedModel:
        from patchfleet.agent.scripted import ScriptedModel

        return ScriptedModel(self.replies, cost_per_call=self.cost_per_call, limiter=limiter)


ModelConfig = Annotated[
    LitellmModelConfig | ReplayModelConfig | ScriptedModelConfig, Field(discriminator="type")
]


class Limits(BaseModel):
    """Per-trajectory limits; 0 disables a limit."""

    model_config = ConfigDict(extra="forbid")

    step_limit: int = Field(150, ge=0)
    cost_limit: float = Field(3.0, ge=0)
    wall_time_limit: float = Field(3600.0, ge=0)
    format_error_limit: int = Field(3, ge=0)


class Templates(BaseModel):
    """Jinja2 templates (StrictUndefined: a misspelt variable is an error, not an empty string)."""

    model_config = ConfigDict(extra="forbid")

    system: str
    instance: str
    observation: str
    format_error: str


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limits: Limits = Field(default_factory=Limits)
    templates: Templates
    command_timeout: float = 120.0
    observation_max_chars: int = 10_000
    action_mode: Literal["text", "tool"] = "text"
    patch_exclude: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    scratch_dir: str = "/tmp"  # where the prompt asks for reproduction scripts
    extra_instructions: str = ""  # appended to the instance prompt (prompt variants)
    model: ModelConfig | None = None  # what `parallel` and the CLI build; `Agent` takes a Model

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        overrides: Sequence[str] = (),
        *,
        base: dict[str, Any] | None = None,
        label: str = "agent config",
    ) -> AgentConfig:
        """`base` (default: the shipped default.yaml) <- the user's file <- dotted overrides."""
        data = base if base is not None else default_config_data()
        if path is not None:
            try:
                user = yaml.safe_load(Path(path).read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read agent config {path}: {exc}") from exc
            data = deep_merge(data, user.get("agent", user))
        for override in overrides:
            apply_override(data, override)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid {label}: {exc}") from exc


def default_config_data() -> dict[str, Any]:
    text = resources.files("patchfleet.agent").joinpath("config/default.yaml").read_text()
    return yaml.safe_load(text)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_override(data: dict[str, Any], override: str) -> None:
    """`a.b.c=value` sets data["a"]["b"]["c"] (value parsed as YAML, so numbers stay numbers)."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form dotted.key=value")
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    try:
        node[leaf] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:  # a typo on the command line is a one-line error, not a traceback
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"override {key.strip()}: its value is not valid YAML ({problem})") from exc
