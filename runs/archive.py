"""A run folder as one portable archive: `patchfleet ledger export` and `ledger import`.

A real-data batch outlives one machine (the dev split is about ten hours of containers on two cores). Its
files are the source of truth (`runs.layout`), and every cache in it is keyed by content, not by machine:
verdicts (`runs.verdicts`, recipe + image tag + tests + patch) and matrix cells (`selection.matrix_cache`,
image tag + patch + test). So the folder itself, packed without what a machine can remake, is the export:
imported on another machine, the same `batch` command skips every finished task, reuses every verdict
and cell, and redoes only what was cut short. Left out: the ledger database (rebuilt from the files on
import and at every start), test and build logs (bulky, and nothing reads them back), half-written
temporary files. Machine paths do not travel: the folder's own absolute path becomes "." in the JSON files
(verdicts name their logs by it), and run.json's record of the configuration loses its absolute paths
(mirrors, local checkouts), which the command that resumes passes again anyway.

Import never overwrites a file that is already there: a folder that went on running after the export
keeps its newer state, and only what it lacks is added. An archive of another run is refused.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from patchfleet.errors import ConfigError, DataError
from patchfleet.runs.layout import RUN_FILE, RunLayout

LEDGER_FILES = ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "ledger.sqlite-journal")
LOG_DIRS = ("eval/logs",)  # the evaluation's logs/run_evaluation/... tree
LOG_SUFFIXES = (".log",)
REDACTED = "<machine path, not exported>"


@dataclass(frozen=True)
class Packed:
    files: int
    bytes: int  # uncompressed
    skipped_logs: int


@dataclass(frozen=True)
class Unpacked:
    run_id: str
    added: int
    kept: int  # already present in the folder: left as they were


def run_id_of(folder: Path) -> str:
    """The run id a run folder's run.json names (DataError when the folder is not a run)."""
    path = RunLayout(folder).run_file
    if not path.is_file():
        raise DataError(f"{folder}: not a patchfleet run folder (no {RUN_FILE})")
    try:
        return str(json.loads(path.read_text())["run_id"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def _members(folder: Path, with_logs: bool) -> Iterator[tuple[Path, str, bool]]:
    """(path, archive name, is a log) of every file worth carrying, in a stable order."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            if name in LEDGER_FILES or (name.startswith(".") and name.endswith(".tmp")):
                continue
            is_log = relative.startswith(tuple(f"{d}/" for d in LOG_DIRS)) or name.endswith(LOG_SUFFIXES)
            if is_log and not with_logs:
                yield path, relative, True
                continue
            yield path, relative, False


def export_run(folder: Path, archive: Path, *, with_logs: bool = False) -> Packed:
    """Pack a run folder into `archive` (.tar.gz, or .tar), written atomically."""
    run_id_of(folder)
    if archive.resolve().is_relative_to(folder.resolve()):
        raise ConfigError(f"{archive}: the archive must be written outside the run folder {folder}")
    mode = "w:gz" if archive.name.endswith((".tar.gz", ".tgz")) else "w"
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{archive.name}.", suffix=".tmp", dir=archive.parent)
    files = size = skipped = 0
    prefix = str(folder.resolve())
    try:
        with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode=mode) as tar:
            for path, name, skip in _members(folder, with_logs):
                if skip:
                    skipped += 1
                    continue
                try:
                    data = path.read_bytes()  # whole, so that a file growing meanwhile packs consistently
                except FileNotFoundError:
                    continue  # replaced or removed by a run still going
                data = _without_machine_paths(name, data, prefix)
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), int(path.stat().st_mtime), 0o644
                tar.addfile(info, io.BytesIO(data))
                files, size = files + 1, size + len(data)
        os.replace(tmp, archive)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Packed(files=files, bytes=size, skipped_logs=skipped)


def _without_machine_paths(name: str, data: bytes, prefix: str) -> bytes:
    if not name.endswith((".json", ".jsonl")):
        return data
    text = data.decode("utf-8", "surrogateescape").replace(prefix + "/", "./").replace(prefix, ".")
    if name == RUN_FILE:
        try:
            document = json.loads(text)
        except ValueError:
            return text.encode("utf-8", "surrogateescape")
        text = json.dumps(_redact(document), ensure_ascii=False, indent=1)
    return text.encode("utf-8", "surrogateescape")


def _redact(value: object) -> object:
    """run.json's configuration without absolute paths (they name this machine's folders)."""
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return REDACTED
    return value


def import_run(archive: Path, folder: Path) -> Unpacked:
    """Unpack an export into `folder` (new, or the same run's): add what is missing, keep what is there."""
    if not archive.is_file():
        raise ConfigError(f"{archive}: no such archive")
    try:
        tar = tarfile.open(archive)  # noqa: SIM115 (closed by the `with` below; open errors are ours)
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{archive}: not a run archive ({exc})") from exc
    with tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        names = {m.name for m in members}
        if RUN_FILE not in names:
            raise DataError(f"{archive}: not a run archive (no {RUN_FILE})")
        for member in members:
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts:
                raise DataError(f"{archive}: unsafe member name {member.name!r}")
        incoming = json.loads(tar.extractfile(RUN_FILE).read())  # type: ignore[union-attr]
        run_id = str(incoming.get("run_id"))
        if (folder / RUN_FILE).is_file() and run_id_of(folder) != run_id:
            raise ConfigError(
                f"{folder} holds run {run_id_of(folder)}, the archive run {run_id}: import into a new folder"
            )
        added = kept = 0
        for member in members:
            target = folder / member.name
            if target.exists():
                kept += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
            os.utime(target, (member.mtime, member.mtime))
            added += 1
    return Unpacked(run_id=run_id, added=added, kept=kept)
