"""The LLM judge through the real litellm client against the local OpenAI-compatible server: scores from
logprobs, the sampled mean when the provider returns none, garbage as a missing score, retries, the disk
cache, and the condensed trajectory the judge reads."""

from __future__ import annotations

import json
import math

import pytest
from fakes.openai_server import FakeReply, Fault

from patchfleet.agent.config import LitellmModelConfig, RetryConfig
from patchfleet.agent.pricing import PricingConfig
from patchfleet.data.task import Task
from patchfleet.selection.model import Candidate, content_hash
from patchfleet.selection.verifier import (
    Verifier,
    VerifierConfig,
    condense_trajectory,
    logprob_score,
    parse_answer,
)

TASK = Task(
    id="local__calc-1", repo="local/calc", base_commit="0" * 40, problem_statement="add(2, 3) returns -1"
)
RIGHT_PATCH = (
    "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
)
WRONG_PATCH = RIGHT_PATCH.replace("a + b", "a * b")


def candidate(patch: str) -> Candidate:
    return Candidate(id=content_hash(patch), instance_id=TASK.id, patch=patch)


def config(server, tmp_path, **updates) -> VerifierConfig:
    model = LitellmModelConfig(
        model="openai/fake-judge",
        api_base=server.base_url,
        api_key="dummy",
        timeout=10,
        pricing=PricingConfig(mode="override", input_per_mtok=1.0, output_per_mtok=2.0),
        retry=RetryConfig(max_attempts=3, initial_wait=0.01, max_wait=0.05),
    )
    return VerifierConfig(model=model, cache_dir=tmp_path / "verifier", **updates)


def judge(body) -> FakeReply:
    """A scripted judge: YES (with logprobs) for the patch that adds, NO for any other."""
    prompt = body["messages"][-1]["content"]
    if "a + b" in prompt:
        # a leading newline token first: the score must come from the first real answer token
        return FakeReply(
            "\nYES", logprobs=[("\n", -0.01, []), ("YES", -0.05, [("YES", -0.05), ("NO", -3.0)])]
        )
    return FakeReply("NO", logprobs=[("NO", -0.1, [("NO", -0.1), ("Yes", -2.4), ("Maybe", -4.0)])])


def test_logprob_scores_separate_right_from_wrong_and_are_cached(server, tmp_path):
    server.respond_with(judge)
    verifier = Verifier(config(server, tmp_path))
    trajectory = "[step 1 agent]\nfixed add()"
    right = verifier.score(TASK, candidate(RIGHT_PATCH), trajectory)
    wrong = verifier.score(TASK, candidate(WRONG_PATCH))

    assert right.method == wrong.method == "logprobs"
    assert right.score == pytest.approx(math.exp(-0.05) / (math.exp(-0.05) + math.exp(-3.0)))
    assert wrong.score == pytest.approx(math.exp(-2.4) / (math.exp(-2.4) + math.exp(-0.1)))
    assert right.cost > 0 and right.model == "openai/fake-judge" and not right.cached
    assert right.candidate_id == content_hash(RIGHT_PATCH) and right.instance_id == TASK.id
    first = server.requests[0].body
    assert first["logprobs"] is True and first["top_logprobs"] == 5 and first["max_tokens"] == 8
    prompt = first["messages"][-1]["content"]
    assert "add(2, 3) returns -1" in prompt and "+    return a + b" in prompt and "fixed add()" in prompt
    assert "agent_steps" not in server.requests[1].body["messages"][-1]["content"]

    # a trajectory file is condensed to its last steps; an unreadable one is left out
    path = tmp_path / "t.traj.json"
    steps = [{"role": "assistant", "content": f"THOUGHT: try {n}"} for n in range(20)]
    path.write_text(json.dumps({"info": {}, "messages": [{"role": "user", "content": "task"}, *steps]}))
    verifier.score(TASK, candidate(WRONG_PATCH), path)
    shown = server.requests[2].body["messages"][-1]["content"]
    assert "THOUGHT: try 19" in shown and "THOUGHT: try 11" not in shown
    # the same prompt as without a trajectory: answered from the cache
    assert verifier.score(TASK, candidate(WRONG_PATCH), tmp_path / "missing.traj.json").cached

    # a re-run (a new process: a new Verifier over the same folder) asks nothing
    again = Verifier(config(server, tmp_path)).score(TASK, candidate(RIGHT_PATCH), trajectory)
    assert len(server.requests) == 3
    assert again.cached and again.score == right.score


def test_provider_without_logprobs_gives_the_sampled_mean(server, tmp_path):
    # the logprobs request is answered without logprobs: that answer counts as the first sample
    server.push(
        FakeReply("YES"), FakeReply("NO"), FakeReply("**YES** it does"), FakeReply("hmm"), FakeReply("YES")
    )
    verifier = Verifier(config(server, tmp_path, samples=5, sample_temperature=0.8))
    result = verifier.score(TASK, candidate(RIGHT_PATCH))
    assert result.method == "sampled" and result.samples == 4
    assert result.score == pytest.approx(3 / 4)
    assert len(server.requests) == 5
    assert all(r.body["temperature"] == 0.8 and not r.body.get("logprobs") for r in server.requests[1:])
    assert result.cost == pytest.approx(verifier.model.stats.cost)


