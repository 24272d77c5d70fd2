"""`patchfleet select` end to end, as a user runs it: three candidates (right, wrong, broken) from two
predictions files, a scripted test writer and a scripted judge (with logprobs) behind the real litellm
client, real Docker sandboxes on a small repository. Every policy must pick the right patch and
decisions.jsonl must say why; the selection path never sees an EvalSpec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes.openai_server import FakeOpenAIServer, FakeReply
from fakes.started import record_starts
from typer.testing import CliRunner

from patchfleet.agent.config import SUBMIT_COMMAND
from patchfleet.runs.cli import app
from patchfleet.selection.normalize import patch_id

SPECS = {
    "local/calc": {"0.1": {"python": "3.11", "pip_packages": ["pytest==8.3.3"], "test_cmd": "pytest -rA"}}
}
RIGHT = (
    "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n"
    "@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
)
WRONG = RIGHT.replace("a + b", "abs(a - b) + 2")  # add(2, 3) == 3: still wrong
BROKEN = RIGHT.replace("-    return a - b", "-    return a ^ b")  # context that is not in the file
SCRIPT = (
    "import sys\nsys.path.insert(0, '/testbed')\nfrom calc import add\n"
    "got = add(2, 3)\nprint('add(2, 3) =', got)\nsys.exit(0 if got == 5 else 2)\n"
)


def writer_turn(body: dict[str, Any]) -> FakeReply:
    turn = sum(m["role"] == "assistant" for m in body["messages"])
    script = [
        f"cat <<'EOF' > /tmp/patchfleet_test.py\n{SCRIPT}EOF",
        'cd /testbed && python /tmp/patchfleet_test.py; echo "exit code: $?"',
        SUBMIT_COMMAND,
    ]
    return FakeReply(f"THOUGHT: step {turn}\n\n```bash\n{script[min(turn, 2)]}\n```")


def responder(body: dict[str, Any]) -> FakeReply:
    if body["model"] == "fake-writer":
        return writer_turn(body)
    prompt = body["messages"][-1]["content"]  # the judge: sure of the right patch only
    if "+    return a + b" in prompt:
        return FakeReply("YES", logprobs=[("YES", -0.05, [("YES", -0.05), ("NO", -3.0)])])
    return FakeReply("NO", logprobs=[("NO", -0.1, [("NO", -0.1), ("YES", -2.5)])])


@pytest.fixture
def inputs(tmp_path: Path, sample_repo: Path, run_git) -> dict[str, Path]:
    row = {
        "instance_id": "local__calc-1",
        "repo": "local/calc",
        "base_commit": run_git(sample_repo, "rev-parse", "HEAD").strip(),
        "version": "0.1",
        "problem_statement": "add(2, 3) returns -1 instead of 5",
        # evaluation-only fields, present as in SWE-bench: selection must never read them
        "patch": RIGHT,
        "test_patch": "SECRET-TEST-PATCH",
        "FAIL_TO_PASS": '["test_calc.py::test_secret"]',
        "PASS_TO_PASS": "[]",
    }
    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text(json.dumps(row) + "\n")
    first = tmp_path / "system_a.jsonl"
    first.write_text(
        "\n".join(
            json.dumps({"instance_id": "local__calc-1", "model_name_or_path": name, "model_patch": patch})
            for name, patch in [("a", WRONG)]
        )
        + "\n"
    )
    second = tmp_path / "system_b.json"  # sb-cli's dict shape, two systems in one list file
    second.write_text(
        json.dumps(
            [
                {"instance_id": "local__calc-1", "submission": "b", "model_patch": RIGHT, "resolved": False},
                {"instance_id": "local__calc-1", "submission": "c", "model_patch": BROKEN},
            ]
        )
    )
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps(SPECS))
    return {"dataset": dataset, "a": first, "b": second, "specs": specs}


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["select", *args], env={"COLUMNS": "200", **(env or {})})


@pytest.mark.docker
def test_every_policy_picks_the_right_patch_and_says_why(
    inputs, sample_repo, base_image, server: FakeOpenAIServer, tmp_path, monkeypatch
):
    server.respond_with(responder)
    started = record_starts(monkeypatch)
    out = tmp_path / "out"
    args = [
        *("--candidates", str(inputs["a"]), str(inputs["b"])),
        *("--dataset", str(inputs["dataset"]), "--instance-ids", "local__calc-1"),
        *("--local", str(sample_repo), "--recipes", str(inputs["specs"]), "--no-pull"),
        *("--verifier-model", "openai/fake-judge", "--test-writer-model", "openai/fake-writer"),
        *("--generated-tests", "1", "--api-base", server.base_url, "--api-key-env", "FAKE_KEY"),
        *("--set", "selection.verifier.model.pricing.mode=free"),
        *("--set", "selection.test_writer.pricing.mode=free"),
        *("--set", "selection.regression_budget_s=60"),
        *("--set", "sandbox.cpus=0.5", "--set", "sandbox.memory=1g", "--set", "sandbox.pids_limit=512"),
        *("--out", str(out)),
    ]
    result = invoke(*args, env={"FAKE_KEY": "dummy"})
    assert result.exit_code == 0, result.output
    assert "1 / 1 instance(s) got a patch" in result.output
    # the run config's sandbox limits in every sandbox selection started (matrix, regression, test writer;
    # image builds are unlimited by design)
    ran = [s for s in started if s.role != "build"]
    assert {"selection", "test-writer"} <= {s.role for s in ran}, ran
    assert {(s.cpus, s.memory, s.pids_limit, s.network) for s in ran} == {(0.5, 2**30, 512, "none")}

    decision = json.loads((out / "decisions.jsonl").read_text().splitlines()[0])
    right = patch_id(RIGHT)
    assert decision["chosen"] == right and decision["policy"] == "default"
    assert set(decision["others"]) == {"codemonkeys", "r2e", "agentless"}
    assert all(chosen == right for chosen in decision["others"].values()), decision["others"]
    assert any(right[:8] in reason for reason in decision["reasons"])
    assert decision["candidates"] == 3 and decision["tests"] >= 1

    prediction = json.loads((out / "preds.jsonl").read_text())
    assert prediction["model_patch"] == RIGHT and prediction["candidate_id"] == right
    assert [s["name"] for s in prediction["sources"]] == ["b"]
    assert json.loads((out / "preds.json").read_text())["local__calc-1"]["model_patch"] == RIGHT

    folder = out / "selection" / "local__calc-1"
    candidates = {c["id"]: c for c in json.loads((folder / "candidates.json").read_text())}
    assert candidates[patch_id(BROKEN)]["flags"] == ["does-not-apply"]
    tests = json.loads((folder / "tests.json").read_text())["tests"]
    kinds = {t["kind"] for t in tests}
    # the repository's only test (test_add) fails at the base commit: never a regression test
    assert "generated" in kinds and "regression" not in kinds
    scores = json.loads((folder / "verifier.json").read_text())
    assert scores[right]["score"] > 0.9 and scores[patch_id(WRONG)]["score"] < 0.2
    # nothing hidden reached a model or a sandbox
    assert not any("SECRET" in json.dumps(r.body) for r in server.requests)
    assert "SECRET" not in (folder / "tests.json").read_text()

    # the same command again: every cell from the cache, the judge from its cache, the same choice
    calls = len(server.requests)
    again = invoke(*args, env={"FAKE_KEY": "dummy"})
    assert again.exit_code == 0, again.output
    assert len(server.requests) == calls
    assert json.loads((out / "decisions.jsonl").read_text().splitlines()[0])["chosen"] == right
    stats = json.loads((folder / "decision.json").read_text())["matrix"]
    assert stats["containers"] == 0 and stats["cells_run"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "best"], "unknown selection policy 'best'"),
        (["--candidates", "nope.jsonl"], "--candidates nope.jsonl: no such file"),
        (["--trajectories", "nowhere"], "--trajectories nowhere: no such folder"),
        (["--generated-tests", "2"], "--generated-tests needs a model"),
        (["--verifier-model", "openai/unpriced-judge"], "has no price"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(inputs, tmp_path, args, message):
    base = ["--candidates", str(inputs["a"]), "--dataset", str(inputs["dataset"])]
    result = invoke(*base, *args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_the_selection_path_never_receives_an_eval_spec():
    """Structural: no module of selection (nor the select command) imports EvalSpec or reads a hidden
    field; the end-to-end test above shows the hidden fields of a real row reach no model or sandbox."""
    import ast

    root = Path(__file__).resolve().parents[2]
    files = [*sorted((root / "selection").glob("*.py")), root / "runs" / "select.py"]
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                assert all(alias.name != "EvalSpec" for alias in node.names), path
                assert all("evaluation" not in (alias.name or "") for alias in node.names), path
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"fail_to_pass", "pass_to_pass", "test_patch", "gold_patch"}, path
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in {"FAIL_TO_PASS", "PASS_TO_PASS", "test_patch"}, path
