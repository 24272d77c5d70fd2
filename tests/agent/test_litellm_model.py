"""LitellmModel through the real litellm client against the fake OpenAI server: retries, errors, costs."""

from __future__ import annotations

import math
import threading

import pytest
from fakes.openai_server import FakeOpenAIServer, FakeReply, Fault

from patchfleet.agent import LitellmModel, PricingConfig, litellm_model
from patchfleet.agent.litellm_model import OPENAI_HTTP_SWITCH, with_cache_control
from patchfleet.errors import (
    ConfigError,
    ContextWindowExceeded,
    ModelError,
    ModelUnavailable,
)

HELLO = [{"role": "user", "content": "hello"}]


class RecordingSleep:
    """Stands in for time.sleep so tests see the waits without spending them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(params=["litellm_http", "openai_sdk"])
def llm_config(request, llm_config):
    """Every test here runs through both of litellm's clients for `openai/...`: they fail differently."""
    return lambda server, **updates: llm_config(server, openai_client=request.param, **updates)


def test_openai_client_sets_litellms_switch_unless_the_user_did(monkeypatch, server, llm_config) -> None:
    monkeypatch.delenv(OPENAI_HTTP_SWITCH, raising=False)
    config = llm_config(server)
    build(config)
    wanted = "true" if config.openai_client == "litellm_http" else "false"
    assert litellm_model.os.environ[OPENAI_HTTP_SWITCH] == wanted
    monkeypatch.setattr(litellm_model, "_USER_SET_OPENAI_SWITCH", True)
    monkeypatch.setenv(OPENAI_HTTP_SWITCH, "maybe")
    build(config)
    assert litellm_model.os.environ[OPENAI_HTTP_SWITCH] == "maybe"


def build(config, sleep=None) -> LitellmModel:
    return LitellmModel(config, sleep=sleep) if sleep else LitellmModel(config)


def test_reply_carries_usage_cost_and_latency(server: FakeOpenAIServer, llm_config) -> None:
    server.push(FakeReply("hi there", prompt_tokens=1000, completion_tokens=500, cached_tokens=200))
    model = build(llm_config(server))
    reply = model.query(HELLO)
    assert reply.content == "hi there"
    assert (reply.prompt_tokens, reply.completion_tokens, reply.cached_tokens) == (1000, 500, 200)
    assert reply.cost == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert reply.latency > 0 and reply.retries == 0
    assert model.stats.calls == 1 and model.stats.cost == reply.cost
    body = server.requests[0].body
    assert body["model"] == "fake-model" and body["messages"] == HELLO


def test_rate_limit_and_server_errors_are_retried_and_counted(server, llm_config) -> None:
    server.push(
        Fault.rate_limit(retry_after=2), Fault.server_error(500), Fault.server_error(503), FakeReply("ok")
    )
    sleep = RecordingSleep()
    model = build(llm_config(server), sleep)
    reply = model.query(HELLO)
    assert reply.content == "ok"
    assert len(server.requests) == 4
    assert reply.retries == 3 and model.stats.retries == 3
    assert sleep.waits[0] == 2.0  # what Retry-After asked for
    assert all(w < 1 for w in sleep.waits[1:])  # exponential backoff from the tiny test settings


def test_retry_after_is_honoured_in_real_time(server, llm_config) -> None:
    server.push(Fault.rate_limit(retry_after=0.3), FakeReply("ok"))
    reply = build(llm_config(server)).query(HELLO)
    first, second = server.requests
    assert reply.content == "ok"
    assert second.received_at - first.received_at >= 0.3


def test_dropped_connections_and_garbled_bodies_are_retried(server, llm_config) -> None:
    server.push(Fault.drop(), Fault.malformed(), FakeReply("ok"))
    model = build(llm_config(server), RecordingSleep())
    assert model.query(HELLO).content == "ok"
    assert model.stats.retries == 2 and len(server.requests) == 3


def test_exhausted_retries_become_model_unavailable(server, llm_config) -> None:
    server.push(*[Fault.server_error(502)] * 4)
    model = build(llm_config(server), RecordingSleep())
    with pytest.raises(ModelUnavailable, match="4 attempts"):
        model.query(HELLO)
    assert len(server.requests) == 4 and model.stats.retries == 3 and model.stats.calls == 0


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.auth(), ConfigError),
        (Fault.bad_request(), ModelError),
        (Fault.context_window(), ContextWindowExceeded),
        (Fault("status", 429, "You exceeded your current quota", "insufficient_quota"), ModelUnavailable),
    ],
    ids=["auth", "bad-request", "context-window", "quota"],
)
def test_permanent_errors_are_not_retried(server, llm_config, fault, error) -> None:
    server.push(fault, FakeReply("never reached"))
    model = build(llm_config(server), RecordingSleep())
    with pytest.raises(error) as caught:
        model.query(HELLO)
    assert len(server.requests) == 1 and model.stats.retries == 0
    if error is ModelError:
        assert not isinstance(caught.value, ContextWindowExceeded)