def test_sampled_method_never_asks_for_logprobs(server, tmp_path):
    server.push(FakeReply("NO"), FakeReply("NO"), FakeReply("Answer: YES"))
    result = Verifier(config(server, tmp_path, method="sampled", samples=3)).score(
        TASK, candidate(WRONG_PATCH)
    )
    assert result.score == pytest.approx(1 / 3) and result.samples == 3
    assert not any(r.body.get("logprobs") for r in server.requests)


def test_sampling_stops_at_the_judgements_cost_limit(server, tmp_path):
    """What a run's budget reserves for a judgement is its cost limit: no sample is asked that could cross it
    (1,000 prompt tokens at $1 per million: $0.001 a call, plus 8 answer tokens at $2 per million, so with
    $0.002 spent a third call could reach $0.003; it was asked, overrunning the limit, before)."""
    server.push(*(FakeReply("YES", prompt_tokens=1000, completion_tokens=0) for _ in range(5)))
    verifier = Verifier(config(server, tmp_path, method="sampled", samples=5, cost_limit=0.0025))
    result = verifier.score(TASK, candidate(RIGHT_PATCH))
    assert len(server.requests) == 2 and result.samples == 2 and result.score == 1.0
    assert result.cost == pytest.approx(0.002)


def test_garbage_is_a_missing_score_never_a_crash(server, tmp_path):
    server.push(FakeReply("Maybe", logprobs=[("Maybe", -0.2, [("Maybe", -0.2), ("Perhaps", -1.9)])]))
    verifier = Verifier(config(server, tmp_path))
    garbled = verifier.score(TASK, candidate(RIGHT_PATCH))
    assert garbled.score is None and "neither YES nor NO" in garbled.detail

    server.push(*[FakeReply("I cannot tell.")] * 3)
    sampled = Verifier(config(server, tmp_path, method="sampled", samples=3)).score(
        TASK, candidate(WRONG_PATCH)
    )
    assert sampled.score is None and sampled.samples == 0 and "cannot tell" in sampled.detail


def test_transient_failures_are_retried_and_an_outage_is_not_cached(server, tmp_path):
    server.push(Fault.server_error(503), *[judge({"messages": [{"content": "a + b"}]})])
    verifier = Verifier(config(server, tmp_path))
    result = verifier.score(TASK, candidate(RIGHT_PATCH))
    assert result.score is not None and result.score > 0.9
    assert verifier.model.stats.retries == 1

    server.push(*[Fault.malformed()] * 3)
    outage = verifier.score(TASK, candidate(WRONG_PATCH))
    assert outage.score is None and outage.detail.startswith("unavailable")
    server.respond_with(judge)
    assert verifier.score(TASK, candidate(WRONG_PATCH)).score is not None  # asked again, not cached


def test_condensed_trajectory_keeps_the_last_steps_with_their_observations():
    document = {
        "info": {},
        "messages": [
            {"role": "system", "content": "you are an agent"},
            {"role": "user", "content": "the task"},
            *[
                message
                for step in range(1, 13)
                for message in (
                    {"role": "assistant", "content": f"THOUGHT: step {step}\n```bash\necho {step}\n```"},
                    {"role": "user", "content": [{"type": "text", "text": f"output {step} " + "x" * 5000}]},
                )
            ],
        ],
    }
    text = condense_trajectory(document, steps=3, max_chars=3000)
    assert "[step 10 agent]" in text and "[step 12 observation]" in text and "output 12" in text
    assert "step 9" not in text and "the task" not in text
    assert len(text) < 3600
    assert condense_trajectory({"messages": [], "info": {}}) == ""


def test_answer_parsing_and_logprob_arithmetic():
    assert parse_answer("  `YES`", "YES", "NO") == "YES"
    assert parse_answer("Looking at it...\nVerdict: **NO**", "YES", "NO") == "NO"
    assert parse_answer("Yesterday", "YES", "NO") is None
    from patchfleet.agent.model import TokenLogprob

    score, _ = logprob_score(
        (TokenLogprob("**", -0.1), TokenLogprob("Yes", -0.7, (("Yes", -0.7),))), "YES", "NO"
    )
    assert score == 1.0


def test_a_provider_that_rejects_logprobs_is_sampled_and_not_asked_again(server, tmp_path):
    server.push(
        Fault.bad_request("logprobs is not supported with this model"), FakeReply("YES"), FakeReply("YES")
    )
    verifier = Verifier(config(server, tmp_path, samples=2))
    first = verifier.score(TASK, candidate(RIGHT_PATCH))
    assert first.method == "sampled" and first.score == 1.0 and first.samples == 2
    server.push(FakeReply("NO"), FakeReply("NO"))
    second = verifier.score(TASK, candidate(WRONG_PATCH))
    assert second.score == 0.0
    assert [bool(r.body.get("logprobs")) for r in server.requests] == [True, False, False, False, False]
