"""Trajectory files: JSON, a superset of mini-swe-agent's format, replaced atomically at every step.

A reader (or a resumed run) therefore always finds either the previous or the new complete document,
never a half-written one, even when the process is killed with SIGKILL: the rename is atomic and the
page cache outlives the process. Only the final write is fsynced (and indented for people): an fsync
per step survives a machine crash too, but costs every step of every trajectory a disk flush.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchfleet.errors import DataError

TRAJECTORY_FORMAT = "patchfleet-1"
RUNNING = "Running"  # exit_status while the trajectory is in progress (or after the process died)


def read_trajectory(path: str | Path) -> dict[str, Any]:
    """Load a trajectory file (ours or mini-swe-agent's) and check the fields everything relies on."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read trajectory {path}: {exc}") from exc
    if not isinstance(document.get("messages"), list) or not isinstance(document.get("info"), dict):
        raise DataError(f"{path}: a trajectory needs a `messages` list and an `info` object")
    return document


@dataclass(frozen=True)
class TrajectoryState:
    """What a trajectory file says: finished or not, its outcome, what it cost."""

    path: Path
    exists: bool
    finished: bool = False
    exit_status: str = ""
    steps: int = 0
    cost: float = 0.0
    calls: int = 0
    model: str = ""
    temperature: float | None = None
    variant: str | None = None
    submission: str = ""
    error: dict[str, str] | None = None

    @property
    def error_kind(self) -> str | None:
        return (self.error or {}).get("kind")


def read_state(path: Path) -> TrajectoryState:
    """The state of a trajectory file; a missing or unreadable file is "not there" (run it again)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        info: dict[str, Any] = document["info"]
    except (OSError, ValueError, KeyError, TypeError):
        return TrajectoryState(path, exists=False)
    stats = info.get("model_stats") or {}
    status = str(info.get("exit_status") or RUNNING)
    return TrajectoryState(
        path,
        exists=True,
        finished=status != RUNNING,
        exit_status=status,
        steps=len(info.get("steps") or []),
        cost=float(stats.get("instance_cost") or 0.0),
        calls=int(stats.get("api_calls") or 0),
        model=str(info.get("model_name") or ""),
        temperature=info.get("temperature"),
        variant=info.get("prompt_variant"),
        submission=str(info.get("submission") or ""),
        error=info.get("error"),
    )
