"""What a model call costs, so that cost limits mean something for every provider.

Three modes: `table` (litellm's price table), `override` (USD per million tokens given in the config, for
self-hosted or unlisted models), `free` (explicitly zero, for local models). In `table` mode a model must
have an entry of its own with prices above zero, else a `ConfigError` is raised before the first request:
litellm answers an unlisted model whose name matches one of its name-pattern rules (`claude-*-4...`,
`gpt-5*`, `gemini-3*`) or that a provider's server describes with its capabilities and $0 prices, and a
zero in the table may mean free or unknown; either way a run's costs, cost limits and `--budget` would read
as zero. A model listed under another spelling of its version (`claude-sonnet-4.5` as `claude-sonnet-4-5`)
is priced by that entry. Users should export `LITELLM_LOCAL_MODEL_COST_MAP=True` so that litellm reads its
bundled table instead of downloading one at import.

`Pricer.per_token` gives the highest price a token can have, so that a call's cost can be bounded before
it is made (`LitellmModel.bound`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import BaseModel, model_validator

from patchfleet.errors import ConfigError

# Standard-tier prices in litellm's map: the base price, long-prompt tiers and (input) writing the prompt
# cache, which Anthropic bills above the base price. Batch, flex, priority and 1h/12h-cache prices apply
# only when asked for (we never do), so they are left out. Entries priced by prompt length alone
# (`tiered_pricing`, e.g. Qwen's) carry the same keys in each tier.
_INPUT_PRICE = re.compile(r"^(input_cost_per_token|cache_creation_input_token_cost)(_above_\d+k_tokens)?$")
_OUTPUT_PRICE = re.compile(r"^output_cost_per_(token|reasoning_token)(_above_\d+k_tokens)?$")
# a version number's dot between digits (claude-sonnet-4.5), and a one-digit version's dash (claude-3-7),
# not a date's (2024-08-06): the two spellings litellm's table itself uses for the same model
_DOT_VERSION = re.compile(r"(?<=\d)\.(?=\d)")
_DASH_VERSION = re.compile(r"(?<!\d)(\d)-(\d)(?!\d)")
# keys of the model's config; `agent.model.` is their place in a run config (`--set`)
_FIX = (
    "give its prices with pricing.mode=override, pricing.input_per_mtok and pricing.output_per_mtok "
    "(USD per million tokens; e.g. --set agent.model.pricing.mode=override), "
    "or set pricing.mode=free if it costs nothing"
)


@dataclass(frozen=True)
class TablePrice:
    """A model's entry in litellm's price table: the name litellm prices it under (the configured one, or
    the spelling its entry is listed under), the highest USD price of a prompt and of a completion token."""

    model: str
    input: float
    output: float


def table_price(model: str) -> TablePrice:
    """The prices litellm's table gives `model`, or a one-line `ConfigError` naming it and the fix."""
    found = _entry(model)
    if found is None:
        priced = (entry for entry in map(_entry, _spellings(model)) if entry is not None and _priced(entry))
        alias = next(priced, None)
        if alias is not None:
            return alias
        raise ConfigError(
            f"model {model!r}: litellm {_litellm_version()} has no price for it (no entry of its own in its "
            f"price table), so its cost, cost limits and --budget could not be known: {_FIX}"
        )
    if not _priced(found):
        sides = (("input", found.input), ("output", found.output))
        zero = " and ".join(side for side, price in sides if price <= 0)
        raise ConfigError(
            f"model {model!r}: litellm {_litellm_version()}'s price table lists its {zero} tokens at $0, "
            f"which may mean free or unknown: {_FIX}"
        )
    return found


