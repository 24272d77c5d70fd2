"""Hard cost limits: before a priced call, its cost is bounded (prompt tokens counted by litellm at the input
price, plus its max output tokens at the output price), and a call that could take a unit past its limit
is not made. The real litellm client against the scripted server, which here bills honestly: every prompt
token litellm counts, and every completion as long as the call allowed (the worst case the bound covers)."""

from __future__ import annotations

import litellm
import pytest
from fakes.openai_server import FakeReply

from patchfleet.agent.config import SUBMIT_COMMAND, LitellmModelConfig
from patchfleet.agent.litellm_model import DEFAULT_MAX_TOKENS, default_max_tokens
from patchfleet.agent.loop import Agent
from patchfleet.agent.pricing import PricingConfig
from patchfleet.agent.scripted import ScriptedModel
from patchfleet.data.task import Task
from patchfleet.selection.model import Candidate, content_hash
from patchfleet.selection.verifier import Verifier, VerifierConfig

FIX = [
    "THOUGHT: look\n\n```bash\ncat calc.py\n```",
    "THOUGHT: fix\n\n```bash\nsed -i 's/a - b/a + b/' calc.py\n```",
    f"THOUGHT: done\n\n```bash\n{SUBMIT_COMMAND} && git diff\n```",
]
# $10 per million prompt tokens, $100 per million completion tokens
PRICES = PricingConfig(mode="override", input_per_mtok=10.0, output_per_mtok=100.0)


def honest(script: list[str]):
    """A responder that bills what a provider would at worst: litellm's count of the prompt, and a
    completion of the full max_tokens the request allowed."""

    def respond(body):
        turn = sum(m["role"] == "assistant" for m in body["messages"])
        return FakeReply(
            script[min(turn, len(script) - 1)],
            prompt_tokens=litellm.token_counter(model=body["model"], messages=body["messages"]),
            completion_tokens=body["max_tokens"],
        )

    return respond


def priced(llm_config, server, **updates) -> LitellmModelConfig:
    return llm_config(server, pricing=PRICES, max_tokens=100, **updates)


def test_a_priced_call_carries_max_tokens_and_is_bounded_before_it_is_made(server, llm_config):
    messages = [
        {"role": "system", "content": "You fix bugs."},
        {"role": "user", "content": "add() subtracts"},
    ]
    model = llm_config(server, pricing=PRICES).build()
    assert model.request(messages)["max_tokens"] == DEFAULT_MAX_TOKENS  # the map does not know fake-model
    counted = litellm.token_counter(model="openai/fake-model", messages=messages)
    assert model.bound(messages) == pytest.approx(counted * 10e-6 + DEFAULT_MAX_TOKENS * 100e-6)
    # a provider's count of the first messages (an earlier prompt this one extends) replaces litellm's
    # where it is more; a call's own max_tokens counts
    added = litellm.token_counter(model="openai/fake-model", messages=messages[1:]) - 3
    assert model.bound(messages, known=(1, 5000), max_tokens=10) == pytest.approx(
        (5000 + added) * 10e-6 + 0.001
    )
    assert model.bound(messages, known=(1, 1), max_tokens=10) == pytest.approx(counted * 10e-6 + 0.001)
    # the default is the model's own maximum output where litellm's map says it is smaller (gpt-4: 4096)
    assert default_max_tokens("gpt-4") == 4096
    # free pricing: nothing to bound, and the request is as before (no max_tokens)
    free = llm_config(server, model="hosted_vllm/local", pricing=PricingConfig(mode="free")).build()
    assert "max_tokens" not in free.request(messages) and free.bound(messages) is None
    # litellm's table: the highest standard-tier prices (Anthropic's cache writes above the base price)
    sonnet = LitellmModelConfig(model="claude-sonnet-4-5", max_tokens=1000).build()
    assert sonnet.bound(messages, known=(2, 1000)) == pytest.approx(1000 * 3.75e-6 + 1000 * 15e-6)


def test_an_agent_does_not_make_the_call_that_could_cross_its_cost_limit(
    server, llm_config, agent_config, sandbox, tmp_path
):
    """With no limit the script takes 3 calls; with a limit halfway into the third call's cost, the old
    check (spent < limit before a call) made it and overran the limit; now the third call is not made."""
    server.respond_with(honest(FIX))
    free_run = Agent(agent_config("limits.cost_limit=0"), priced(llm_config, server).build(), sandbox)
    assert free_run.run("add() subtracts").submitted
    costs = [step["cost"] for step in free_run.steps]
    assert len(costs) == 3 and len(server.requests) == 3
    limit = costs[0] + costs[1] + costs[2] / 2
    assert costs[0] + costs[1] < limit  # the old check would have made the third call: $costs[2] over

    model = priced(llm_config, server).build()
    agent = Agent(
        agent_config(f"limits.cost_limit={limit}"), model, sandbox, trajectory_path=tmp_path / "t.json"
    )
    result = agent.run("add() subtracts")
    assert len(server.requests) == 3 + 2  # two calls, not three
    assert result.exit_status == "LimitsExceeded" and result.limit == "cost"
    assert model.stats.cost == pytest.approx(costs[0] + costs[1]) and model.stats.cost <= limit
    assert "the next call may cost up to" in agent.extra_info["limit_detail"]


