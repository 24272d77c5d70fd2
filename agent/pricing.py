"""What a model call costs, so that cost limits mean something for every provider.

Three modes: `table` (litellm's price table; a model missing from it is a `ConfigError` raised before
the first request, because a run whose costs read as zero would silently bypass its budgets),
`override` (USD per million tokens given in the config, for self-hosted or unlisted models), `free`
(explicitly zero, for local models). Users should export `LITELLM_LOCAL_MODEL_COST_MAP=True` so that
litellm reads its bundled table instead of downloading one at import.

`Pricer.per_token` gives the highest price a token can have, so that a call's cost can be bounded before
it is made (`LitellmModel.bound`).
"""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import BaseModel, model_validator

from patchfleet.errors import ConfigError

# Standard-tier prices in litellm's map: the base price, long-prompt tiers and (input) writing the prompt
# cache, which Anthropic bills above the base price. Batch, flex, priority and 1h/12h-cache prices apply
# only when asked for (we never do), so they are left out.
_INPUT_PRICE = re.compile(r"^(input_cost_per_token|cache_creation_input_token_cost)(_above_\d+k_tokens)?$")
_OUTPUT_PRICE = re.compile(r"^output_cost_per_(token|reasoning_token)(_above_\d+k_tokens)?$")


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
        self._checked = False

    def check(self) -> None:
        """Fail before spending anything when the price of the model cannot be known."""
        if self._checked or self.config.mode != "table":
            return
        import litellm

        try:
            litellm.cost_per_token(model=self.model, prompt_tokens=1, completion_tokens=1)
        except Exception as exc:  # litellm raises plain Exception for unmapped models
            raise ConfigError(
                f"litellm has no price for {self.model!r}, so cost limits could not be enforced: set "
                "model.pricing.mode=override with input_per_mtok/output_per_mtok, or "
                "model.pricing.mode=free for a local model"
            ) from exc
        self._checked = True

    def per_token(self) -> tuple[float, float] | None:
        """The highest USD price of one prompt token and of one completion token; None in free mode."""
        if self.config.mode == "free":
            return None
        if self.config.mode == "override":
            per_in = max(self.config.input_per_mtok or 0.0, self.config.cached_input_per_mtok or 0.0)
            return per_in / 1e6, (self.config.output_per_mtok or 0.0) / 1e6
        import litellm

        self.check()
        try:
            info: dict[str, Any] = dict(litellm.get_model_info(self.model))
        except Exception:  # noqa: BLE001 - priced by check(), but without an entry of its own: its base price
            per_in, per_out = litellm.cost_per_token(model=self.model, prompt_tokens=1, completion_tokens=1)
            info = {"input_cost_per_token": per_in, "output_cost_per_token": per_out}
        prices = {key: float(value) for key, value in info.items() if isinstance(value, int | float)}
        per_in = max((v for k, v in prices.items() if _INPUT_PRICE.match(k)), default=0.0)
        per_out = max((v for k, v in prices.items() if _OUTPUT_PRICE.match(k)), default=0.0)
        return per_in, per_out

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

        try:
            return float(litellm.completion_cost(completion_response=response, model=self.model))
        except Exception as exc:  # noqa: BLE001 - any failure falls back to the token counts below
            # check() passed, so the table knows the model: price the token counts directly.
            try:
                prompt_cost, completion_cost = litellm.cost_per_token(
                    model=self.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
                )
            except Exception as again:  # litellm raises plain Exception here too
                raise ConfigError(f"litellm could not price a reply of {self.model!r}: {exc}") from again
            return float(prompt_cost + completion_cost)
