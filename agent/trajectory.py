"""Trajectory files: JSON, a superset of mini-swe-agent's format, replaced atomically at every step.

A reader (or a resumed run) therefore always finds either the previous or the new complete document,
never a half-written one, even when the process is killed with SIGKILL: the rename is atomic and the
page cache outlives the process. Only the final write is fsynced (and indented for people): an fsync
per step survives a machine crash too, but costs every step of every trajectory a disk flush.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from patchfleet.errors import DataError

TRAJECTORY_FORMAT = "patchfleet-1"
RUNNING = "Running"  # exit_status while the trajectory is in progress (or after the process died)


def write_json_atomic(path: Path, document: dict[str, Any], *, durable: bool = True) -> None:
    """Write to a temporary file in the same directory, then rename over `path`.

    durable: fsync before the rename and indent the JSON; otherwise compact (one pass of the C encoder,
    where indenting runs the pure-Python one) and left to the page cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, ensure_ascii=False, indent=1 if durable else None, default=str)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