def test_the_bound_is_tight_when_the_provider_bills_the_worst_case(server, llm_config, agent_config, sandbox):
    """A limit equal to the three calls' cost lets all three be made: the bound is no wider than the truth
    when the provider bills every counted prompt token and every allowed completion token."""
    server.respond_with(honest(FIX))
    free_run = Agent(agent_config("limits.cost_limit=0"), priced(llm_config, server).build(), sandbox)
    free_run.run("add() subtracts")
    total = sum(step["cost"] for step in free_run.steps)
    agent = Agent(agent_config(f"limits.cost_limit={total}"), priced(llm_config, server).build(), sandbox)
    assert agent.run("add() subtracts").submitted and len(server.requests) == 6


def test_a_model_that_cannot_bound_its_calls_keeps_the_old_check(agent_config, sandbox):
    """A scripted model has no price to bound a call with: the limit is checked before each call only, as
    before, so its last call may overrun it (here: $0.03 spent of $0.025)."""
    model = ScriptedModel(FIX, cost_per_call=0.01)
    result = Agent(agent_config("limits.cost_limit=0.025"), model, sandbox).run("add() subtracts")
    assert result.submitted and model.stats.cost == pytest.approx(0.03)


# -- the verifier ---------------------------------------------------------------------------------------

TASK = Task(id="local__calc-1", repo="local/calc", base_commit="0" * 40, problem_statement="add() subtracts")
PATCH = "--- a/calc.py\n+++ b/calc.py\n@@ -1 +1 @@\n-    return a - b\n+    return a + b\n"


def judge_config(llm_config, server, tmp_path, **updates) -> VerifierConfig:
    model = llm_config(server, model="openai/fake-judge", pricing=PRICES)
    settings = {"method": "sampled", "samples": 5, "cache_dir": tmp_path / "cache", **updates}
    return VerifierConfig(model=model, **settings)


def test_a_judgement_asks_no_sample_that_could_cross_its_cost_limit(server, llm_config, tmp_path):
    """Each sample costs c (prompt at $10/M plus 8 answer tokens at $100/M): a limit of 2.5c allows two.
    The old rule (another sample while spent < limit) asked a third and spent 3c."""
    server.respond_with(honest(["YES"]))
    candidate = Candidate(id=content_hash(PATCH), instance_id=TASK.id, patch=PATCH)
    verifier = Verifier(judge_config(llm_config, server, tmp_path, cost_limit=0))
    c = verifier.model.bound(verifier.messages(TASK, candidate), max_tokens=8)
    bounded = Verifier(judge_config(llm_config, server, tmp_path, cost_limit=2.5 * c))
    score = bounded.score(TASK, candidate)
    assert len(server.requests) == 2 and score.samples == 2 and score.score == 1.0
    assert score.cost == pytest.approx(2 * c) and score.cost <= 2.5 * c


def test_a_judgement_whose_first_call_could_cross_its_limit_is_not_made_nor_cached(
    server, llm_config, tmp_path
):
    server.respond_with(honest(["YES"]))
    candidate = Candidate(id=content_hash(PATCH), instance_id=TASK.id, patch=PATCH)
    for method in ("logprobs", "sampled"):
        refused = Verifier(judge_config(llm_config, server, tmp_path, cost_limit=1e-4, method=method))
        score = refused.score(TASK, candidate)
        assert score.score is None and score.cost == 0 and "not judged" in score.detail, score
    assert server.requests == [] and not (tmp_path / "cache").exists()
    # with a limit that fits, the same judgement is asked (nothing was cached)
    score = Verifier(judge_config(llm_config, server, tmp_path, cost_limit=1.0)).score(TASK, candidate)
    assert score.score == 1.0 and len(server.requests) == 5


def test_the_remembered_counts_add_up_to_litellms_count_of_the_whole_request():
    """The bound counts each message once and remembers it; the sum is litellm's count of the request."""
    from patchfleet.agent.actions import BASH_TOOL
    from patchfleet.agent.litellm_model import with_cache_control
    from patchfleet.agent.tokens import PromptCounter

    call = {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}
    conversation = [
        {"role": "system", "content": "You fix bugs. " * 40},
        {"role": "user", "content": "add() subtracts: " + "def add(a, b): return a - b\n" * 30},
        {"role": "assistant", "content": "THOUGHT: look", "tool_calls": [call]},
        {"role": "tool", "content": "calc.py\ntest_calc.py\n", "tool_call_id": "c1"},
        {"role": "assistant", "content": "THOUGHT: fix\n\n```bash\nsed -i s/-/+/ calc.py\n```"},
        {"role": "user", "content": "<returncode>0</returncode>\n<output>\n</output>"},
    ]
    counter = PromptCounter("claude-sonnet-4-5")
    for messages in (conversation, conversation[1:], with_cache_control(conversation), conversation[:1], []):
        for tools in (None, [BASH_TOOL]):
            expected = litellm.token_counter(model="claude-sonnet-4-5", messages=messages, tools=tools)
            assert counter.count(messages, tools) == expected, (len(messages), tools is not None)
