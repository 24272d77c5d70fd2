"""Which provider failures are worth retrying, how long to wait, and what the others become.

Transient: 429 (waiting what `Retry-After` asks), 5xx, timeouts, dropped connections and garbled
bodies (litellm reports the last two as 500s, or a garbled body as an error with its 200 status).
Never retried: authentication and permission errors, bad requests, context-window overflows,
exhausted quotas; they are translated into the patchfleet tree at once. Retrying itself is tenacity's
job; this module only supplies the predicates.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

from tenacity import RetryCallState
from tenacity.wait import wait_base

from patchfleet.errors import (
    ConfigError,
    ContextWindowExceeded,
    ModelError,
    ModelUnavailable,
    PatchfleetError,
)

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _is_quota(exc: BaseException) -> bool:
    # OpenAI answers 429 for an exhausted balance too; waiting will not refill it.
    text = str(exc).lower()
    return "insufficient_quota" in text or "exceeded your current quota" in text


def is_transient(exc: BaseException) -> bool:
    """True for failures that a later attempt may not see."""
    import litellm
    import openai

    if isinstance(exc, litellm.ContextWindowExceededError | litellm.AuthenticationError):
        return False
    if isinstance(exc, litellm.Timeout | litellm.APIConnectionError):
        return True
    if isinstance(exc, litellm.RateLimitError):
        return not _is_quota(exc)
    if isinstance(
        exc, litellm.InternalServerError | litellm.ServiceUnavailableError | litellm.BadGatewayError
    ):
        return True
    if isinstance(exc, openai.APIError):
        status = _status(exc)
        # an error with a success status: the reply arrived but could not be read
        return status in TRANSIENT_STATUS or (status is not None and 200 <= status < 300)
    return False


def _headers(exc: BaseException) -> Any:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers:
        return headers
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None) or {}


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait the provider asked for (`retry-after-ms`, `retry-after` in seconds or as a date)."""
    headers = _headers(exc)
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(float(millis) / 1000, 0.0)
        value = headers.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


class WaitRetryAfter(wait_base):
    """Wait what the provider asked for (capped), else fall back to another strategy."""

    def __init__(self, fallback: wait_base, max_wait: float) -> None:
        self.fallback = fallback
        self.max_wait = max_wait

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        asked = retry_after_seconds(exc) if exc is not None else None
        if asked is not None:
            return min(asked, self.max_wait)
        return self.fallback(retry_state)


def translate(exc: BaseException, model: str) -> PatchfleetError | None:
    """Our error for a non-transient provider failure; None when `exc` is not a provider error."""
    import litellm
    import openai

    if isinstance(exc, litellm.ContextWindowExceededError):
        return ContextWindowExceeded(f"{model}: {exc}")
    if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return ConfigError(f"{model}: the provider refused the credentials (check the API key): {exc}")
    if isinstance(exc, litellm.NotFoundError):
        return ConfigError(f"{model}: the provider does not know this model or endpoint: {exc}")
    if isinstance(exc, litellm.UnsupportedParamsError):
        return ConfigError(f"{model}: a parameter is not supported by this provider: {exc}")
    if isinstance(exc, litellm.RateLimitError):
        return ModelUnavailable(f"{model}: the provider's quota is exhausted: {exc}")
    if isinstance(exc, openai.APIError):
        return ModelError(f"{model}: request rejected: {exc}")
    return None