def test_logprobs_are_requested_and_exposed(server, llm_config) -> None:
    server.push(FakeReply("YES", logprobs=[("YES", -0.1, [("YES", -0.1), ("NO", -2.5)])]))
    model = build(llm_config(server, logprobs=True, top_logprobs=2))
    reply = model.query(HELLO)
    body = server.requests[0].body
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert reply.logprobs is not None and reply.logprobs[0].token == "YES"
    assert reply.top_logprobs(0) == {"YES": -0.1, "NO": -2.5}
    expected = math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.5))
    assert reply.probability_of("yes", "no") == pytest.approx(expected)


def test_price_table_is_used_for_known_models(server, llm_config) -> None:
    server.push(FakeReply("ok", prompt_tokens=1000, completion_tokens=1000))
    model = build(llm_config(server, model="openai/gpt-4o-mini", pricing=PricingConfig()))
    assert model.query(HELLO).cost == pytest.approx(1000 * 0.15e-6 + 1000 * 0.6e-6)


def test_unknown_price_fails_before_any_request(server, llm_config) -> None:
    server.push(FakeReply("ok"))
    model = build(llm_config(server, pricing=PricingConfig()))
    with pytest.raises(ConfigError, match=r"pricing\.mode=override"):
        model.query(HELLO)
    assert server.requests == []


def test_free_mode_costs_nothing(server, llm_config) -> None:
    server.push(FakeReply("ok", prompt_tokens=10**6, completion_tokens=10**6))
    model = build(llm_config(server, model="hosted_vllm/local-model", pricing=PricingConfig(mode="free")))
    assert model.query(HELLO).cost == 0.0


def test_override_prices_cached_tokens_separately(server, llm_config) -> None:
    pricing = PricingConfig(mode="override", input_per_mtok=3, output_per_mtok=15, cached_input_per_mtok=0.3)
    server.push(FakeReply("ok", prompt_tokens=1000, completion_tokens=100, cached_tokens=800))
    cost = build(llm_config(server, pricing=pricing)).query(HELLO).cost
    assert cost == pytest.approx((200 * 3 + 800 * 0.3 + 100 * 15) / 1e6)


def test_cache_control_marks_system_and_last_user_turns() -> None:
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "task"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "obs1"},
        {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "obs2"},
    ]
    marked = with_cache_control(messages)
    flagged = [i for i, m in enumerate(marked) if isinstance(m["content"], list)]
    assert flagged == [0, 3, 5]
    assert marked[5]["content"] == [{"type": "text", "text": "obs2", "cache_control": {"type": "ephemeral"}}]
    assert messages[5]["content"] == "obs2"  # the agent's own history is never modified


def test_cache_control_reaches_the_wire_when_enabled(server, llm_config) -> None:
    server.push(FakeReply("ok"), FakeReply("ok"))
    build(llm_config(server, prompt_caching="on")).query([{"role": "system", "content": "s"}, *HELLO])
    build(llm_config(server)).query(HELLO)  # auto: not a Claude model, no marks
    sent = server.requests[0].messages
    assert sent[0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent[1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert server.requests[1].messages == HELLO


def test_claude_models_get_cache_control_automatically(llm_config, server) -> None:
    model = build(llm_config(server, model="anthropic/claude-sonnet-4-5-20250929"))
    request = model.request([{"role": "system", "content": "s"}, *HELLO])
    assert request["messages"][1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert request["max_retries"] == 0 and request["num_retries"] == 0


def test_limiter_wraps_each_attempt(server, llm_config) -> None:
    class Counting:
        def __init__(self) -> None:
            self.entered = 0
            self.lock = threading.Lock()

        def __enter__(self) -> None:
            with self.lock:
                self.entered += 1

        def __exit__(self, *exc: object) -> None:
            return None

    limiter = Counting()
    server.push(Fault.server_error(), FakeReply("ok"))
    LitellmModel(llm_config(server), limiter=limiter, sleep=RecordingSleep()).query(HELLO)
    assert limiter.entered == 2  # released during the backoff wait, taken again for the retry


def test_empty_content_is_an_empty_reply(server, llm_config) -> None:
    server.push(FakeReply(None))
    assert build(llm_config(server)).query(HELLO).content == ""
