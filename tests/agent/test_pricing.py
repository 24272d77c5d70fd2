"""Price lookups in litellm's table: a priced model is priced, an unknown or zero-priced one is a one-line
`ConfigError` in table mode, and a model listed under another spelling of its version is priced by that
entry. No network, no Docker: litellm's bundled table (LITELLM_LOCAL_MODEL_COST_MAP=True)."""

from __future__ import annotations

from collections.abc import Iterator

import litellm
import pytest

from patchfleet.agent.pricing import Pricer, PricingConfig, TablePrice, table_price
from patchfleet.errors import ConfigError

SONNET_4 = "anthropic/claude-sonnet-4-20250514"  # the reported model
# litellm's own entries for a made-up model: registered for one test, removed after it
ENTRIES = {
    "openai/patchfleet-zero": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
    "openai/patchfleet-half-zero": {"input_cost_per_token": 0.0, "output_cost_per_token": 2e-6},
    "openai/patchfleet-2-5": {"input_cost_per_token": 1e-6, "output_cost_per_token": 4e-6},
    "openai/patchfleet-tiered": {
        "tiered_pricing": [
            {"range": [0, 1000], "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
            {"range": [1000, 10**6], "input_cost_per_token": 3e-6, "output_cost_per_token": 6e-6},
        ]
    },
}


@pytest.fixture
def registered() -> Iterator[None]:
    litellm.register_model(
        {key: {"litellm_provider": "openai", "mode": "chat", **entry} for key, entry in ENTRIES.items()}
    )
    try:
        yield
    finally:
        for key in ENTRIES:
            litellm.model_cost.pop(key, None)


def refused(model: str, *needles: str) -> str:
    with pytest.raises(ConfigError) as caught:
        table_price(model)
    message = str(caught.value)
    assert "\n" not in message and f"'{model}'" in message, message
    for needle in ("pricing.mode=override", "pricing.mode=free", *needles):
        assert needle in message, message
    return message


def litellm_says(model: str) -> tuple[float, float]:
    return litellm.cost_per_token(model=model, prompt_tokens=1, completion_tokens=1)


def test_a_priced_model_is_priced_by_its_entry() -> None:
    assert table_price("openai/gpt-4o-mini") == TablePrice("openai/gpt-4o-mini", 0.15e-6, 0.6e-6)
    pricer = Pricer("openai/gpt-4o-mini", PricingConfig())
    pricer.check()
    assert pricer.per_token() == (0.15e-6, 0.6e-6)


def test_a_model_without_an_entry_is_refused_whether_litellm_raises_or_answers_zero() -> None:
    refused("openai/patchfleet-no-such-model", "no entry of its own")
    # litellm has no entry of its own for these, yet answers $0 from the name-pattern rules that give
    # unlisted Claude models their capabilities (Claude 4.0 is listed only under Bedrock's names)
    assert litellm_says("anthropic/claude-sonnet-99") == (0.0, 0.0)
    refused("anthropic/claude-sonnet-99", "no entry of its own")
    listed = litellm_says(SONNET_4)
    if listed == (0.0, 0.0):  # litellm 1.110.2: no entry, an answer from its rules
        refused(SONNET_4, "no entry of its own")
    else:  # older tables list it
        assert table_price(SONNET_4).input >= listed[0] > 0
        return
    with pytest.raises(ConfigError, match="claude-sonnet-4-20250514"):
        Pricer(SONNET_4, PricingConfig()).per_token()  # the bound never reads as $0
    Pricer(SONNET_4, PricingConfig(mode="free")).check()  # an explicit choice is respected


def test_a_model_the_table_prices_at_zero_is_refused(registered) -> None:
    assert litellm_says("openai/patchfleet-zero") == (0.0, 0.0)
    refused("openai/patchfleet-zero", "input and output tokens at $0")
    refused("openai/patchfleet-half-zero", "input tokens at $0")
    override = PricingConfig(mode="override", input_per_mtok=1, output_per_mtok=2)
    assert Pricer("openai/patchfleet-zero", override).per_token() == (1e-6, 2e-6)


def test_a_model_listed_under_another_spelling_of_its_version_is_priced_by_that_entry(registered) -> None:
    assert table_price("openai/patchfleet-2.5") == TablePrice("openai/patchfleet-2-5", 1e-6, 4e-6)
    # the real case: litellm lists claude-sonnet-4-5 and, for the dotted spelling, answers $0 from its rules
    dotted = table_price("anthropic/claude-sonnet-4.5")
    assert (dotted.input, dotted.output) == (3.75e-6, 15e-6)  # cache writes are the highest input price
    reply = litellm.ModelResponse(
        model="claude-sonnet-4.5",
        usage=litellm.Usage(prompt_tokens=1000, completion_tokens=100, total_tokens=1100),
    )
    assert litellm.completion_cost(completion_response=reply, model="anthropic/claude-sonnet-4.5") == 0.0
    cost = Pricer("anthropic/claude-sonnet-4.5", PricingConfig()).cost(reply, 1000, 100, 0)
    assert cost == pytest.approx(1000 * 3e-6 + 100 * 15e-6)


def test_a_tiered_entry_is_bounded_by_its_highest_tier(registered) -> None:
    assert litellm_says("openai/patchfleet-tiered") == (1e-6, 2e-6)  # the first tier
    assert Pricer("openai/patchfleet-tiered", PricingConfig()).per_token() == (3e-6, 6e-6)
