"""The compact export of stored selection folders, without containers: matrix rows as references into the
cell cache under the image they were read under, patches as references into the predictions file, the
round trip exact, old exports still readable, a missing cell or a changed row a clear error."""

from __future__ import annotations

import json

import pytest

from patchfleet.atomic import write_json_atomic, write_text_atomic
from patchfleet.errors import DataError
from patchfleet.selection.candidates import load_candidates_from_predictions
from patchfleet.selection.execution import PATCH_ERROR, patch_hash
from patchfleet.selection.export import STORED, DataRows, export_entry, import_entry
from patchfleet.selection.matrix_cache import MatrixCache
from patchfleet.selection.model import BASE, Candidate, Cell, Contract, TestCase, TestKind
from patchfleet.selection.outputs import output_hash
from patchfleet.selection.pipeline import load_inputs

IID = "o__r-1"
OLD, NEW = "patchfleet/inst:o__r-1-old#a", "patchfleet/inst:o__r-1-new#a"


def patch(line: str) -> str:
    return f"--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 0\n+{line}\n"


def cell(candidate: str, test: str, exit_code: int | None = 0, output: str = "", **extra) -> Cell:
    return Cell(
        instance_id=IID,
        candidate_id=candidate,
        test_id=test,
        exit_code=exit_code,
        output=output,
        output_hash=output_hash(output),
        **extra,
    )


