"""The SQL ledger of batch runs: an index of the run's files (runs, tasks, trajectories, tests, executions,
decisions, costs) for resume checks, queries and reports, on SQLite by default or any SQLAlchemy URL
(PostgreSQL for runs spread over several machines).

The files stay the source of truth: `index_task` replaces a task's rows with what its files say, and
`rebuild(out_dir)` reconstructs a whole run from them, so a lost or stale database costs nothing.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from patchfleet.agent.trajectory import read_state
from patchfleet.errors import ConfigError, DataError
from patchfleet.runs.layout import (
    CANDIDATES_FILE,
    DECISION_FILE,
    MATRIX_FILE,
    TESTS_FILE,
    RunLayout,
    read_json,
    read_jsonl,
)

metadata = MetaData()


def _key(*names: str) -> list[Column]:
    return [Column(name, String(255), primary_key=True) for name in names]


runs = Table(
    "runs",
    metadata,
    *_key("run_id"),
    Column("out_dir", Text, nullable=False),
    Column("started_at", String(40)),
    Column("updated_at", String(40)),
    Column("config", Text),
)
tasks = Table(
    "tasks",
    metadata,
    *_key("run_id", "instance_id"),
    Column("status", String(32)),  # running, done, error
    Column("stage", String(32)),
    Column("image", Text),
    Column("error_kind", String(32)),
    Column("error", Text),
    Column("chosen", String(64)),
)
trajectories = Table(
    "trajectories",
    metadata,
    *_key("run_id", "instance_id"),
    Column("idx", Integer, primary_key=True),
    Column("attempt", Integer, primary_key=True),  # 0: the current file; 1..: earlier attempts
    Column("exit_status", String(64)),
    Column("finished", Boolean),
    Column("steps", Integer),
    Column("cost", Float),
    Column("model", String(255)),
    Column("temperature", Float),
    Column("error_kind", String(32)),
    Column("error", Text),
    Column("path", Text),
)
tests = Table(
    "tests",
    metadata,
    *_key("run_id", "instance_id", "test_id"),
    Column("kind", String(32)),
    Column("contract", String(32)),
    Column("origin", Text),
)
executions = Table(
    "executions",
    metadata,
    *_key("run_id", "instance_id", "candidate_id", "test_id"),
    Column("exit_code", Integer),
    Column("timed_out", Boolean),
    Column("duration", Float),
    Column("error", Text),
)
decisions = Table(
    "decisions",
    metadata,
    *_key("run_id", "instance_id"),
    Column("policy", String(64)),
    Column("chosen", String(64)),
    Column("candidates", Integer),
    Column("reasons", Text),
)
costs = Table(
    "costs",
    metadata,
    *_key("run_id", "instance_id", "stage", "ref"),
    Column("usd", Float, nullable=False),
)
PER_TASK = (tasks, trajectories, tests, executions, decisions, costs)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Ledger:
    """One database; thread-safe (writes are serialised in-process, SQLite waits for other processes)."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = create_engine(url, **_engine_options(url))
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            metadata.create_all(self.engine)
        except (SQLAlchemyError, ImportError) as exc:
            raise ConfigError(f"cannot open the ledger {_safe(url)}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------------
    def start_run(self, run_id: str, out_dir: Path, config: dict[str, Any], started_at: str = "") -> None:
        row = {
            "run_id": run_id,
            "out_dir": str(out_dir),
            "started_at": started_at or _now(),
            "updated_at": _now(),
            "config": json.dumps(config, sort_keys=True, default=str),
        }
        with self._lock, self.engine.begin() as db:
            db.execute(delete(runs).where(runs.c.run_id == run_id))
            db.execute(insert(runs), [row])

    def index_task(self, run_id: str, out_dir: Path, instance_id: str) -> None:
        """Replace the task's rows with what its files say now (one transaction)."""
        rows = task_rows(RunLayout(out_dir), run_id, instance_id)
        with self._lock, self.engine.begin() as db:
            for table in PER_TASK:
                db.execute(delete(table).where(table.c.run_id == run_id, table.c.instance_id == instance_id))
            for table, table_rows in rows.items():
                if table_rows:
                    db.execute(insert(table), table_rows)
            db.execute(runs.update().where(runs.c.run_id == run_id).values(updated_at=_now()))

    def rebuild(self, out_dir: Path) -> str:
        """Reconstruct a run's rows from its folder alone; returns its run id."""
        layout = RunLayout(out_dir)
        document = read_json(layout.run_file)
        if not isinstance(document, dict) or "run_id" not in document:
            raise DataError(f"{layout.run_file}: not a patchfleet run folder (no run id)")
        run_id = str(document["run_id"])
        with self._lock, self.engine.begin() as db:
            for table in PER_TASK:
                db.execute(delete(table).where(table.c.run_id == run_id))
        self.start_run(run_id, out_dir, document.get("config") or {}, document.get("started_at", ""))
        for instance_id in layout.task_ids():
            self.index_task(run_id, out_dir, instance_id)
        return run_id

    # -- reading ------------------------------------------------------------------------------------
    def rows(self, table: Table, run_id: str) -> list[dict[str, Any]]:
        """Every row of `table` for the run, in primary-key order."""
        query = select(table).where(table.c.run_id == run_id).order_by(*table.primary_key.columns)
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(query)]

    def total_cost(self, run_id: str) -> float:
        with self.engine.connect() as db:
            value = db.execute(select(func.sum(costs.c.usd)).where(costs.c.run_id == run_id)).scalar()
        return float(value or 0.0)

    def counts(self, run_id: str) -> dict[str, int]:
        """Trajectories by exit status (current attempts only)."""
        query = (
            select(trajectories.c.exit_status, func.count())
            .where(trajectories.c.run_id == run_id, trajectories.c.attempt == 0)
            .group_by(trajectories.c.exit_status)
        )
        with self.engine.connect() as db:
            return {status: int(n) for status, n in db.execute(query)}

    def snapshot(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every table's rows of the run (for comparisons: a rebuilt ledger equals the live one)."""
        return {table.name: self.rows(table, run_id) for table in (runs, *PER_TASK)}


def task_rows(layout: RunLayout, run_id: str, instance_id: str) -> dict[Table, list[dict[str, Any]]]:
    """The rows one task's files give, by table."""
    base = {"run_id": run_id, "instance_id": instance_id}
    folder = layout.task_dir(instance_id)
    selection = layout.selection_dir(instance_id)
    task = read_json(layout.task_file(instance_id), {}) or {}
    error = task.get("error") or {}
    decision = read_json(selection / DECISION_FILE)
    if isinstance(decision, dict) and isinstance(decision.get("decision"), dict):
        decision = decision["decision"]  # the pipeline's file: the decision, every other policy's, timings
    rows: dict[Table, list[dict[str, Any]]] = {table: [] for table in PER_TASK}
    rows[tasks].append(
        {
            **base,
            "status": task.get("status"),
            "stage": task.get("stage"),
            "image": task.get("image"),
            "error_kind": error.get("kind"),
            "error": error.get("message"),
            "chosen": (decision or {}).get("chosen"),
        }
    )
    files = [(p, 0) for p in folder.glob("*.traj.json")]
    files += [(p, 1 + n) for n, p in enumerate(sorted(layout.attempts_dir(instance_id).glob("*.traj.json")))]
    for path, attempt in files:
        state = read_state(path)
        index = int(path.name.split(".")[0])
        err = state.error or {}
        rows[trajectories].append(
            {
                **base,
                "idx": index,
                "attempt": attempt,
                "exit_status": state.exit_status or "missing",
                "finished": state.finished,
                "steps": state.steps,
                "cost": state.cost,
                "model": state.model,
                "temperature": state.temperature,
                "error_kind": err.get("kind"),
                "error": err.get("message"),
                "path": str(path.relative_to(layout.out)),
            }
        )
        if state.cost:
            rows[costs].append(
                {**base, "stage": "agent", "ref": str(path.relative_to(folder)), "usd": state.cost}
            )
    found_tests = read_json(selection / TESTS_FILE, []) or []
    if isinstance(found_tests, dict):  # the pipeline's file: {"key": ..., "tests": [...]}
        found_tests = found_tests.get("tests") or []
    for test in found_tests:
        if isinstance(test, dict) and test.get("id"):
            rows[tests].append(
                {
                    **base,
                    "test_id": test["id"],
                    "kind": test.get("kind"),
                    "contract": test.get("contract"),
                    "origin": test.get("origin"),
                }
            )
    seen: set[tuple[str, str]] = set()
    for cell in reversed(read_jsonl(selection / MATRIX_FILE)):  # the last record of a cell wins
        if not isinstance(cell, dict) or (cell.get("candidate_id"), cell.get("test_id")) in seen:
            continue
        seen.add((cell.get("candidate_id"), cell.get("test_id")))
        rows[executions].append(
            {
                **base,
                "candidate_id": cell.get("candidate_id"),
                "test_id": cell.get("test_id"),
                "exit_code": cell.get("exit_code"),
                "timed_out": bool(cell.get("timed_out")),
                "duration": cell.get("duration"),
                "error": cell.get("error"),
            }
        )
    if isinstance(decision, dict):
        candidates = read_json(selection / CANDIDATES_FILE, []) or []
        rows[decisions].append(
            {
                **base,
                "policy": decision.get("policy"),
                "chosen": decision.get("chosen"),
                "candidates": len(candidates) if isinstance(candidates, list) else None,
                "reasons": "\n".join(decision.get("reasons") or []),
            }
        )
    for stage, usd in (task.get("costs") or {}).items():
        if usd:
            rows[costs].append({**base, "stage": stage, "ref": "", "usd": float(usd)})
    return rows


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # another process (a second worker, a `rebuild`) may hold the write lock for a moment
        return {"connect_args": {"timeout": 60, "check_same_thread": False}}
    return {"pool_pre_ping": True}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers (a dashboard, a report) read while the batch writes."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "<unparsable URL>"


def rebuild_run(out_dir: Path, url: str | None = None) -> dict[str, Any]:
    """`patchfleet ledger rebuild`: index a run folder into `url` (default: its own SQLite file) from the
    files alone; returns what the ledger then holds."""
    if not RunLayout(out_dir).run_file.is_file():
        raise DataError(f"{out_dir}: not a patchfleet run folder (no run.json)")
    url = url or f"sqlite:///{(out_dir / 'ledger.sqlite').resolve()}"
    with Ledger(url) as ledger:
        run_id = ledger.rebuild(out_dir)
        return {
            "run_id": run_id,
            "ledger": _safe(url),
            "tasks": len(ledger.rows(tasks, run_id)),
            "trajectories": ledger.counts(run_id),
            "cost": ledger.total_cost(run_id),
        }
