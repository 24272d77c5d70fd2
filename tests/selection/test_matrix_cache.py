"""The matrix cache without containers: appends from many threads, a line torn by a kill, export and
merge across machines; output normalisation; behaviour clusters over a recorded matrix."""

from __future__ import annotations

import gzip
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from patchfleet.errors import DataError
from patchfleet.selection.matrix_cache import MatrixCache
from patchfleet.selection.model import Cell
from patchfleet.selection.outputs import cap_output, normalise_output, output_hash

IMAGE = "patchfleet/inst:x-0123"


def cell(candidate: str, test: str, exit_code: int | None = 0, output: str = "", **extra) -> Cell:
    return Cell(
        instance_id="i-1",
        candidate_id=candidate,
        test_id=test,
        exit_code=exit_code,
        output=output,
        output_hash=output_hash(output),
        **extra,
    )


def test_threads_append_whole_lines_and_a_new_cache_object_reads_them(tmp_path):
    cache = MatrixCache(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda n: cache.put_cell(IMAGE, f"p{n % 5}", cell(f"c{n % 5}", f"t{n}", output="x" * 5000)),
                range(200),
            )
        )
    lines = (tmp_path / "i-1.jsonl").read_text().splitlines()
    assert len(lines) == 200 and all(json.loads(line)["kind"] == "cell" for line in lines)
    fresh = MatrixCache(tmp_path)
    assert fresh.get_cell("i-1", IMAGE, "p3", "t8").candidate_id == "c3"
    assert fresh.get_cell("i-1", IMAGE, "p3", "t9") is None  # t9 was written with p4
    assert fresh.get_cell("i-1", "other-image", "p3", "t8") is None


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_a_fresh_line(tmp_path):
    cache = MatrixCache(tmp_path)
    cache.put_cell(IMAGE, "p", cell("c", "t1"))
    with (tmp_path / "i-1.jsonl").open("a") as handle:
        handle.write('{"kind": "cell", "image": "patchfl')  # killed mid-write
    again = MatrixCache(tmp_path)
    assert again.get_cell("i-1", IMAGE, "p", "t1") is not None
    again.put_cell(IMAGE, "p", cell("c", "t2", exit_code=2))
    third = MatrixCache(tmp_path)
    assert third.get_cell("i-1", IMAGE, "p", "t2").exit_code == 2
    assert len(list(third.entries())) == 2


def test_export_merge_round_trip_and_bad_exports(tmp_path):
    first = MatrixCache(tmp_path / "a")
    first.put_cell(IMAGE, "p", cell("c", "t1"))
    first.put_check("i-1", IMAGE, "p", {"candidate_id": "c", "applied": True, "method": "git apply"})
    other = cell("c", "t1").model_copy(update={"instance_id": "i-2"})
    first.put_cell(IMAGE, "p", other)
    export = tmp_path / "cells.jsonl.gz"
    assert first.export(export) == 3
    assert len(gzip.decompress(export.read_bytes()).splitlines()) == 3

    second = MatrixCache(tmp_path / "b")
    second.put_cell(IMAGE, "p", cell("c", "t1", exit_code=1))  # already here: kept, not overwritten
    assert second.merge(export) == 2
    assert second.get_cell("i-1", IMAGE, "p", "t1").exit_code == 1
    assert second.get_check("i-1", IMAGE, "p")["method"] == "git apply"
    assert second.get_cell("i-2", IMAGE, "p", "t1") is not None
    plain = tmp_path / "cells.jsonl"
    assert second.export(plain) == 3 and MatrixCache(tmp_path / "c").merge(plain) == 3

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instance_id": "i-1", "kind": "cell", "image": "x"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1"):
        second.merge(bad)
    bad.write_text(
        json.dumps({"instance_id": "../etc", "kind": "check", "image": "x", "patch": "p", "check": {}})
    )
    with pytest.raises(DataError, match="bad instance id"):
        second.merge(bad)


def test_output_normalisation_strips_what_differs_between_identical_runs():
    one = (
        "<Foo object at 0x7f3a2c1b9d30>\nRan 3 tests in 0.012s\n===== 2 passed in 1.53s =====\n"
        "took 12.5 ms, 3.25 seconds\n/tmp/tmpab_12x/file.py\n/tmp/pytest-of-root/pytest-7/test0\n"
        "pid 4242 at 2025-01-02 10:11:12.345 and 10:11:12\r\nresult: 42   \n"
    )
    two = (
        "<Foo object at 0x55d0c0ffee10>\nRan 3 tests in 0.009s\n===== 2 passed in 0.71s =====\n"
        "took 8.1 ms, 1.05 seconds\n/tmp/tmpzz9/file.py\n/tmp/pytest-of-root/pytest-12/test0\n"
        "pid 17 at 2026-12-01 09:00:00 and 23:59:59\nresult: 42\n"
    )
    assert normalise_output(one) == normalise_output(two)
    assert normalise_output("result: 42") != normalise_output("result: 43")  # numbers that matter stay
    assert normalise_output("3 items") == "3 items"
    capped = cap_output("a" * 100 + "b" * 100, limit=50)
    assert capped.startswith("a" * 25) and capped.endswith("b" * 25) and "150 characters omitted" in capped
