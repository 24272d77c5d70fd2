"""Loading tasks and predictions: good rows load, each bad row is named, nothing else is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchfleet.data.loaders import load_predictions, load_tasks
from patchfleet.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def row(i: int, **overrides) -> dict:
    base = {
        "instance_id": f"o__r-{i}",
        "repo": "o/r",
        "base_commit": "a" * 40,
        "problem_statement": "bug",
        "hints_text": "",
        "version": "1.0",
        "patch": "diff --git a/x b/x\n",
        "test_patch": "diff\n",
        "FAIL_TO_PASS": json.dumps(["t::a"]),
        "PASS_TO_PASS": ["t::b", "t::c"],
    }
    return {**base, **overrides}


def test_bad_rows_are_named_by_row_and_field_and_the_rest_loads(tmp_path):
    lines = [
        json.dumps(row(1)),
        "{not json",
        json.dumps(row(3, repo="no-slash")),
        json.dumps({k: v for k, v in row(4).items() if k != "base_commit"}),
        json.dumps(row(5, FAIL_TO_PASS="[broken")),
        json.dumps(row(6, problem_statement=7)),
        "",
        json.dumps(row(8)),
        json.dumps(row(8)),
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    loaded = load_tasks(path)
    assert [task.id for task in loaded.tasks] == ["o__r-1", "o__r-8"]
    messages = [str(error) for error in loaded.errors]
    assert len(messages) == 6
    assert messages[0].startswith(f"{path}:2: not valid JSON")
    assert f"{path}:3: field repo" in messages[1]
    assert f"{path}:4: missing field base_commit" in messages[2]
    assert f"{path}:5: field FAIL_TO_PASS" in messages[3]
    assert f"{path}:6: field problem_statement must be a string" in messages[4]
    assert "duplicate instance_id o__r-8" in messages[5]
    spec = loaded.eval_specs["o__r-1"]
    assert spec.fail_to_pass == ("t::a",) and spec.pass_to_pass == ("t::b", "t::c")
    assert not hasattr(loaded.tasks[0], "test_patch")  # the solving half carries no hidden fields


def test_json_list_and_instance_filter(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([row(1), row(2), row(3)]))
    loaded = load_tasks(path, instance_ids=["o__r-2"])
    assert [task.id for task in loaded.tasks] == ["o__r-2"] and not loaded.errors
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported format"):
        load_tasks(tmp_path / "d.txt")


def test_predictions_in_every_shape(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        json.dumps({"instance_id": "a", "model_patch": "P", "model_name_or_path": "m"})
        + "\n"
        + json.dumps({"model_patch": "no id"})
        + "\n"
    )
    predictions, errors = load_predictions(jsonl)
    assert (
        predictions["a"].model_patch == "P"
        and len(errors) == 1
        and "missing field instance_id" in str(errors[0])
    )
    as_list = tmp_path / "p.json"
    as_list.write_text(json.dumps([{"instance_id": "a", "model_patch": "P"}]))
    assert load_predictions(as_list)[0]["a"].model_name_or_path == "unknown"
    as_dict = tmp_path / "q.json"
    as_dict.write_text(json.dumps({"a": {"model_patch": "P", "model_name_or_path": "m"}, "b": None}))
    predictions, errors = load_predictions(as_dict)
    assert predictions["a"].model_patch == "P" and len(errors) == 1
    dataset = tmp_path / "d.jsonl"
    dataset.write_text(json.dumps(row(1)) + "\n")
    gold, _ = load_predictions("gold", gold_from=load_tasks(dataset))
    assert gold["o__r-1"].model_patch.startswith("diff --git") and gold["o__r-1"].model_name_or_path == "gold"


@pytest.mark.realdata
def test_the_whole_of_swe_bench_verified_loads():
    path = SHARED / "swebench_verified.jsonl"
    if not path.exists():
        pytest.skip("../shared/data is not beside the project")
    loaded = load_tasks(path)
    assert len(loaded.tasks) == 500 and not loaded.errors
    assert all(spec.fail_to_pass for spec in loaded.eval_specs.values())
