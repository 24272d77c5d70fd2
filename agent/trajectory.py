"""Trajectory files: JSON, a superset of mini-swe-agent's format, replaced atomically at every step.

A reader (or a resumed run) therefore always finds either the previous or the new complete document,
never a half-written one, even when the process is killed with SIGKILL: the rename is atomic and the
page cache outlives the process. Only the final write is fsynced (and indented for people): an fsync
per step survives a machine crash too, but costs every step of every trajectory a disk flush.
"""

from __future__ import annotations

import json
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
