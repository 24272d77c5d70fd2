"""Candidates from predictions files and trajectory outcomes: formats, dedup, bad rows, real data."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

import pytest

from patchfleet.selection.candidates import (
    attach_trajectories,
    load_candidates,
    load_candidates_from_outcomes,
    load_candidates_from_predictions,
    merge_candidates,
)
from patchfleet.selection.model import CandidateSource
from patchfleet.selection.normalize import hunks_consistent, patch_id

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"

PATCH = (
    "diff --git a/calc.py b/calc.py\n"
    "index 1111111..2222222 100644\n"
    "--- a/calc.py\n"
    "+++ b/calc.py\n"
    "@@ -1,3 +1,3 @@\n"
    " def add(a, b):\n"
    "-    return a - b\n"
    "+    return a + b\n"
    " \n"
)
DAMAGED = PATCH.removesuffix(" \n").replace("index 1111111..2222222", "index 3333333..4444444")
OTHER = PATCH.replace("a + b", "b + a")


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_submission_rows_dedup_by_whitespace_normalised_patch_and_drop_verdicts(tmp_path):
    rows = [
        {"submission": "sysA", "instance_id": "i-1", "model_patch": DAMAGED, "resolved": True},
        {"submission": "sysB", "instance_id": "i-1", "model_patch": PATCH, "resolved": False},
        {"submission": "sysC", "instance_id": "i-1", "model_patch": OTHER, "resolved": True},
        {"submission": "sysA", "instance_id": "i-2", "model_patch": "", "resolved": False},
        {"submission": "sysB", "instance_id": "i-2", "model_patch": None, "resolved": False},
        {"submission": "sysC", "instance_id": "i-2", "model_patch": PATCH.replace("\n", "\r\n")},
    ]
    path = write_jsonl(tmp_path / "cands.jsonl", rows)
    loaded = load_candidates_from_predictions(path)
    assert loaded.errors == [] and loaded.rows == 6 and loaded.empty == 2 and loaded.total == 3
    first, other = loaded.candidates["i-1"]
    assert first.id == patch_id(PATCH) == patch_id(DAMAGED) and other.id == patch_id(OTHER)
    assert first.patch == PATCH and hunks_consistent(first.patch)  # the undamaged copy is kept
    assert [(s.name, s.ref) for s in first.sources] == [("sysA", f"{path}:1"), ("sysB", f"{path}:2")]
    assert all(s.kind == "predictions" and s.trajectory is None for s in first.sources)
    (only,) = loaded.candidates["i-2"]
    assert only.id == first.id and only.sources[0].name == "sysC"
    assert not any("resolved" in keys(c.model_dump()) for found in loaded.candidates.values() for c in found)
    assert "resolved" not in json.dumps(
        [c.model_dump() for found in loaded.candidates.values() for c in found]
    )


def test_swe_bench_json_list_and_dict_formats(tmp_path):
    as_list = tmp_path / "preds.json"
    as_list.write_text(
        json.dumps([{"instance_id": "i-1", "model_patch": PATCH, "model_name_or_path": "listed"}])
    )
    as_dict = tmp_path / "dict.json"
    as_dict.write_text(json.dumps({"i-1": {"model_patch": OTHER}, "i-2": {"model_patch": PATCH}}))
    loaded = load_candidates_from_predictions(as_list)
    assert loaded.candidates["i-1"][0].sources[0].name == "listed"
    loaded = load_candidates_from_predictions(as_dict)
    assert loaded.total == 2 and loaded.candidates["i-1"][0].sources[0].name == "dict"  # the file's stem
    assert loaded.candidates["i-2"][0].sources[0].ref == f"{as_dict} key 'i-2'"


def test_a_bad_row_names_its_file_and_line_and_the_others_load(tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"instance_id": "i-1", "model_patch": PATCH},
            "{not json",
            {"instance_id": "i-2"},
            {"instance_id": "i-3", "model_patch": 7},
            ["a", "list"],
            {"model_patch": PATCH},
            {"instance_id": "i-4", "model_patch": OTHER, "submission": "s"},
        ],
    )
    loaded = load_candidates_from_predictions(path)
    assert sorted(loaded.candidates) == ["i-1", "i-4"]
    messages = [str(e) for e in loaded.errors]
    assert [m.split(": ")[0] for m in messages] == [f"{path}:{n}" for n in (2, 3, 4, 5, 6)]
    assert "missing field model_patch" in messages[1] and "must be a string or null" in messages[2]


def test_a_bad_file_is_an_error_not_an_exception(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{oops")
    unsupported = tmp_path / "preds.txt"
    unsupported.write_text("x")
    loaded = load_candidates(
        predictions=[broken, tmp_path / "missing.jsonl", tmp_path / "missing-name", unsupported]
    )
    assert loaded.total == 0 and len(loaded.errors) == 4
    assert "unsupported format" in str(loaded.errors[3])
    assert str(broken) in str(loaded.errors[0]) and "missing.jsonl: no such file" in str(loaded.errors[1])


def outcomes(out: Path, instance_id: str, rows: list) -> Path:
    path = out / instance_id / "outcomes.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"instance_id": instance_id, "image": "img", "trajectories": rows}))
    return path


def row(index: int, patch: str | None, trajectory: str | None, model: str = "openai/m") -> dict:
    return {
        "index": index,
        "exit_status": "Submitted",
        "model": model,
        "trajectory": trajectory,
        "patch": patch,
    }


def test_outcomes_files_and_folders_with_predictions_merged(tmp_path):
    out = tmp_path / "run"
    outcomes(
        out,
        "i-1",
        [
            row(0, PATCH, "run/i-1/0.traj.json"),
            row(1, DAMAGED, "run/i-1/1.traj.json", model="anthropic/c"),
            row(2, None, None),  # a trajectory that failed before submitting
        ],
    )
    outcomes(out, "i-2", [row(0, OTHER, "run/i-2/0.traj.json"), "not a row"])
    single = load_candidates_from_outcomes(out / "i-1" / "outcomes.json")
    assert single.total == 1 and single.empty == 1 and single.rows == 3
    (found,) = single.candidates["i-1"]
    assert [(s.kind, s.name, s.trajectory) for s in found.sources] == [
        ("trajectory", "openai/m", "run/i-1/0.traj.json"),
        ("trajectory", "anthropic/c", "run/i-1/1.traj.json"),
    ]
    preds = write_jsonl(
        tmp_path / "p.jsonl", [{"submission": "sys", "instance_id": "i-1", "model_patch": PATCH}]
    )
    loaded = load_candidates(predictions=[preds], outcomes=[out])
    assert loaded.total == 2 and [str(e).split(": ")[0] for e in loaded.errors] == [
        f"{out / 'i-2' / 'outcomes.json'} trajectory 2"
    ]
    assert [s.kind for s in loaded.candidates["i-1"][0].sources] == [
        "trajectory",
        "trajectory",
        "predictions",
    ]
    assert load_candidates_from_outcomes(tmp_path / "p.jsonl").errors  # not an outcomes document
    assert load_candidates_from_outcomes(tmp_path).errors  # a folder without outcomes files


def test_merge_keeps_every_source_once_and_drops_empty_patches():
    from patchfleet.selection.candidates import make_candidate

    a = make_candidate("i", DAMAGED, CandidateSource(kind="predictions", name="a", ref="f:1"))
    b = make_candidate("i", PATCH, CandidateSource(kind="predictions", name="b", ref="f:2"))
    empty = make_candidate("i", "  \n", CandidateSource(kind="predictions", name="c", ref="f:3"))
    elsewhere = make_candidate("j", PATCH, CandidateSource(kind="predictions", name="b", ref="g:1"))
    merged = merge_candidates([a, empty], [b, a], [elsewhere])
    assert [(c.instance_id, len(c.sources)) for c in merged] == [("i", 2), ("j", 1)]
    assert merged[0].patch == PATCH


def keys(value) -> set[str]:
    """Every key of a nested JSON-like value."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list | tuple):
        return {k for v in value for k in keys(v)}
    return set()


