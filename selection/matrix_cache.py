"""The matrix cache: every cell ever run, keyed by (image, patch hash, test id), one JSONL file per instance.

A cell's result depends only on the image (content-hashed tag), the exact patch text and the test
(content-hashed id), so it is valid wherever those match: a killed run resumes from the cells already
appended, a re-run with another policy costs no container, and an export (JSONL, gzipped when the name
ends in .gz) carries the cells to another machine, where `merge` adds those it lacks, as the verdict
cache does for evaluations. Per-candidate apply checks are cached beside the cells, so a candidate
whose every cell is cached needs no container at all.

Appends are single `write` calls under a thread lock and an advisory file lock, so threads and
processes sharing the folder never interleave lines; a line torn by a kill is skipped when read.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from patchfleet.atomic import write_text_atomic
from patchfleet.errors import DataError
from patchfleet.selection.model import Cell

CellKey = tuple[str, str, str]  # (image, patch hash, test id)
CheckKey = tuple[str, str]  # (image, patch hash)


class MatrixCache:
    """Cells and apply checks under `folder/<instance_id>.jsonl`."""

    def __init__(self, folder: Path) -> None:
        self.root = Path(folder)
        self._lock = threading.Lock()
        self._cells: dict[str, dict[CellKey, dict[str, Any]]] = {}
        self._checks: dict[str, dict[CheckKey, dict[str, Any]]] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        # a copy sent to another process (a Ray worker) reads the files again: they are shared, the
        # index and the lock are not; appends from several processes are serialised by flock
        return MatrixCache, (self.root,)

    # -- reading ---------------------------------------------------------------------------------

    def _path(self, instance_id: str) -> Path:
        if not instance_id or "/" in instance_id or instance_id.startswith("."):
            raise DataError(f"bad instance id for the matrix cache: {instance_id!r}")
        return self.root / f"{instance_id}.jsonl"

    def _load(self, instance_id: str) -> None:
        """Index one instance's file (once per cache object; later entries are added as they are put)."""
        if instance_id in self._cells:
            return
        cells: dict[CellKey, dict[str, Any]] = {}
        checks: dict[CheckKey, dict[str, Any]] = {}
        for entry in _read_lines(self._path(instance_id)):
            _index(entry, cells, checks)
        self._cells[instance_id], self._checks[instance_id] = cells, checks

    def get_cell(self, instance_id: str, image: str, patch_hash: str, test_id: str) -> Cell | None:
        with self._lock:
            self._load(instance_id)
            entry = self._cells[instance_id].get((image, patch_hash, test_id))
        return Cell.model_validate(entry["cell"]) if entry else None

    def images(self, instance_id: str) -> list[str]:
        """The images (cache contexts) holding cells of this instance: after a rebuild there are two, and
        the same (patch, test) may have a cell under each."""
        with self._lock:
            self._load(instance_id)
            return sorted({image for image, _, _ in self._cells[instance_id]})

    def get_check(self, instance_id: str, image: str, patch_hash: str) -> dict[str, Any] | None:
        with self._lock:
            self._load(instance_id)
            entry = self._checks[instance_id].get((image, patch_hash))
        return dict(entry["check"]) if entry else None

    # -- writing ---------------------------------------------------------------------------------

    def put_cell(self, image: str, patch_hash: str, cell: Cell) -> None:
        entry = {
            "kind": "cell",
            "image": image,
            "patch": patch_hash,
            "test": cell.test_id,
            "cell": cell.model_dump(mode="json"),
        }
        self._append(cell.instance_id, entry)

    def put_check(self, instance_id: str, image: str, patch_hash: str, check: dict[str, Any]) -> None:
        entry = {"kind": "check", "image": image, "patch": patch_hash, "check": check}
        self._append(instance_id, entry)

    def _append(self, instance_id: str, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode(
            "utf-8", "surrogateescape"
        )
        path = self._path(instance_id)
        with self._lock:
            self._load(instance_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a kill tore the last line: start ours on a fresh one
                os.write(fd, line)
            finally:
                os.close(fd)  # closing releases the lock
            _index(entry, self._cells[instance_id], self._checks[instance_id])

    # -- export and merge ------------------------------------------------------------------------

    def instances(self) -> list[str]:
        return sorted(path.stem for path in self.root.glob("*.jsonl"))

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every readable entry with its instance id, one per key (the first written wins)."""
        for instance_id in self.instances():
            seen: set[tuple[str, ...]] = set()
            for entry in _read_lines(self._path(instance_id)):
                key = _key(entry)
                if key is not None and key not in seen:
                    seen.add(key)
                    yield {"instance_id": instance_id, **entry}

    def export(self, path: Path) -> int:
        """Write every entry to one JSONL file (gzipped when the name ends in .gz), atomically."""
        lines = [json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n" for entry in self.entries()]
        text = "".join(lines)
        if str(path).endswith(".gz"):
            _write_bytes_atomic(Path(path), gzip.compress(text.encode("utf-8", "surrogateescape")))
        else:
            write_text_atomic(Path(path), text)
        return len(lines)

    def merge(self, path: Path) -> int:
        """Add the entries of an export that are not here; return how many were added."""
        path = Path(path)
        opener = gzip.open if path.name.endswith(".gz") else open
        added = 0
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    instance_id = entry.pop("instance_id")
                    key = _key(entry)
                except (ValueError, KeyError, AttributeError, TypeError) as exc:
                    raise DataError(f"{path}:{number}: not a matrix cache entry ({exc})") from exc
                if key is None:
                    raise DataError(f"{path}:{number}: not a matrix cache entry")
                self._path(instance_id)  # rejects ids that would escape the folder
                with self._lock:
                    self._load(instance_id)
                    present = (
                        key[1:] in self._cells[instance_id]
                        if key[0] == "cell"
                        else key[1:] in self._checks[instance_id]
                    )
                if not present:
                    self._append(instance_id, entry)
                    added += 1
        return added


def _key(entry: dict[str, Any]) -> tuple[str, ...] | None:
    """("cell", image, patch, test) or ("check", image, patch); None for anything else."""
    try:
        if entry["kind"] == "cell":
            Cell.model_validate(entry["cell"])
            return ("cell", entry["image"], entry["patch"], entry["test"])
        if entry["kind"] == "check" and isinstance(entry["check"], dict):
            return ("check", entry["image"], entry["patch"])
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _index(
    entry: dict[str, Any], cells: dict[CellKey, dict[str, Any]], checks: dict[CheckKey, dict[str, Any]]
) -> None:
    key = _key(entry)
    if key is None:
        return
    if key[0] == "cell":
        cells.setdefault((key[1], key[2], key[3]), entry)
    else:
        checks.setdefault((key[1], key[2]), entry)


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    for line in raw.decode("utf-8", "surrogateescape").split("\n"):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # torn by a kill: that cell runs again
        if isinstance(entry, dict):
            yield entry


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    """As patchfleet.atomic.write_text_atomic, for bytes (a gzipped export)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
