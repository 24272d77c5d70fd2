"""End-to-end evaluation on a small git repository the test creates: a recipe, a hidden test, a gold
patch, a wrong patch, a patch that does not apply, and an empty one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys

import pytest
from fakes.started import record_starts
from typer.testing import CliRunner

from patchfleet.data.loaders import load_predictions, load_tasks
from patchfleet.data.recipes import Recipe
from patchfleet.data.sources import LocalCheckout
from patchfleet.runs.evaluation import Evaluator, instance_dir, run_evaluation

pytestmark = pytest.mark.docker

# a trailing context line, or `git apply` takes the hunk for the end of the file and refuses it
HEADER = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,3 +1,3 @@\n def add(a, b):\n"
GOLD = HEADER + "-    return a - b\n+    return a + b\n \n"
WRONG = HEADER + "-    return a - b\n+    return a * b\n \n"
BROKEN = "diff --git a/nope.py b/nope.py\n--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-x\n+y\n"
TEST_PATCH = (
    "diff --git a/test_hidden.py b/test_hidden.py\nnew file mode 100644\n"
    "--- /dev/null\n+++ b/test_hidden.py\n"
    "@@ -0,0 +1,9 @@\n+from calc import add, mul\n+\n+\n+def test_add():\n+    assert add(2, 3) == 5\n+\n+\n"
    "+def test_mul():\n+    assert mul(2, 3) == 6\n"
)
python = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, sample_repo, run_git):
    head = run_git(sample_repo, "rev-parse", "HEAD").strip()
    path = tmp_path_factory.mktemp("ds") / "dataset.jsonl"
    row = {
        "instance_id": "local__calc-1",
        "repo": "local/calc",
        "base_commit": head,
        "version": "0.1",
        "problem_statement": "add() subtracts",
        "patch": GOLD,
        "test_patch": TEST_PATCH,
        "FAIL_TO_PASS": json.dumps(["test_hidden.py::test_add"]),
        "PASS_TO_PASS": json.dumps(["test_hidden.py::test_mul"]),
    }
    rows = [row] + [{**row, "instance_id": f"local__calc-{i}"} for i in (2, 3, 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def recipe(task):
    return Recipe(
        repo=task.repo,
        version=task.version,
        distro="bookworm",
        python="3.11",
        env_steps=("python3 -m venv /opt/venv", "/opt/venv/bin/pip install --no-input -q 'pytest==8.3.3'"),
        env_vars=(("PATH", "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"),),
        instance_steps=(),
        test_cmd="pytest -rA",
        parser="parse_log_pytest",
    )


def test_gold_resolves_wrong_does_not_and_a_broken_patch_is_an_error(
    dataset, docker_backend, base_image, sample_repo, tmp_path
):
    loaded = load_tasks(dataset)
    gold, _ = load_predictions("gold", gold_from=loaded)
    predictions = {
        "local__calc-1": gold["local__calc-1"],
        "local__calc-2": gold["local__calc-1"].model_copy(
            update={"instance_id": "local__calc-2", "model_patch": WRONG}
        ),
        "local__calc-3": gold["local__calc-1"].model_copy(
            update={"instance_id": "local__calc-3", "model_patch": BROKEN}
        ),
        "local__calc-4": gold["local__calc-1"].model_copy(
            update={"instance_id": "local__calc-4", "model_patch": ""}
        ),
    }
    evaluator = Evaluator(
        docker_backend, LocalCheckout(path=sample_repo), tmp_path, recipes=recipe, test_timeout=300
    )
    summary = run_evaluation(evaluator, loaded.tasks, loaded.eval_specs, predictions, workers=2, run_id="t")
    assert summary["resolved_ids"] == ["local__calc-1"]
    # as the harness: an empty patch is not run, and counted apart
    assert summary["unresolved_ids"] == ["local__calc-2"] and summary["empty_patch_ids"] == ["local__calc-4"]
    assert (
        summary["error_ids"] == ["local__calc-3"] and "PatchApplyError" in summary["errors"]["local__calc-3"]
    )
    logs = tmp_path / "logs" / "run_evaluation" / "t" / "gold"  # the harness's layout
    report = json.loads((logs / "local__calc-1" / "report.json").read_text())["local__calc-1"]
    assert report["tests_status"]["FAIL_TO_PASS"]["success"] == ["test_hidden.py::test_add"]
    wrong = json.loads((logs / "local__calc-2" / "report.json").read_text())["local__calc-2"]
    assert wrong["tests_status"]["FAIL_TO_PASS"]["failure"] == ["test_hidden.py::test_add"]
    assert json.loads((tmp_path / "gold.t.json").read_text()) == summary  # <model>.<run_id>.json
    assert summary["total_instances"] == 4 and summary["submitted_instances"] == 4


def test_eval_command_with_gold_predictions_and_user_recipes(
    dataset, sample_repo, base_image, tmp_path, monkeypatch
):
    from patchfleet.runs.cli import app

    started = record_starts(monkeypatch)  # what the engine gave each test container

    # a repository SWE-bench does not know gets its recipe from the user's spec file
    specs = tmp_path / "specs.json"
    specs.write_text(
        json.dumps(
            {
                "local/calc": {
                    "0.1": {"python": "3.11", "pip_packages": ["pytest==8.3.3"], "test_cmd": "pytest -rA"}
                }
            }
        )
    )
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--predictions",
            "gold",
            "--dataset",
            str(dataset),
            "--instance-ids",  # several ids after one flag, as the harness's --instance_ids
            "local__calc-1",
            "local__calc-2",
            "--workers",
            "2",
            "--out",
            str(tmp_path / "out"),
            "--no-pull",
            "--recipes",
            str(specs),
            "--mirrors",
            str(sample_repo.parent),
            "--layout",
            "{name}",
            *("--set", "eval_cpus=1.5", "--set", "eval_memory=3g", "--network", "none"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "resolved 2 / 2 submitted" in result.output
    evals = [(s.cpus, s.memory, s.network) for s in started if s.role == "eval"]
    assert evals == [(1.5, 3 * 2**30, "none")] * 2  # --set eval_cpus=1.5 eval_memory=3g, --network none
    report = json.loads((tmp_path / "out" / "gold.patchfleet.json").read_text())
    assert report["total_instances"] == 2 and report["resolved_ids"] == ["local__calc-1", "local__calc-2"]
    logs = tmp_path / "out" / "logs" / "run_evaluation" / "patchfleet" / "gold"
    assert sorted(path.parent.name for path in logs.glob("*/report.json")) == report["resolved_ids"]


def test_verdicts_are_cached_by_content_and_a_bug_in_one_instance_does_not_stop_the_batch(
    dataset, docker_backend, base_image, sample_repo, tmp_path
):
    loaded = load_tasks(dataset)
    gold, _ = load_predictions("gold", gold_from=loaded)
    first = gold["local__calc-1"]

    def recipes(task):
        if task.id == "local__calc-3":
            raise RuntimeError("a bug in a recipe lookup")
        return recipe(task)

    evaluator = Evaluator(
        docker_backend, LocalCheckout(path=sample_repo), tmp_path, recipes=recipes, test_timeout=300
    )
    spec = loaded.eval_specs["local__calc-1"]
    task = next(t for t in loaded.tasks if t.id == "local__calc-1")
    fresh = evaluator.evaluate(task, spec, first)
    assert fresh.resolved and "cached" not in fresh.timings
    assert fresh.apply_method == "git apply --verbose"
    # the same patch under another submission's name: the stored verdict, no container
    again = evaluator.evaluate(task, spec, first.model_copy(update={"model_name_or_path": "other"}))
    assert again.resolved and again.timings == {"cached": 1.0}
    assert again.apply_method == "git apply --verbose"  # remembered with the verdict
    assert (instance_dir(tmp_path, "patchfleet", "other", "local__calc-1") / "report.json").exists()
    # a torn cache entry (a kill mid-write) is evaluated again, not trusted
    for entry in (tmp_path / "verdicts" / "local__calc-1").iterdir():
        entry.write_text('{"rep')
    torn = evaluator.evaluate(task, spec, first)
    assert torn.resolved and "cached" not in torn.timings
    # a different patch has a different key
    wrong = evaluator.evaluate(task, spec, first.model_copy(update={"model_patch": WRONG}))
    assert not wrong.resolved and "cached" not in wrong.timings

    predictions = {i: first.model_copy(update={"instance_id": i}) for i in ("local__calc-1", "local__calc-3")}
    summary = run_evaluation(evaluator, loaded.tasks, loaded.eval_specs, predictions, run_id="b")
    assert summary["resolved_ids"] == ["local__calc-1"]
    assert summary["errors"]["local__calc-3"].startswith("internal: RuntimeError")


SETUP_EDIT = "sed -i 's/return a \\* b/return b * a/' calc.py"  # a set-up edit, as sphinx's pins
BEFORE = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"  # the sample repo's
AFTER = BEFORE.replace("a - b", "a + b").replace("a * b", "b * a")


def blob(text: str) -> str:
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# as `git diff` writes it, with the index line that `git apply --3way` needs
WITH_SETUP_EDIT = (
    f"diff --git a/calc.py b/calc.py\nindex {blob(BEFORE)[:7]}..{blob(AFTER)[:7]} 100644\n"
    "--- a/calc.py\n+++ b/calc.py\n@@ -1,6 +1,6 @@\n def add(a, b):\n"
    "-    return a - b\n+    return a + b\n \n \n def mul(a, b):\n-    return a * b\n+    return b * a\n"
)
LEFTOVER = "mkdir -p build && cp calc.py build/calc.py"  # an untracked install leftover, as `pip install .`
WITH_LEFTOVER = GOLD + (
    "diff --git a/build/calc.py b/build/calc.py\nnew file mode 100644\n--- /dev/null\n+++ b/build/calc.py\n"
    "@@ -0,0 +1,6 @@\n+def add(a, b):\n+    return a - b\n+\n+\n+def mul(a, b):\n+    return a * b\n"
)


def evaluate_on_set_up(dataset, backend, sample_repo, tmp_path, instance_step: str, patch: str):
    """Evaluate `patch` for local__calc-1 in an instance layer with one extra step; (outcome, apply log)."""
    loaded = load_tasks(dataset)
    gold, _ = load_predictions("gold", gold_from=loaded)
    task = next(t for t in loaded.tasks if t.id == "local__calc-1")
    evaluator = Evaluator(
        backend,
        LocalCheckout(path=sample_repo),
        tmp_path,
        recipes=lambda t: dataclasses.replace(recipe(t), instance_steps=(instance_step,)),
        test_timeout=300,
    )
    prediction = gold["local__calc-1"].model_copy(update={"model_patch": patch})
    outcome = evaluator.evaluate(task, loaded.eval_specs["local__calc-1"], prediction)
    return outcome, (
        instance_dir(tmp_path, "patchfleet", "gold", "local__calc-1") / "patch_apply.log"
    ).read_text()


def test_a_patch_that_contains_the_set_up_edits_applies_as_in_the_harness(
    dataset, docker_backend, base_image, sample_repo, tmp_path
):
    """mini-swe-agent ran where set-up edits were uncommitted, so its `git diff` submitted them with the fix;
    where they are committed (the official images, ours) plain `git apply` refuses and `--3way` takes it."""
    outcome, log = evaluate_on_set_up(
        dataset, docker_backend, sample_repo, tmp_path, SETUP_EDIT, WITH_SETUP_EDIT
    )
    assert outcome.resolved, outcome.error
    assert "$ git apply --verbose\n" in log and "$ git apply --verbose --3way" in log


def test_untracked_leftovers_are_swept_between_attempts_as_in_the_harness(
    dataset, docker_backend, base_image, sample_repo, tmp_path
):
    """A submission made with `git add -A` carries the image's untracked build/ (requests-1142): the
    harness's `git clean -fd` sweeps it before the second attempt; our sandbox baseline must not keep it."""
    outcome, log = evaluate_on_set_up(dataset, docker_backend, sample_repo, tmp_path, LEFTOVER, WITH_LEFTOVER)
    assert outcome.resolved, outcome.error
    assert "already exists in working directory" in log
