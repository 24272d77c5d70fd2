"""Checks of a model config that can fail before anything is built: the cheap questions whose answer
would otherwise come only after an image build and a sandbox start, as a failed trajectory.

Each check raises a one-line `ConfigError` naming the model (or file) and the fix.
"""

from __future__ import annotations

import os
from typing import Any

from patchfleet.agent.config import LitellmModelConfig, ReplayModelConfig
from patchfleet.agent.pricing import Pricer
from patchfleet.errors import ConfigError

# what litellm's `validate_environment` lists that is not a secret (ollama's OLLAMA_API_BASE has a default)
_SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def check_model(model: Any) -> None:
    """Fail fast on a model that no trajectory could use; models other than litellm/replay pass."""
    if isinstance(model, LitellmModelConfig):
        check_litellm(model)
    elif isinstance(model, ReplayModelConfig):
        check_replay(model)


def check_litellm(model: LitellmModelConfig) -> None:
    """litellm knows the provider, the price can be known, and the provider's API key is present."""
    import litellm

    litellm.suppress_debug_info = True  # else litellm prints a provider list to stdout on each failure
    try:
        _, provider, _, _ = litellm.get_llm_provider(model.model, api_base=model.api_base)
    except Exception as exc:  # litellm raises its BadRequestError (and others) for unknown providers
        raise ConfigError(
            f"model {model.model!r}: litellm does not know its provider; write it as provider/name, "
            "e.g. openai/gpt-4o, anthropic/claude-sonnet-4-5, hosted_vllm/<name> with --api-base"
        ) from exc
    Pricer(model.model, model.pricing).check()
    if model.api_key is not None or model.api_base:
        return  # an explicit key, or a self-hosted endpoint that may need none
    missing = litellm.validate_environment(model=model.model).get("missing_keys") or []
    secrets = [name for name in missing if any(marker in name for marker in _SECRET_MARKERS)]
    unset = [name for name in secrets if not os.environ.get(name)]
    if unset:
        raise ConfigError(
            f"model {model.model!r}: provider {provider} needs {' or '.join(unset)} in the environment "
            "(or --api-key-env NAME naming the variable that holds the key)"
        )


def check_replay(model: ReplayModelConfig) -> None:
    """The recorded trajectory exists and is a file (its contents are read, and checked, when replayed)."""
    if not model.path.is_file():
        what = "is a directory" if model.path.is_dir() else "no such file"
        raise ConfigError(f"replay trajectory {model.path}: {what}")
