"""The verdict cache carries verdicts between machines: export, merge, and the chain rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchfleet.errors import DataError
from patchfleet.runs.verdicts import VerdictCache

CHAIN = ["git apply", "patch --fuzz"]
REPORT = {"x__y-1": {"resolved": True}}


def cache(root: Path, chain: list[str] = CHAIN) -> VerdictCache:
    return VerdictCache(root, chain=chain, stable_methods={"git apply"})


@pytest.mark.parametrize("name", ["verdicts.jsonl", "verdicts.jsonl.gz"])
def test_an_export_merged_elsewhere_gives_the_same_verdicts_without_local_paths(tmp_path, name) -> None:
    here = cache(tmp_path / "here")
    here.put("x__y-1", "k1", REPORT, "git apply", tmp_path / "logs")
    here.put("x__y-2", "k2", {"x__y-2": {"resolved": False}}, "patch --fuzz", tmp_path / "logs")
    assert here.export(tmp_path / name) == 2

    there = cache(tmp_path / "there")
    there.put("x__y-2", "k2", {"x__y-2": {"resolved": True}}, "git apply", tmp_path / "mine")
    assert there.merge(tmp_path / name) == 1  # what is already there stays as it is
    assert there.get("x__y-1", "k1") == REPORT
    assert there.get("x__y-2", "k2") == {"x__y-2": {"resolved": True}}
    assert str(tmp_path) not in (tmp_path / name).read_bytes().decode("latin-1")  # no machine paths
    assert there.get("x__y-1", "missing") is None


def test_a_verdict_made_with_another_chain_is_reused_only_if_its_method_is_stable(tmp_path) -> None:
    old = cache(tmp_path, chain=["git apply"])
    old.put("x__y-1", "plain", REPORT, "git apply", tmp_path)
    old.put("x__y-1", "fuzz", REPORT, "patch --fuzz", tmp_path)
    new = cache(tmp_path)
    assert new.get("x__y-1", "plain") == REPORT and new.method("x__y-1", "plain") == "git apply"
    assert new.get("x__y-1", "fuzz") is None and new.method("x__y-1", "fuzz") is None


def test_a_bad_export_line_is_an_error_that_names_the_line(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instance_id": "x__y-1", "key": "k", "report": {}}\n{"key": "k2"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2"):
        cache(tmp_path / "c").merge(bad)
    evil = tmp_path / "evil.jsonl"
    evil.write_text('{"instance_id": "../x", "key": "k", "report": {}}\n')
    with pytest.raises(DataError, match="bad instance id"):
        cache(tmp_path / "c").merge(evil)
