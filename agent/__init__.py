"""One trajectory: the model wrapper (litellm), prompts, the step loop, trajectory files, and N at once.

Importing this package never imports litellm; `LitellmModel` does so at its first call.
"""

from patchfleet.agent.config import (
    AgentConfig,
    Limits,
    LitellmModelConfig,
    ModelConfig,
    ReplayModelConfig,
    RetryConfig,
    ScriptedModelConfig,
    Templates,
)
from patchfleet.agent.litellm_model import LitellmModel
from patchfleet.agent.loop import Agent, AgentResult, ErrorInfo
from patchfleet.agent.model import Model, ModelStats, Reply, TokenLogprob, ToolCall
from patchfleet.agent.parallel import (
    ParallelConfig,
    PromptVariant,
    TrajectoryOutcome,
    TrajectorySpec,
    plan,
    run_parallel,
)
from patchfleet.agent.pricing import PricingConfig
from patchfleet.agent.replay import ReplayModel
from patchfleet.agent.scripted import ScriptedModel
from patchfleet.agent.trajectory import read_trajectory

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentResult",
    "ErrorInfo",
    "Limits",
    "LitellmModel",
    "LitellmModelConfig",
    "Model",
    "ModelConfig",
    "ModelStats",
    "ParallelConfig",
    "PricingConfig",
    "PromptVariant",
    "ReplayModel",
    "ReplayModelConfig",
    "Reply",
    "RetryConfig",
    "ScriptedModel",
    "ScriptedModelConfig",
    "Templates",
    "TokenLogprob",
    "ToolCall",
    "TrajectoryOutcome",
    "TrajectorySpec",
    "plan",
    "read_trajectory",
    "run_parallel",
]