@pytest.mark.realdata
def test_the_real_candidates_file_loads_without_verdicts():
    path = SHARED / "candidates_dev.jsonl"
    if not path.is_file():
        pytest.skip("../shared/data is not beside the project")
    loaded = load_candidates_from_predictions(path)
    assert loaded.errors == [] and loaded.rows == 1426
    assert len(loaded.candidates) == 119
    candidates = [c for found in loaded.candidates.values() for c in found]
    assert not any("resolved" in keys(c.model_dump()) for c in candidates)  # ("resolved" is in patches)
    per_instance = [len(found) for found in loaded.candidates.values()]
    sources = sum(len(c.sources) for c in candidates)
    # measured: 1 empty patch dropped; 1,425 patches are 1,159 distinct candidates, 9.74 per instance
    # (3 to 12); 153 candidates were proposed by more than one submission
    assert sources == loaded.rows - loaded.empty == 1425 and loaded.empty == 1
    assert len(candidates) == 1159 and round(statistics.fmean(per_instance), 2) == 9.74
    assert sum(len(c.sources) > 1 for c in candidates) == 153
    assert Counter(len(s.name) > 0 for c in candidates for s in c.sources) == Counter({True: 1425})
    # the recorded mini-swe-agent trajectories attach to their submission's candidates (118 of 119:
    # one submitted nothing)
    folder = SHARED / "trajectories" / "mini-swe-agent-gemini-3-pro"
    attached, errors = attach_trajectories(candidates, [folder])
    linked = [c for c in attached if any(s.trajectory for s in c.sources)]
    assert errors == [] and len(linked) == 118
    assert all(any("gemini-3-pro" in s.name and s.trajectory for s in c.sources) for c in linked)


def test_trajectory_files_attach_to_the_candidate_they_submitted(tmp_path):
    preds = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"submission": "mini", "instance_id": "i-1", "model_patch": DAMAGED},
            {"submission": "other", "instance_id": "i-1", "model_patch": OTHER},
        ],
    )
    folder = tmp_path / "trajs"
    folder.mkdir()
    document = {"messages": [], "info": {"submission": PATCH, "exit_status": "Submitted"}}
    (folder / "i-1.traj.json").write_text(json.dumps(document))
    (folder / "i-2.traj.json").write_text("{broken")
    loaded = load_candidates_from_predictions(preds)
    extra = load_candidates_from_predictions(
        write_jsonl(tmp_path / "q.jsonl", [{"instance_id": "i-2", "model_patch": PATCH}])
    )
    attached, errors = attach_trajectories([*loaded.candidates["i-1"], *extra.candidates["i-2"]], [folder])
    assert [s.trajectory for c in attached for s in c.sources] == [str(folder / "i-1.traj.json"), None, None]
    assert len(errors) == 1 and "i-2.traj.json" in str(errors[0])