def _entry(model: str) -> TablePrice | None:
    """`model`'s own entry in litellm's table; None when litellm has none (its lookup fails, or answers from
    a name-pattern rule or the provider's server, neither of which carries a price)."""
    import litellm

    try:
        info: dict[str, Any] = dict(litellm.get_model_info(model))
    except Exception:  # noqa: BLE001 - litellm raises plain Exception (and others) for unmapped models
        return None
    key = info.get("key")
    if not isinstance(key, str) or not _listed(key, litellm.model_cost):
        return None
    tiers = [info, *(tier for tier in info.get("tiered_pricing") or [] if isinstance(tier, dict))]
    prices = [(k, float(v)) for tier in tiers for k, v in tier.items() if isinstance(v, int | float)]
    per_in = max((v for k, v in prices if _INPUT_PRICE.match(k)), default=0.0)
    per_out = max((v for k, v in prices if _OUTPUT_PRICE.match(k)), default=0.0)
    return TablePrice(model, per_in, per_out)


def _listed(key: str, table: dict[str, Any]) -> bool:
    if key in table:
        return True
    lowered = key.lower()  # litellm's lookups ignore case
    return any(name.lower() == lowered for name in table)


def _spellings(model: str) -> list[str]:
    """Other spellings of `model`'s version under which the table may list it, same provider prefix."""
    others = [_DOT_VERSION.sub("-", model), _DASH_VERSION.sub(r"\1.\2", model)]
    return [name for name in dict.fromkeys(others) if name != model]


def _priced(entry: TablePrice) -> bool:
    return entry.input > 0 and entry.output > 0


def _litellm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("litellm")
    except PackageNotFoundError:
        return "(unknown version)"


class PricingConfig(BaseModel):
    mode: Literal["table", "override", "free"] = "table"
    input_per_mtok: float | None = None  # USD per million prompt tokens (override mode)
    output_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None  # defaults to input_per_mtok

    @model_validator(mode="after")
    def _override_needs_prices(self) -> Self:
        if self.mode == "override" and (self.input_per_mtok is None or self.output_per_mtok is None):
            raise ValueError("pricing.mode=override needs input_per_mtok and output_per_mtok")
        return self


class Pricer:
    """Prices replies for one model string according to a `PricingConfig`."""

    def __init__(self, model: str, config: PricingConfig) -> None:
        self.model = model
        self.config = config
        self._table: TablePrice | None = None

    def check(self) -> None:
        """Fail before spending anything when the price of the model cannot be known."""
        if self.config.mode == "table":
            self._entry()

    def _entry(self) -> TablePrice:
        if self._table is None:
            self._table = table_price(self.model)
        return self._table

    def per_token(self) -> tuple[float, float] | None:
        """The highest USD price of one prompt token and of one completion token; None in free mode."""
        if self.config.mode == "free":
            return None
        if self.config.mode == "override":
            per_in = max(self.config.input_per_mtok or 0.0, self.config.cached_input_per_mtok or 0.0)
            return per_in / 1e6, (self.config.output_per_mtok or 0.0) / 1e6
        entry = self._entry()
        return entry.input, entry.output

    def cost(self, response: Any, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> float:
        if self.config.mode == "free":
            return 0.0
        if self.config.mode == "override":
            per_in = self.config.input_per_mtok or 0.0
            per_cached = self.config.cached_input_per_mtok
            per_cached = per_in if per_cached is None else per_cached
            per_out = self.config.output_per_mtok or 0.0
            uncached = max(prompt_tokens - cached_tokens, 0)
            return (uncached * per_in + cached_tokens * per_cached + completion_tokens * per_out) / 1e6
        import litellm

        priced = self._entry().model
        try:
            cost = float(litellm.completion_cost(completion_response=response, model=priced))
        except Exception as exc:  # noqa: BLE001 - priced from the token counts below
            cost, failure = 0.0, exc
        else:
            failure = None
        if cost > 0 or not (prompt_tokens or completion_tokens):
            return cost
        # litellm failed, or priced the reply at $0: it prefers the model name the provider answered with,
        # which may be a spelling without an entry. The entry check() found prices the token counts.
        try:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=priced, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        except Exception as again:  # litellm raises plain Exception here too
            reason = failure or again
            raise ConfigError(f"litellm could not price a reply of {self.model!r}: {reason}") from again
        return float(prompt_cost + completion_cost)
