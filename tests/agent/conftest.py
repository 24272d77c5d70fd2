"""Fixtures for the agent tests: a model config for the fake server, a buggy repository, a host sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.local_sandbox import CALC_BUG, LocalSandbox, make_repo
from fakes.openai_server import FakeOpenAIServer

from patchfleet.agent.config import AgentConfig, LitellmModelConfig, RetryConfig
from patchfleet.agent.pricing import PricingConfig

# `server` (the fake OpenAI server) and the `fakes` import path come from tests/conftest.py.


@pytest.fixture
def buggy_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "calc", CALC_BUG)


@pytest.fixture
def sandbox(buggy_repo: Path) -> Iterator[LocalSandbox]:
    with LocalSandbox(buggy_repo) as box:
        yield box


def fake_model_config(server: FakeOpenAIServer, **updates: object) -> LitellmModelConfig:
    """A litellm model pointed at the fake server, priced by override, retrying with tiny waits."""
    base = LitellmModelConfig(
        model="openai/fake-model",
        api_base=server.base_url,
        api_key="dummy",
        timeout=10,
        pricing=PricingConfig(mode="override", input_per_mtok=1.0, output_per_mtok=2.0),
        retry=RetryConfig(max_attempts=4, initial_wait=0.01, max_wait=0.05),
    )
    return base.model_copy(update=updates)


@pytest.fixture
def llm_config():
    """`llm_config(server, **updates)`: a LitellmModelConfig for the fake server."""
    return fake_model_config


@pytest.fixture
def agent_config(tmp_path: Path):
    """`agent_config(*dotted_overrides)`: the shipped config, scratch files under tmp_path."""

    def make(*overrides: str) -> AgentConfig:
        return AgentConfig.load(overrides=[f"scratch_dir={tmp_path}", *overrides])

    return make
