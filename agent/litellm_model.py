"""`LitellmModel`: any litellm model string, with tenacity retries, pricing, caching marks and logprobs.

litellm and the OpenAI SDK both retry on their own; both are switched off (`max_retries=0`,
`num_retries=0`) so that tenacity is the only retry layer and every retry is counted.

Every priced call carries a max output tokens, so that `bound` can say before the call what it may cost at
most and a caller with a cost limit can refuse a call that could take it past that limit.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from patchfleet.agent.model import KnownPrompt, Limiter, ModelStats, Reply, TokenLogprob, ToolCall
from patchfleet.agent.pricing import Pricer
from patchfleet.agent.retry import WaitRetryAfter, is_transient, translate
from patchfleet.agent.tokens import PromptCounter
from patchfleet.errors import ModelResponseError, ModelUnavailable

if TYPE_CHECKING:
    from patchfleet.agent.config import LitellmModelConfig

# Keys of a chat message that providers accept; the agent's messages carry more (`extra`).
MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")
CACHE_MARK = {"type": "ephemeral"}
# max_tokens of a priced call whose config sets none (lowered to the model's own maximum output where
# litellm's map gives a smaller one): room for an agent turn, some of a reasoning model's thinking included
DEFAULT_MAX_TOKENS = 8192
OUTPUT_LIMIT_KEYS = ("max_tokens", "max_completion_tokens")
# litellm's switch between its own HTTP handler and the OpenAI SDK for `openai/...`, read per call
OPENAI_HTTP_SWITCH = "EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER"
_USER_SET_OPENAI_SWITCH = OPENAI_HTTP_SWITCH in os.environ

log = logging.getLogger(__name__)


def choose_openai_client(choice: str) -> None:
    """Point litellm's `openai/...` route at `choice` for this process, unless the user set the switch.

    The switch is an environment variable litellm reads on every call, so it cannot differ per model: the
    model built last decides, and a conflicting choice is logged.
    """
    if _USER_SET_OPENAI_SWITCH:
        return
    wanted = "true" if choice == "litellm_http" else "false"
    current = os.environ.get(OPENAI_HTTP_SWITCH)
    if current is not None and current != wanted:
        log.warning("openai_client=%s replaces the other choice of an earlier model in this process", choice)
    os.environ[OPENAI_HTTP_SWITCH] = wanted


def wants_cache_control(model: str, setting: str) -> bool:
    if setting != "auto":
        return setting == "on"
    lowered = model.lower()
    return lowered.startswith(("anthropic/", "bedrock/anthropic", "vertex_ai/claude")) or "claude" in lowered


def with_cache_control(messages: list[dict[str, Any]], last_n: int = 2) -> list[dict[str, Any]]:
    """A copy with Anthropic cache breakpoints on the system prompt and the last `last_n` user turns.

    Marking the newest turns each call lets the provider reuse the whole prefix written by the
    previous call (at most 4 breakpoints are allowed; this sets at most 1 + last_n).
    """
    marked = copy.deepcopy(messages)
    targets = [i for i, m in enumerate(marked) if m.get("role") in ("user", "tool")][-last_n:]
    targets += [i for i, m in enumerate(marked[:1]) if m.get("role") == "system"]
    for i in targets:
        content = marked[i].get("content")
        if isinstance(content, str):
            marked[i]["content"] = [{"type": "text", "text": content, "cache_control": dict(CACHE_MARK)}]
        elif isinstance(content, list) and content and isinstance(content[-1], dict):
            content[-1]["cache_control"] = dict(CACHE_MARK)
    return marked


class LitellmModel:
    """A provider model through the real `litellm.completion`."""

    def __init__(
        self,
        config: LitellmModelConfig,
        *,
        limiter: Limiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.stats = ModelStats()
        self._limiter = limiter if limiter is not None else nullcontext()
        self._sleep = sleep  # injectable so tests can observe the waits Retry-After asked for
        self._pricer = Pricer(config.model, config.pricing)
        self._counter = PromptCounter(config.model)
        choose_openai_client(config.openai_client)
        self.waits: list[float] = []  # every retry wait, in order (seconds)

    @property
    def name(self) -> str:
        return self.config.model

    def request(self, messages: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
        """The keyword arguments given to `litellm.completion` (public so tests can inspect them)."""
        cfg = self.config
        clean = [{k: m[k] for k in MESSAGE_KEYS if k in m} for m in messages]
        if wants_cache_control(cfg.model, cfg.prompt_caching):
            clean = with_cache_control(clean)
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "messages": clean,
            "timeout": cfg.timeout,
            "max_retries": 0,
            "num_retries": 0,
        }
        if cfg.api_base:
            kwargs["api_base"] = cfg.api_base
        if cfg.api_key is not None:
            kwargs["api_key"] = cfg.api_key.get_secret_value()
        for key in ("temperature", "top_p", "max_tokens"):
            value = getattr(cfg, key)
            if value is not None:
                kwargs[key] = value
        if cfg.logprobs:
            kwargs["logprobs"] = True
            if cfg.top_logprobs:
                kwargs["top_logprobs"] = cfg.top_logprobs
        kwargs.update(cfg.extra_params)
        kwargs.update(overrides)
        if cfg.pricing.mode != "free" and not any(kwargs.get(k) for k in OUTPUT_LIMIT_KEYS):
            kwargs["max_tokens"] = default_max_tokens(cfg.model)  # what `bound` needs to know
        if kwargs.get("tools"):
            # Our tools are plain functions. Without this flag litellm routes any call with tools
            # through its MCP gateway, which imports the optional `mcp` package (not a dependency).
            kwargs.setdefault("_skip_mcp_handler", True)
        return kwargs

    def bound(
        self, messages: list[dict[str, Any]], *, known: KnownPrompt | None = None, **overrides: Any
    ) -> float | None:
        """The most `query(messages, **overrides)` may cost in USD: its prompt tokens at the highest input
        price plus its max output tokens at the highest output price. Prompt tokens: litellm's count for
        the model; with `known` (the provider's count of the first messages), that count plus litellm's
        of the rest, when more (the provider's tokenizer may count more than litellm's stand-in).
        None when unknown: pricing.mode=free (it costs nothing), or no max output tokens is sent."""
        prices = self._pricer.per_token()
        if prices is None:
            return None
        kwargs = self.request(messages, **overrides)
        out_tokens = next((kwargs[k] for k in reversed(OUTPUT_LIMIT_KEYS) if kwargs.get(k)), None)
        if out_tokens is None:
            return None
        sent = kwargs["messages"]
        prompt = self._counter.count(sent, kwargs.get("tools"))
        if known is not None:
            prompt = max(prompt, known[1] + self._counter.added(sent[known[0] :]))
        per_in, per_out = prices
        out_tokens = int(out_tokens) * int(kwargs.get("n") or 1)
        return prompt * per_in + out_tokens * per_out

    def query(self, messages: list[dict[str, Any]], **overrides: Any) -> Reply:
        import litellm  # noqa: F401 - the first import takes seconds: keep it out of the latency

        self._pricer.check()
        kwargs = self.request(messages, **overrides)
        retries = 0

        def before_sleep(state: RetryCallState) -> None:
            nonlocal retries
            retries += 1
            self.stats.add_retry()
            self.waits.append(state.upcoming_sleep)

        rc = self.config.retry
        retrying = Retrying(
            stop=stop_after_attempt(rc.max_attempts),
            wait=WaitRetryAfter(
                wait_exponential_jitter(initial=rc.initial_wait, max=rc.max_wait, jitter=rc.initial_wait),
                max_wait=rc.max_retry_after,
            ),
            retry=retry_if_exception(is_transient),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        started = time.monotonic()
        try:
            response = retrying(self._complete, kwargs)
        except Exception as exc:
            if is_transient(exc):
                raise ModelUnavailable(
                    f"{self.name}: still failing after {rc.max_attempts} attempts: {exc}"
                ) from exc
            ours = translate(exc, self.name)
            if ours is None:
                raise
            raise ours from exc
        reply = self._reply(response, latency=time.monotonic() - started, retries=retries)
        self.stats.add(reply)
        return reply

    def _complete(self, kwargs: dict[str, Any]) -> Any:
        import litellm

        with self._limiter:
            return litellm.completion(**kwargs)

    def _reply(self, response: Any, latency: float, retries: int) -> Reply:
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise ModelResponseError(f"{self.name}: the reply has no choices")
        choice = choices[0]
        message = choice.message
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        details = getattr(usage, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", 0) or getattr(usage, "cache_read_input_tokens", 0)
        cached = int(cached or 0)
        extra: dict[str, Any] = {"response_id": getattr(response, "id", None)}
        reasoning = getattr(message, "reasoning_content", None)
        if reasoning:
            extra["reasoning_content"] = reasoning
        return Reply(
            content=message.content or "",
            tool_calls=tuple(
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "")
                for c in (getattr(message, "tool_calls", None) or [])
            ),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached,
            cost=self._pricer.cost(response, prompt_tokens, completion_tokens, cached),
            latency=latency,
            retries=retries,
            logprobs=_logprobs(choice),
            model=getattr(response, "model", None) or self.name,
            finish_reason=getattr(choice, "finish_reason", None),
            extra=extra,
        )


@functools.cache
def default_max_tokens(model: str) -> int:
    """`DEFAULT_MAX_TOKENS`, or the model's maximum output in litellm's map when that is smaller (a request
    for more than a model may write is an error with some providers)."""
    import litellm

    try:
        most = litellm.get_model_info(model).get("max_output_tokens")
    except Exception:  # noqa: BLE001 - litellm raises plain Exception for a model it does not map
        most = None
    return min(DEFAULT_MAX_TOKENS, int(most)) if most else DEFAULT_MAX_TOKENS


def _logprobs(choice: Any) -> tuple[TokenLogprob, ...] | None:
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if content is None and isinstance(logprobs, dict):
        content = logprobs.get("content")
    if not content:
        return None
    out = []
    for item in content:
        get = item.get if isinstance(item, dict) else lambda key, obj=item: getattr(obj, key, None)
        top = tuple(
            (t["token"], float(t["logprob"])) if isinstance(t, dict) else (t.token, float(t.logprob))
            for t in (get("top_logprobs") or [])
        )
        out.append(TokenLogprob(token=get("token"), logprob=float(get("logprob")), top=top))
    return tuple(out)
