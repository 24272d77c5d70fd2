"""The ledger indexes a run folder's files on SQLite and on a real PostgreSQL server the test starts, and a
ledger rebuilt from the files alone equals the one that was kept up to date while the run went on."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchfleet.atomic import write_json_atomic
from patchfleet.runs.layout import RunLayout
from patchfleet.runs.ledger import Ledger


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port, run as a non-root user."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql"
        )
    pytest.importorskip("psycopg", reason="psycopg is a dev dependency: pip install -e '.[dev]'")
    root = Path(tempfile.mkdtemp(prefix="patchfleet-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    run = lambda *args: subprocess.run([*prefix, *args], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -h 127.0.0.1 -k {root} -F"
    run(str(pg_bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _trajectory(status: str, cost: float, steps: int, error: dict | None = None) -> dict:
    return {
        "trajectory_format": "patchfleet-1",
        "messages": [],
        "info": {
            "exit_status": status,
            "submission": "diff --git a/x b/x\n" if status == "Submitted" else "",
            "model_stats": {"instance_cost": cost, "api_calls": steps},
            "model_name": "openai/fake",
            "steps": [{"step": i} for i in range(steps)],
            "temperature": 0.5,
            "error": error,
        },
    }


def make_run(out: Path) -> None:
    """A run folder as a batch leaves it: one finished task, one still running, one that failed."""
    layout = RunLayout(out)
    write_json_atomic(layout.run_file, {"run_id": "r1", "config": {"parallel": {"n": 2}}, "started_at": "t0"})
    done = layout.task_dir("a__b-1")
    write_json_atomic(layout.task_file("a__b-1"), {"status": "done", "stage": "done", "image": "img:1"})
    write_json_atomic(done / "0.traj.json", _trajectory("Submitted", 0.25, 3))
    write_json_atomic(done / "1.traj.json", _trajectory("LimitsExceeded", 0.5, 10))
    write_json_atomic(done / "attempts" / "1.1.traj.json", _trajectory("Running", 0.125, 2))
    selection = layout.selection_dir("a__b-1")
    write_json_atomic(
        selection / "tests.json",
        {"key": "k", "tests": [{"id": "t1", "kind": "generated", "contract": "exit-code", "origin": "x"}]},
    )
    cells = [
        {"candidate_id": "c1", "test_id": "t1", "exit_code": 2},
        {"candidate_id": "c1", "test_id": "t1", "exit_code": 0, "duration": 1.5},  # a later record wins
        {"candidate_id": "base", "test_id": "t1", "exit_code": 2},
    ]
    (selection / "matrix.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cells) + '{"torn')
    write_json_atomic(selection / "candidates.json", [{"id": "c1"}])
    decision = {"policy": "default", "chosen": "c1", "reasons": ["a", "b"]}
    write_json_atomic(selection / "decision.json", {"decision": decision, "others": {}})
    running = layout.task_dir("a__b-2")
    write_json_atomic(layout.task_file("a__b-2"), {"status": "running", "stage": "trajectories"})
    write_json_atomic(running / "0.traj.json", _trajectory("Running", 0.0625, 1))
    error = {"kind": "infrastructure", "message": "image build failed", "class": "ImageBuildError"}
    write_json_atomic(
        layout.task_file("a__b-3"),
        {"status": "error", "stage": "image", "error": error, "costs": {"selection": 0.0}},
    )


def check_ledger(url: str, out: Path) -> None:
    make_run(out)
    with Ledger(url) as live:
        live.start_run("r1", out, {"parallel": {"n": 2}}, "t0")
        for instance_id in ("a__b-1", "a__b-2", "a__b-3"):
            live.index_task("r1", out, instance_id)
            live.index_task("r1", out, instance_id)  # indexing again replaces, never duplicates
        assert live.counts("r1") == {"Submitted": 1, "LimitsExceeded": 1, "Running": 1}
        assert live.total_cost("r1") == pytest.approx(0.25 + 0.5 + 0.125 + 0.0625)
        tasks = {row["instance_id"]: row for row in live.rows(live_tables()["tasks"], "r1")}
        assert tasks["a__b-1"]["chosen"] == "c1" and tasks["a__b-1"]["status"] == "done"
        assert (tasks["a__b-3"]["error_kind"], tasks["a__b-3"]["stage"]) == ("infrastructure", "image")
        cells = live.rows(live_tables()["executions"], "r1")
        assert [(c["candidate_id"], c["exit_code"]) for c in cells] == [("base", 2), ("c1", 0)]
        decision = live.rows(live_tables()["decisions"], "r1")[0]
        assert (decision["candidates"], decision["reasons"]) == (1, "a\nb")
        before = live.snapshot("r1")
    # a fresh database, rebuilt from the files alone, holds the same rows
    with Ledger(url) as fresh:
        for table in live_tables().values():
            with fresh.engine.begin() as db:
                db.execute(table.delete())
        assert fresh.rebuild(out) == "r1"
        after = fresh.snapshot("r1")
    for rows in (before, after):
        for row in rows["runs"]:
            row.pop("updated_at")
    assert after == before


def live_tables():
    from patchfleet.runs import ledger

    return {t.name: t for t in (ledger.runs, *ledger.PER_TASK)}


def test_sqlite_ledger_indexes_the_files_and_rebuilds_from_them(tmp_path):
    check_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}", tmp_path / "run")


def test_postgresql_ledger_indexes_the_files_and_rebuilds_from_them(postgres_url, tmp_path):
    check_ledger(postgres_url, tmp_path / "run")


def test_a_bad_url_is_a_config_error():
    from patchfleet.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot open the ledger"):
        Ledger("nosuchdialect://x")


def test_the_ledger_command_rebuilds_a_run_folder(tmp_path):
    from typer.testing import CliRunner

    from patchfleet.runs.cli import app

    out = tmp_path / "run"
    make_run(out)
    result = CliRunner().invoke(app, ["ledger", "rebuild", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "run r1: 3 task(s)" in result.output and "cost $0.9375" in result.output
    with Ledger(f"sqlite:///{out / 'ledger.sqlite'}") as ledger:
        assert ledger.counts("r1") == {"Submitted": 1, "LimitsExceeded": 1, "Running": 1}
    missing = CliRunner().invoke(app, ["ledger", "rebuild", str(tmp_path / "nope")], env={"COLUMNS": "200"})
    assert missing.exit_code == 2 and "not a patchfleet run folder" in missing.output
