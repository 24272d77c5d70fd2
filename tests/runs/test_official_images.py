"""Evaluation and agent sandboxes through an official SWE-bench image (`--images official|auto`).

No registry answers here, so the test makes an image in the official layout and tags it under the
official name: the repository in /testbed with HEAD at the base commit, and an env `testbed` that only
`source /opt/miniconda3/bin/activate; conda activate testbed` puts on PATH (a venv behind a small
`conda` shim; the system Python has no pytest). A verdict of "resolved" therefore means the harness's
own script ran in the activated env, and the agent's `python` is the env's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes.openai_server import FakeOpenAIServer, FakeReply, bash_reply
from fakes.started import record_starts
from typer.testing import CliRunner

from patchfleet.agent import read_trajectory
from patchfleet.agent.config import SUBMIT_COMMAND
from patchfleet.data.sources import LocalCheckout
from patchfleet.runs.cli import app
from patchfleet.runs.evaluation import instance_dir
from patchfleet.sandbox.base import SandboxSpec
from patchfleet.sandbox.images import (
    CLEARED_LABELS,
    LAYER_LABEL,
    EnvLayer,
    ImageBuilder,
    ImageSpec,
    InstanceLayer,
    official_image_name,
)
from patchfleet.selection.model import BASE

pytestmark = pytest.mark.docker

HEADER = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,3 +1,3 @@\n def add(a, b):\n"
GOLD = HEADER + "-    return a - b\n+    return a + b\n \n"
WRONG = HEADER + "-    return a - b\n+    return a * b\n \n"
TEST_PATCH = (
    "diff --git a/test_hidden.py b/test_hidden.py\nnew file mode 100644\n"
    "--- /dev/null\n+++ b/test_hidden.py\n"
    "@@ -0,0 +1,9 @@\n+from calc import add, mul\n+\n+\n+def test_add():\n+    assert add(2, 3) == 5\n+\n+\n"
    "+def test_mul():\n+    assert mul(2, 3) == 6\n"
)
TESTBED = "/opt/miniconda3/envs/testbed"
CONDA_SHIM = """mkdir -p /opt/miniconda3/bin && cat > /opt/miniconda3/bin/activate <<'SHIM'
# stands in for conda's activate script: `conda activate NAME` activates the venv envs/NAME
conda() {
  if [ "$1" = activate ]; then
    . "/opt/miniconda3/envs/$2/bin/activate" &&
      export CONDA_DEFAULT_ENV="$2" CONDA_PREFIX="/opt/miniconda3/envs/$2"
  else
    echo "conda shim: only 'conda activate' is emulated" >&2; return 1
  fi
}
SHIM"""
# the published-spec shape the harness's script is made from (a user's --recipes file for this repo)
SPECS = {"local/calc": {"0.1": {"python": "3.11", "test_cmd": "pytest -rA"}}}
IDS = ("local__calc-1", "local__calc-2")


@pytest.fixture(scope="module")
def official_images(docker_backend, base_image, sample_repo, run_git):
    """Official-layout images tagged under the official names of IDS; removed afterwards."""
    head = run_git(sample_repo, "rev-parse", "HEAD").strip()
    spec = ImageSpec(
        env=EnvLayer(
            key="official-layout-shim",
            steps=(
                f"python3 -m venv {TESTBED} && {TESTBED}/bin/pip install --no-input -q 'pytest==8.3.3'",
                CONDA_SHIM,
            ),
        ),
        instance=InstanceLayer(key="official-layout-calc", repo="local/calc", commit=head),
    )
    built = ImageBuilder(docker_backend, repo_source=LocalCheckout(path=sample_repo)).ensure(spec)
    names = [official_image_name(i) for i in IDS]
    with docker_backend.start(SandboxSpec(image=built, labels={"role": "test"})) as sandbox:
        # as in the official images, HEAD is the base commit (our layer adds a set-up commit on top)
        assert sandbox.exec(f"git reset -q --hard {head}", timeout=60).ok
        for name in names:
            repository, _, tag = name.rpartition(":")
            labels = {**CLEARED_LABELS, LAYER_LABEL: "", "patchfleet.role": ""}
            sandbox.container.commit(repository=repository, tag=tag, conf={"Labels": labels})
    yield head
    # the official tags, then the layers under them (the shared base image stays)
    for name in [*names, *reversed(spec.tags()[1:])]:
        docker_backend.client.images.remove(name)


@pytest.fixture
def dataset(tmp_path: Path, official_images: str) -> Path:
    row = {
        "repo": "local/calc",
        "base_commit": official_images,
        "version": "0.1",
        "problem_statement": "add() subtracts",
        "patch": GOLD,
        "test_patch": TEST_PATCH,
        "FAIL_TO_PASS": json.dumps(["test_hidden.py::test_add"]),
        "PASS_TO_PASS": json.dumps(["test_hidden.py::test_mul"]),
    }
    path = tmp_path / "dataset.jsonl"
    path.write_text("".join(json.dumps({"instance_id": i, **row}) + "\n" for i in IDS))
    return path


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def test_eval_through_official_images_gives_the_verdicts_with_the_harness_script(dataset, tmp_path):
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps(SPECS))
    predictions = tmp_path / "preds.jsonl"
    rows = [("local__calc-1", GOLD), ("local__calc-2", WRONG)]
    predictions.write_text(
        "".join(
            json.dumps({"instance_id": i, "model_patch": p, "model_name_or_path": "m"}) + "\n"
            for i, p in rows
        )
    )
    out = tmp_path / "out"
    result = invoke(
        *("eval", "--predictions", str(predictions), "--dataset", str(dataset), "--images", "official"),
        *("--recipes", str(specs), "--no-pull", "--workers", "2", "--out", str(out), "--run-id", "off"),
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "m.off.json").read_text())
    assert report["resolved_ids"] == ["local__calc-1"] and report["unresolved_ids"] == ["local__calc-2"]
    logs = instance_dir(out, "off", "m", "local__calc-1")
    script = (logs / "eval.sh").read_text()
    assert "source /opt/miniconda3/bin/activate\nconda activate testbed\n" in script  # the harness's own
    assert f"git checkout {dataset_base(dataset)} " in script
    # run by the testbed env's pytest, which the script's own activation put on PATH
    log = (logs / "test_output.txt").read_text()
    assert "PASSED test_hidden.py::test_add" in log and f"VIRTUAL_ENV={TESTBED}" in log
    wrong = json.loads((instance_dir(out, "off", "m", "local__calc-2") / "report.json").read_text())
    assert wrong["local__calc-2"]["tests_status"]["FAIL_TO_PASS"]["failure"] == ["test_hidden.py::test_add"]


def dataset_base(dataset: Path) -> str:
    return json.loads(dataset.read_text().splitlines()[0])["base_commit"]


def test_images_official_fails_up_front_when_an_instance_has_none(dataset, tmp_path):
    extra = json.loads(dataset.read_text().splitlines()[0]) | {"instance_id": "local__calc-9"}
    dataset.write_text(dataset.read_text() + json.dumps(extra) + "\n")
    result = invoke(
        *("eval", "--predictions", "gold", "--dataset", str(dataset), "--images", "official", "--no-pull"),
        *("--out", str(tmp_path / "out")),
    )
    assert result.exit_code == 2, result.output
    assert "--images official: no official image for local__calc-9" in result.output
    assert not (tmp_path / "out" / "logs").exists()


PROBE = "python -c 'import sys, pytest; print(sys.prefix)'"


def fixer(body: dict[str, Any]) -> FakeReply:
    turn = sum(m["role"] == "assistant" for m in body["messages"])
    script = [
        PROBE,
        "sed -i 's/a - b/a + b/' calc.py && python -m pytest -q test_calc.py",
        f"{SUBMIT_COMMAND} && git diff",
    ]
    return bash_reply(script[min(turn, len(script) - 1)])


def test_the_agent_works_in_the_official_image_inside_its_conda_env(
    dataset, tmp_path, server: FakeOpenAIServer
):
    server.respond_with(fixer)
    out = tmp_path / "out"
    result = invoke(
        *("trajectories", "--dataset", str(dataset), "--instance-ids", "local__calc-1", "--n", "1"),
        *("--images", "auto", "--no-pull", "--out", str(out)),
        *("--model", "openai/fake-model", "--api-base", server.base_url, "--set", "model.pricing.mode=free"),
        *("--set", "limits.step_limit=10", "--set", f"scratch_dir={tmp_path}"),
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "local__calc-1" / "outcomes.json").read_text())
    assert document["image"] == official_image_name("local__calc-1")  # auto found the official image
    row = document["trajectories"][0]
    assert row["exit_status"] == "Submitted", row
    assert "+    return a + b" in row["patch"]
    observations = [
        m["content"] for m in read_trajectory(row["trajectory"])["messages"] if m["role"] == "user"
    ]
    text = json.dumps(observations)
    assert TESTBED in text  # `python` is the testbed env's, which has pytest
    assert "1 passed" in text


# ours for --images local: pytest in our env layer (the official-layout image has it in its testbed env)
BATCH_SPECS = {"local/calc": {"0.1": {**SPECS["local/calc"]["0.1"], "pip_packages": ["pytest==8.3.3"]}}}
PATH_OF_TESTBED = f"{TESTBED}/bin"
# a reproduction script that selection harvests as a test: it needs the testbed env (pytest), so its
# cells pass on the fix only where the matrix's sandboxes have that env
REPRO = (
    "cat > /tmp/repro.py <<'EOF'\nimport sys\n\nsys.path.insert(0, '/testbed')\nimport pytest  # noqa\n"
    "from calc import add\n\nassert add(2, 3) == 5, add(2, 3)\nprint('fixed')\nEOF\npython /tmp/repro.py"
)


def batch_fixer(body: dict[str, Any]) -> FakeReply:
    turn = sum(m["role"] == "assistant" for m in body["messages"])
    script = [
        REPRO,
        "sed -i 's/a - b/a + b/' calc.py && python /tmp/repro.py",
        f"{SUBMIT_COMMAND} && git diff",
    ]
    return bash_reply(script[min(turn, len(script) - 1)])


@pytest.mark.parametrize("mode", ["official", "local"])
def test_batch_runs_agents_selection_and_evaluation_in_the_image_images_decides(
    mode, dataset, sample_repo, tmp_path, server: FakeOpenAIServer, monkeypatch
):
    """One decision for the whole batch: with `--images official` the agent, the selection matrix (and
    regression discovery) and the evaluation all run in the official image, with its conda env; with
    `--images local` none of them does. Read back from the containers the engine really started."""
    server.respond_with(batch_fixer)
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps(BATCH_SPECS))
    started = record_starts(monkeypatch)
    out = tmp_path / "out"
    result = invoke(
        *("batch", "--dataset", str(dataset), "--instance-ids", "local__calc-1", "--images", mode),
        *("--local", str(sample_repo), "--recipes", str(specs), "--no-pull", "--no-live"),
        *("--samples", "1", "--workers", "1", "--evaluate", "--out", str(out)),
        *("--model", "openai/fake-model", "--api-base", server.base_url),
        *("--set", "agent.model.pricing.mode=free", "--set", "agent.limits.step_limit=10"),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluation"]["resolved_ids"] == ["local__calc-1"], summary["evaluation"]

    official = official_image_name("local__calc-1")
    by_role: dict[str, list] = {}
    for container in started:
        by_role.setdefault(container.role, []).append(container)
    assert {"agent", "selection", "eval"} <= by_role.keys(), sorted(by_role)
    used = [c for role in ("agent", "selection", "regression", "eval") for c in by_role.get(role, [])]
    if mode == "official":
        assert {c.image for c in used} == {official}, [(c.role, c.image) for c in used]
        # the agent's and selection's sandboxes have the conda env on PATH (eval's script activates it)
        for container in used:
            if container.role != "eval":
                path = [v for v in container.env if v.startswith("PATH=")]
                assert path and PATH_OF_TESTBED in path[0], (container.role, container.env)
    else:
        assert not [c for c in used if c.image == official], [(c.role, c.image) for c in used]
        assert all(PATH_OF_TESTBED not in " ".join(c.env) for c in used)

    # the matrix ran for real in that image: the fix passes a test the base fails, no cell is an error
    cells = [
        json.loads(line)
        for line in (out / "selection" / "local__calc-1" / "matrix.jsonl").read_text().splitlines()
    ]
    assert cells and not [c for c in cells if c.get("error")], cells
    assert any(c["candidate_id"] != BASE and c["exit_code"] == 0 for c in cells), cells
    assert any(c["candidate_id"] == BASE and c["exit_code"] != 0 for c in cells), cells