@pytest.fixture
def stored(tmp_path):
    """A finished folder as select_task leaves it, its cells in a cache (under an old and a new image),
    and the predictions file its patches came from, read from a copy in another folder."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [
        {"instance_id": IID, "submission": "a", "model_patch": patch("x = 1"), "resolved": True},
        {"instance_id": IID, "submission": "b", "model_patch": patch("x = 1"), "resolved": True},
        {"instance_id": IID, "submission": "c", "model_patch": patch("x = 2"), "resolved": False},
    ]
    (data / "preds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    elsewhere = tmp_path / "other-machine" / "data"
    elsewhere.mkdir(parents=True)
    (elsewhere / "preds.jsonl").write_text((data / "preds.jsonl").read_text())
    loaded = load_candidates_from_predictions(elsewhere / "preds.jsonl").candidates[IID]
    ours = Candidate(id="ours", instance_id=IID, patch=patch("x = 3"))  # from no data file: kept whole
    broken = Candidate(id="broken", instance_id=IID, patch="not a patch\n", flags=("does-not-apply",))
    candidates = [loaded[0].model_copy(update={"ast_key": "k1"}), loaded[1], ours, broken]
    tests = [
        TestCase.make(
            instance_id=IID, kind=TestKind.HARVESTED, contract=Contract.BEHAVIOUR, command=f"python t{n}.py"
        )
        for n in range(2)
    ]
    cache = MatrixCache(tmp_path / "cells")
    matrix = []
    for candidate_id, text in [(BASE, ""), *((c.id, c.patch) for c in candidates[:3])]:
        for n, test in enumerate(tests):
            # the same (patch, test) ran under the old image too, with another output: not what was scored
            cache.put_cell(OLD, patch_hash(text), cell(candidate_id, test.id, output="old"))
            scored = cell(candidate_id, test.id, exit_code=n, output=f"{candidate_id} {n}", duration=0.25)
            cache.put_cell(NEW, patch_hash(text), scored)
            matrix.append(scored)
    matrix += [cell(broken.id, t.id, exit_code=None, error=PATCH_ERROR) for t in tests]  # never cached
    folder = tmp_path / "work" / "selection" / IID
    write_json_atomic(folder / "candidates.json", [c.model_dump(mode="json") for c in candidates])
    write_json_atomic(
        folder / "tests.json", {"key": "k", "tests": [t.model_dump(mode="json") for t in tests]}
    )
    write_text_atomic(folder / "matrix.jsonl", "".join(c.model_dump_json() + "\n" for c in matrix))
    write_json_atomic(folder / "verifier.json", {})
    write_json_atomic(folder / "decision.json", {"matrix": {"containers": 4}})
    return folder, cache, DataRows(data)


def round_trip(tmp_path, entry: dict, cache: MatrixCache, data: DataRows):
    """The entry through JSON, imported where a fresh cache holds only the exported cells."""
    cache.export(tmp_path / "cells.jsonl.gz")
    fresh = MatrixCache(tmp_path / "elsewhere" / "cells")
    fresh.merge(tmp_path / "cells.jsonl.gz")
    folder = tmp_path / "elsewhere" / "selection" / IID
    import_entry(json.loads(json.dumps(entry)), folder, fresh, data)
    return folder


def test_the_export_carries_no_matrix_rows_and_no_patch_of_the_data_files(stored):
    folder, cache, data = stored
    entry = export_entry(folder, cache, data)
    assert sorted(entry["files"]) == ["decision.json", "tests.json", "verifier.json"]
    assert entry["matrix"]["image"] == NEW  # the image whose cells are the ones scored
    literal = [c for c in entry["matrix"]["cells"] if isinstance(c, str)]
    assert len(literal) == 2 and all(PATCH_ERROR in line for line in literal)  # not in the cache
    whole = [c for c in entry["candidates"] if "patch" in c]
    assert [c["id"] for c in whole] == ["ours", "broken"]
    text = json.dumps(entry)
    assert "x = 1" not in text and "x = 2" not in text and "other-machine" not in text
    assert json.loads(text)["candidates"][0]["sources"][0]["ref"] == "preds.jsonl:1"


def test_an_import_restores_exactly_what_was_scored(tmp_path, stored):
    folder, cache, data = stored
    restored = round_trip(tmp_path, export_entry(folder, cache, data), cache, data)
    assert (restored / "matrix.jsonl").read_text() == (folder / "matrix.jsonl").read_text()
    for name in ("tests.json", "verifier.json", "decision.json"):
        assert (restored / name).read_text() == (folder / name).read_text()
    before, after = load_inputs(folder), load_inputs(restored)
    assert after.matrix == before.matrix and after.tests == before.tests
    # the patches come back from the data folder here: refs name it, everything else is as stored
    refs = [s.ref for c in after.candidates for s in c.sources]
    assert refs == [f"{data.root / 'preds.jsonl'}:{n}" for n in (1, 2, 3)]

    def strip(c: Candidate) -> Candidate:
        return c.model_copy(update={"sources": tuple(s.model_copy(update={"ref": ""}) for s in c.sources)})

    assert [strip(c) for c in after.candidates] == [strip(c) for c in before.candidates]


def test_an_old_export_with_every_file_verbatim_still_imports(tmp_path, stored):
    folder, _, _ = stored
    entry = {"instance_id": IID, "files": {name: (folder / name).read_text() for name in STORED}}
    restored = tmp_path / "old" / IID
    import_entry(entry, restored)  # refers to nothing: needs neither cache nor data
    for name in STORED:
        assert (restored / name).read_text() == (folder / name).read_text()
    with pytest.raises(DataError, match="newer than this code reads"):
        import_entry({**entry, "format": 3}, tmp_path / "newer" / IID)


def test_without_the_cells_or_with_a_changed_row_the_import_says_which(tmp_path, stored):
    folder, cache, data = stored
    entry = export_entry(folder, cache, data)
    with pytest.raises(DataError, match=f"{IID}: cell .* import the cell export first"):
        import_entry(entry, tmp_path / "a" / IID, MatrixCache(tmp_path / "empty"), data)
    assert not (tmp_path / "a" / IID / "decision.json").exists()  # nothing half-finished looks done
    lines = (data.root / "preds.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace("x = 1", "x = 9")
    (data.root / "preds.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"preds\.jsonl:1 no longer holds the patch"):
        import_entry(entry, tmp_path / "b" / IID, cache, DataRows(data.root))


def test_without_a_cache_or_data_folder_the_files_stay_verbatim(stored):
    folder, _, _ = stored
    entry = export_entry(folder)
    assert sorted(entry["files"]) == sorted(STORED)
    assert "matrix" not in entry and "candidates" not in entry
