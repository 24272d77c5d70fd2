"""`ledger export` / `ledger import`: a run folder carried to another machine in one archive."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patchfleet.atomic import write_json_atomic
from patchfleet.errors import ConfigError, DataError
from patchfleet.runs.archive import REDACTED, export_run, import_run
from patchfleet.runs.cli import app
from patchfleet.runs.ledger import Ledger
from tests.runs.test_ledger import make_run

ENV = {"COLUMNS": "200"}


def _run_with_caches(out: Path) -> None:
    """make_run's folder plus what a real batch adds: a config naming machine paths, a verdict that names
    its log by absolute path, a log, a cell cache and a torn temporary file."""
    make_run(out)
    run = json.loads((out / "run.json").read_text())
    run["config"]["data"] = {"mirrors": "/home/someone/mirrors", "dataset": "../shared/data/x.jsonl"}
    write_json_atomic(out / "run.json", run)
    log = out / "eval" / "logs" / "run_evaluation" / "r1" / "m" / "a__b-1" / "test_output.txt"
    log.parent.mkdir(parents=True)
    log.write_text("a very long test log\n")
    write_json_atomic(
        out / "eval" / "verdicts" / "a__b-1" / "k1.json",
        {"report": {"a__b-1": {"resolved": True}}, "logs": str(log.parent.resolve()), "method": "git apply"},
    )
    (out / "cells").mkdir()
    (out / "cells" / "a__b-1.jsonl").write_text('{"image": "i", "patch": "p", "test": "t", "exit_code": 0}\n')
    (out / "a__b-1" / "build.log").write_text("pip output\n")
    (out / "a__b-1" / ".task.json.abc.tmp").write_text("{torn")
    (out / "ledger.sqlite").write_text("not carried")


def test_export_carries_the_files_without_logs_database_or_machine_paths(tmp_path):
    out = tmp_path / "run"
    _run_with_caches(out)
    packed = export_run(out, tmp_path / "run.tar.gz")
    with tarfile.open(tmp_path / "run.tar.gz") as tar:
        names = set(tar.getnames())
        run = json.loads(tar.extractfile("run.json").read())
        verdict = json.loads(tar.extractfile("eval/verdicts/a__b-1/k1.json").read())
        text = b"".join(tar.extractfile(n).read() for n in names)
    assert {"run.json", "a__b-1/task.json", "a__b-1/0.traj.json", "a__b-1/attempts/1.1.traj.json"} <= names
    assert {"cells/a__b-1.jsonl", "selection/a__b-1/matrix.jsonl", "eval/verdicts/a__b-1/k1.json"} <= names
    assert not any(n.startswith("eval/logs/") or n.endswith((".log", ".tmp", "ledger.sqlite")) for n in names)
    assert packed.skipped_logs == 2 and packed.files == len(names)
    assert run["config"]["data"] == {"mirrors": REDACTED, "dataset": "../shared/data/x.jsonl"}
    assert verdict["logs"] == "./eval/logs/run_evaluation/r1/m/a__b-1"
    assert str(tmp_path).encode() not in text
    with_logs = export_run(out, tmp_path / "all.tar", with_logs=True)
    assert with_logs.files == packed.files + 2 and with_logs.skipped_logs == 0


def test_import_fills_a_new_folder_and_keeps_what_a_resumed_run_already_has(tmp_path):
    out = tmp_path / "run"
    _run_with_caches(out)
    export_run(out, tmp_path / "run.tar.gz")
    there = tmp_path / "elsewhere"
    first = import_run(tmp_path / "run.tar.gz", there)
    assert (first.run_id, first.kept) == ("r1", 0)
    assert (there / "selection" / "a__b-1" / "decision.json").read_text() == (
        out / "selection" / "a__b-1" / "decision.json"
    ).read_text()
    # the copy went on running: its newer task file survives a second import, a lost file comes back
    write_json_atomic(there / "a__b-2" / "task.json", {"status": "done", "stage": "done"})
    (there / "a__b-1" / "0.traj.json").unlink()
    again = import_run(tmp_path / "run.tar.gz", there)
    assert (again.added, again.kept) == (1, first.added - 1)
    assert json.loads((there / "a__b-2" / "task.json").read_text())["status"] == "done"
    assert (there / "a__b-1" / "0.traj.json").is_file()


def test_import_refuses_another_run_a_missing_or_foreign_archive_and_unsafe_names(tmp_path):
    out = tmp_path / "run"
    make_run(out)
    export_run(out, tmp_path / "run.tar")
    other = tmp_path / "other"
    write_json_atomic(other / "run.json", {"run_id": "r2", "config": {}})
    with pytest.raises(ConfigError, match="holds run r2, the archive run r1"):
        import_run(tmp_path / "run.tar", other)
    with pytest.raises(ConfigError, match="no such archive"):
        import_run(tmp_path / "nope.tar", tmp_path / "x")
    (tmp_path / "junk.tar").write_text("not a tar file")
    with pytest.raises(DataError, match="not a run archive"):
        import_run(tmp_path / "junk.tar", tmp_path / "x")
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        for name in ("run.json", "../escape.json"):
            source = out / "run.json"
            tar.add(source, arcname=name)
    with pytest.raises(DataError, match="unsafe member name"):
        import_run(evil, tmp_path / "x")
    assert not (tmp_path / "escape.json").exists()
    with pytest.raises(DataError, match="not a patchfleet run folder"):
        export_run(tmp_path / "x", tmp_path / "x.tar")
    with pytest.raises(ConfigError, match="outside the run folder"):
        export_run(out, out / "inside.tar")


def test_the_commands_round_trip_a_run_and_index_it(tmp_path):
    out = tmp_path / "run"
    _run_with_caches(out)
    archive = tmp_path / "run.tar.gz"
    exported = CliRunner().invoke(app, ["ledger", "export", str(out), str(archive)], env=ENV)
    assert exported.exit_code == 0, exported.output
    assert "2 log file(s) left out" in exported.output
    there = tmp_path / "there"
    imported = CliRunner().invoke(app, ["ledger", "import", str(archive), str(there)], env=ENV)
    assert imported.exit_code == 0, imported.output
    assert "run r1:" in imported.output and "3 task(s) indexed" in imported.output
    with Ledger(f"sqlite:///{there / 'ledger.sqlite'}") as ledger:
        assert ledger.counts("r1") == {"Submitted": 1, "LimitsExceeded": 1, "Running": 1}
    for args in (["export", str(tmp_path / "nope"), str(archive)], ["import", str(tmp_path / "no.tar"), "x"]):
        bad = CliRunner().invoke(app, ["ledger", *args], env=ENV)
        assert bad.exit_code == 2 and "Traceback" not in bad.output
        assert len(bad.output.strip().splitlines()) == 1, bad.output
