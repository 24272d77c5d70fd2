"""The fake OpenAI server itself: routes, recording, fixed latency (used by benchmarks)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from fakes.openai_server import FakeOpenAIServer, FakeReply


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_routes_usage_and_recording() -> None:
    with FakeOpenAIServer([FakeReply("a", prompt_tokens=7, completion_tokens=3), FakeReply("b")]) as server:
        root = f"http://127.0.0.1:{server.port}"
        status, body = post(f"{root}/v1/chat/completions", {"model": "m", "messages": [{"role": "user"}]})
        assert status == 200 and body["choices"][0]["message"]["content"] == "a"
        assert body["usage"] == {
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "total_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        assert post(f"{root}/chat/completions", {"messages": []})[0] == 200
        assert post(f"{root}/v1/embeddings", {})[0] == 404
        status, body = post(f"{root}/v1/chat/completions", {"messages": []})
        assert status == 400 and "no more replies" in body["error"]["message"]
        paths = [r.path for r in server.requests]  # the 404 is not a chat request: not recorded
        assert paths == ["/v1/chat/completions", "/chat/completions", "/v1/chat/completions"]
        assert server.requests[0].body["model"] == "m"


def test_fixed_latency_applies_to_every_call() -> None:
    with FakeOpenAIServer(lambda body: FakeReply("x"), latency=0.1) as server:
        for _ in range(2):
            started = time.monotonic()
            post(f"{server.base_url}/chat/completions", {"messages": []})
            assert time.monotonic() - started >= 0.1
