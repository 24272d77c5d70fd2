"""Loading tasks and predictions: good rows load, each bad row is named, nothing else is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchfleet.data.loaders import load_predictions, load_tasks, read_ids
from patchfleet.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def row(i: int, **overrides) -> dict:
    base = {
        "instance_id": f"o__r-{i}",
        "repo": "o/r",
        "base_commit": "a" * 40,
        "problem_statement": "bug",
        "hints_text": "",
        "created_at": "2020-01-01T00:00:00Z",
        "version": "1.0",
        "patch": "diff --git a/x b/x\n",
        "test_patch": "diff\n",
        "FAIL_TO_PASS": json.dumps(["t::a"]),
        "PASS_TO_PASS": ["t::b", "t::c"],
        "environment_setup_commit": "b" * 40,
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
        json.dumps(row(10, version=1.1)),
        json.dumps(row(11, base_commit="main; rm -rf /")),
        json.dumps(row(12, PASS_TO_PASS=[1, 2])),
        json.dumps([1, 2]),
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    loaded = load_tasks(path)
    assert [task.id for task in loaded.tasks] == ["o__r-1", "o__r-8"]
    assert all(isinstance(error, DataError) for error in loaded.errors)
    messages = [str(error) for error in loaded.errors]
    expected = [
        f"{path}:2: not valid JSON",
        f"{path}:3: field repo",
        f"{path}:4: missing field base_commit",
        f"{path}:5: field FAIL_TO_PASS",
        f"{path}:6: field problem_statement must be a string",
        f"{path}:9: field instance_id: duplicate o__r-8",
        f"{path}:10: field version must be a string",
        f"{path}:11: field base_commit must be a hex commit id",
        f"{path}:12: field PASS_TO_PASS must be a list of test names",
        f"{path}:13: a row must be an object",
    ]
    assert len(messages) == len(expected)
    for message, start in zip(messages, expected, strict=True):
        assert message.startswith(start), (message, start)


def test_the_solving_half_carries_no_hidden_fields(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row(1)) + "\n")
    loaded = load_tasks(path)
    task, spec = loaded.tasks[0], loaded.eval_specs["o__r-1"]
    assert spec.fail_to_pass == ("t::a",) and spec.pass_to_pass == ("t::b", "t::c")
    assert spec.gold_patch.startswith("diff --git") and spec.environment_setup_commit == "b" * 40
    dumped = json.dumps(task.model_dump())
    for hidden in ("test_patch", "FAIL_TO_PASS", "PASS_TO_PASS", "t::a", "diff --git"):
        assert hidden not in dumped
    assert task.recipe_key == ("o/r", "1.0") and task.hints == ""
    with pytest.raises(ValueError, match="frozen"):
        task.repo = "x/y"  # type: ignore[misc]


def test_json_list_rows_are_numbered_and_the_filter_reports_missing_ids(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([row(1), row(2, repo=""), row(3)]))
    loaded = load_tasks(path)
    assert [t.id for t in loaded.tasks] == ["o__r-1", "o__r-3"]
    assert str(loaded.errors[0]).startswith(f"{path} row 2: field repo is empty")
    loaded = load_tasks(path, instance_ids=["o__r-3", "o__r-404"])
    assert [t.id for t in loaded.tasks] == ["o__r-3"] and not loaded.errors
    assert loaded.missing_ids == ["o__r-404"]


def test_unreadable_files_are_data_errors(tmp_path):
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported format"):
        load_tasks(tmp_path / "d.txt")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(DataError, match=r"broken\.json: not valid JSON"):
        load_tasks(tmp_path / "broken.json")
    with pytest.raises(DataError, match="no such file"):
        load_tasks(tmp_path / "absent.jsonl")
    (tmp_path / "object.json").write_text("{}")
    with pytest.raises(DataError, match="expected a JSON list"):
        load_tasks(tmp_path / "object.json")


def test_parquet_rows_load_when_pyarrow_is_there(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([row(1), row(2, FAIL_TO_PASS="nope")]), path)
    loaded = load_tasks(path)
    assert [t.id for t in loaded.tasks] == ["o__r-1"]
    assert str(loaded.errors[0]).startswith(f"{path} row 2: field FAIL_TO_PASS")


def test_a_dataset_name_without_the_hf_extra_says_what_to_install():
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"patchfleet\[hf\]"):
            load_tasks("someone/some-dataset:test")
    else:
        pytest.skip("datasets is installed; loading a hub dataset would need the network")


def test_predictions_in_every_shape(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    lines = [
        {"instance_id": "a", "model_patch": "P", "model_name_or_path": "m"},
        {"model_patch": "no id"},
        {"instance_id": "b"},
        {"instance_id": "c", "model_patch": None},
        {"instance_id": "a", "model_patch": "P2", "model_name_or_path": "m"},
    ]
    jsonl.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{oops\n")
    predictions, errors = load_predictions(jsonl)
    assert predictions["a"].model_patch == "P2" and predictions["c"].model_patch == ""
    assert [str(e).split(": ", 1)[1] for e in errors] == [
        "missing field instance_id",
        "missing field model_patch",
        "field instance_id: duplicate a; the last one is kept",
        "not valid JSON (Expecting property name enclosed in double quotes at column 2)",
    ]
    assert str(errors[0]).startswith(f"{jsonl}:2")

    as_list = tmp_path / "p.json"
    as_list.write_text(json.dumps([{"instance_id": "a", "model_patch": "P"}, "junk"]))
    predictions, errors = load_predictions(as_list)
    assert predictions["a"].model_name_or_path == "unknown"
    assert str(errors[0]).startswith(f"{as_list} row 2: a prediction must be an object")

    as_dict = tmp_path / "q.json"
    as_dict.write_text(
        json.dumps({"a": {"model_patch": "P", "model_name_or_path": "m"}, "b": None, "c": {"model_patch": 3}})
    )
    predictions, errors = load_predictions(as_dict)
    assert list(predictions) == ["a"] and predictions["a"].instance_id == "a"
    assert [str(e) for e in errors] == [
        f"{as_dict} key 'b': a prediction must be an object, got NoneType",
        f"{as_dict} key 'c': field model_patch must be a string or null, got int",
    ]

    dataset = tmp_path / "d.jsonl"
    dataset.write_text(json.dumps(row(1)) + "\n")
    gold, errors = load_predictions("gold", gold_from=load_tasks(dataset))
    assert gold["o__r-1"].model_patch.startswith("diff --git") and gold["o__r-1"].model_name_or_path == "gold"
    with pytest.raises(ConfigError, match="need the dataset"):
        load_predictions("gold")


def test_id_files_skip_blanks_and_comments(tmp_path):
    (tmp_path / "ids.txt").write_text("# dev\na\n\n  b  \n")
    assert read_ids(tmp_path / "ids.txt") == ["a", "b"]


@pytest.mark.realdata
def test_the_whole_of_swe_bench_verified_loads():
    path = SHARED / "swebench_verified.jsonl"
    if not path.exists():
        pytest.skip("../shared/data is not beside the project")
    loaded = load_tasks(path)
    assert len(loaded.tasks) == 500 and not loaded.errors
    assert all(spec.fail_to_pass for spec in loaded.eval_specs.values())
    dev = read_ids(SHARED / "splits" / "dev_ids.txt")
    loaded = load_tasks(path, instance_ids=dev)
    assert len(loaded.tasks) == len(dev) == 119 and not loaded.missing_ids
