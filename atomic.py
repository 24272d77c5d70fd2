"""Atomic file writes every layer may use: a reader, or a run resumed after `kill -9`, always finds either
the previous or the new complete file, never a half-written one (temp file in the same folder + rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str, *, durable: bool = True) -> None:
    """Write `text` to a unique temporary file beside `path`, then rename it over `path`.

    durable: fsync before the rename (survives a machine crash, costs a disk flush)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, document: Any, *, durable: bool = True) -> None:
    """JSON through `write_text_atomic`; durable files are indented for people, others compact (one pass
    of the C encoder, where indenting runs the pure-Python one)."""
    text = json.dumps(document, ensure_ascii=False, indent=1 if durable else None, default=str)
    write_text_atomic(path, text, durable=durable)
