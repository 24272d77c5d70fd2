"""Compact export of stored selection folders (`pipeline.load_inputs` reads them), for another machine.

A folder's matrix.jsonl repeats cells that the `MatrixCache` holds and exports anyway (keyed by image,
patch hash and test), and its candidates.json repeats patches of predictions files every machine has.
So an entry keeps the other files verbatim, and stores the matrix as references into the cell cache
under the image recorded for the instance (after an image rebuild the same (patch, test) has a cell under
each image: the one the matrix was read under decides), and each patch as a reference to the row of the
data file it came from, with its hash. A cell the cache cannot give back (a patch that did not apply, an
infrastructure error: neither is cached) and a patch from anywhere else stay verbatim. Every reference is
checked at export by rebuilding the file from it, so an import restores exactly what was exported.
Entries of the first format (every file verbatim) still import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from patchfleet.atomic import write_text_atomic
from patchfleet.errors import DataError
from patchfleet.selection.execution import patch_hash
from patchfleet.selection.matrix_cache import MatrixCache
from patchfleet.selection.model import BASE, Candidate, content_hash
from patchfleet.selection.pipeline import (
    CANDIDATES_FILE,
    DECISION_FILE,
    MATRIX_FILE,
    TESTS_FILE,
    VERIFIER_FILE,
)

FORMAT = 2
STORED = (CANDIDATES_FILE, TESTS_FILE, MATRIX_FILE, VERIFIER_FILE, DECISION_FILE)


class DataRows:
    """Rows of line-numbered data files under `root` (a source's ref is `<file>:<line>`), read once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lines: dict[Path, list[str]] = {}

    def relative(self, ref: str) -> str | None:
        """`<path under root>:<line>` for a ref into a file under root, also when the rows were read from
        a copy of it elsewhere (another machine's data folder: the longest tail of its path that names a
        file under root); None for any other ref."""
        path, _, line = ref.rpartition(":")
        if not path or not line.isdigit() or not Path(path).is_absolute():
            return None
        parts = Path(path).parts[1:]
        if ".." in parts:
            return None
        for start in range(len(parts)):
            if (self.root / Path(*parts[start:])).is_file():
                return f"{Path(*parts[start:]).as_posix()}:{line}"
        return None

    def absolute(self, relative: str) -> str:
        path, _, line = relative.rpartition(":")
        if not path or not line.isdigit() or Path(path).is_absolute() or ".." in Path(path).parts:
            raise DataError(f"not a reference into the data folder: {relative!r}")
        return f"{self.root / path}:{line}"

    def patch(self, relative: str) -> str | None:
        """The `model_patch` of the row a relative ref names (None when there is none)."""
        path, _, line = self.absolute(relative).rpartition(":")
        file = Path(path)
        if file not in self._lines:
            if not file.is_file():
                raise DataError(f"{file}: no such file (an exported patch refers to it)")
            self._lines[file] = file.read_text(encoding="utf-8").split("\n")
        lines, number = self._lines[file], int(line)
        try:
            row = json.loads(lines[number - 1]) if 0 < number <= len(lines) else None
        except json.JSONDecodeError:
            return None
        patch = row.get("model_patch") if isinstance(row, dict) else None
        return patch if isinstance(patch, str) else None


# -- export --------------------------------------------------------------------------------------------


def export_entry(folder: Path, cache: MatrixCache | None = None, data: DataRows | None = None) -> dict:
    """One finished folder as an entry: references where they rebuild the file exactly, else verbatim."""
    files = {name: (folder / name).read_text(encoding="utf-8") for name in STORED if (folder / name).exists()}
    entry: dict[str, Any] = {"instance_id": folder.name, "format": FORMAT, "files": files}
    candidates = json.loads(files.get(CANDIDATES_FILE, "null"))
    if data is not None and isinstance(candidates, list):
        slim = [_slim_candidate(c, data) for c in candidates]
        if _restore_candidates(slim, data) == _relocated(candidates, data):
            entry["candidates"] = slim
            del files[CANDIDATES_FILE]
    if cache is not None and isinstance(candidates, list) and MATRIX_FILE in files and TESTS_FILE in files:
        tests = [t["id"] for t in json.loads(files[TESTS_FILE])["tests"]]
        matrix = _slim_matrix(folder.name, files[MATRIX_FILE], candidates, tests, cache)
        if matrix is not None:
            entry["matrix"] = matrix
            del files[MATRIX_FILE]
    return entry


def _slim_candidate(candidate: dict, data: DataRows) -> dict:
    """The candidate without its patch when a source's row holds it, refs into the data folder relative."""
    refs = [data.relative(s.get("ref", "")) for s in candidate.get("sources", [])]
    wanted = content_hash("patch", candidate["patch"])
    for index, ref in enumerate(refs):
        if (
            ref is not None
            and (patch := data.patch(ref)) is not None
            and content_hash("patch", patch) == wanted
        ):
            sources = [
                {**s, "ref": r} if r is not None else s
                for s, r in zip(candidate["sources"], refs, strict=True)
            ]
            relative = [i for i, r in enumerate(refs) if r is not None]
            slim = {k: v for k, v in candidate.items() if k not in ("patch", "size")}
            return {
                **slim,
                "sources": sources,
                "patch_ref": {"source": index, "hash": wanted, "relative": relative},
            }
    return candidate


def _relocated(candidates: list[dict], data: DataRows) -> list[dict]:
    """The candidates as an import here restores them: refs into a copy of the data folder elsewhere
    name the one here (a ref is provenance; no policy and no score reads it)."""
    out = []
    for candidate in candidates:
        sources = []
        for source in candidate.get("sources", []):
            ref = data.relative(source.get("ref", ""))
            sources.append({**source, "ref": data.absolute(ref)} if ref is not None else source)
        out.append({**candidate, "sources": sources} if "sources" in candidate else candidate)
    return out


def _slim_matrix(
    instance_id: str, text: str, candidates: list[dict], tests: list[str], cache: MatrixCache
) -> dict | None:
    """The matrix as [row, test] references under the image that gives back the most of its lines."""
    rows = [BASE, *(c["id"] for c in candidates)]
    patches = ["", *(c["patch"] for c in candidates)]
    lines = text.split("\n")
    if lines[-1] != "":
        return None  # not as the pipeline writes it: kept verbatim
    best: dict | None = None
    for image in cache.images(instance_id):
        cells: list[list[int] | str] = []
        for line in lines[:-1]:
            cell = json.loads(line)
            try:
                ref = [rows.index(cell["candidate_id"]), tests.index(cell["test_id"])]
            except ValueError:
                cells.append(line)
                continue
            rebuilt = _cached_line(cache, instance_id, image, patches[ref[0]], rows[ref[0]], cell["test_id"])
            cells.append(ref if rebuilt == line else line)
        matrix = {"image": image, "cells": cells}
        if best is None or _references(matrix) > _references(best):
            best = matrix
    if best is None or not _references(best):
        return None
    if _restore_matrix(instance_id, best, rows, patches, tests, cache) != text:
        return None
    return best


def _references(matrix: dict) -> int:
    return sum(isinstance(cell, list) for cell in matrix["cells"])


def _cached_line(
    cache: MatrixCache, instance_id: str, image: str, patch: str, candidate_id: str, test_id: str
) -> str | None:
    """The line run_matrix writes for a cached cell: the cell under the row's candidate id."""
    cell = cache.get_cell(instance_id, image, patch_hash(patch), test_id)
    if cell is None:
        return None
    return cell.model_copy(
        update={"candidate_id": candidate_id, "instance_id": instance_id}
    ).model_dump_json()


# -- import --------------------------------------------------------------------------------------------


def import_entry(
    entry: dict, folder: Path, cache: MatrixCache | None = None, data: DataRows | None = None
) -> None:
    """Write the entry's files into `folder` (decision.json last: a folder without it is unfinished).

    cache: the cells of the export imported first (`MatrixCache.merge`); data: the files the patches
    came from. Either may be None for an entry that does not refer to it (the first format refers to
    nothing)."""
    instance_id = entry["instance_id"]
    if not instance_id or "/" in instance_id or instance_id.startswith("."):
        raise DataError(f"bad instance id in an inputs export: {instance_id!r}")
    if entry.get("format", 1) > FORMAT:
        raise DataError(f"{instance_id}: exported in format {entry['format']}, newer than this code reads")
    files = {name: text for name, text in entry["files"].items() if name in STORED}
    candidates = json.loads(files.get(CANDIDATES_FILE, "null"))
    if "candidates" in entry:
        if data is None:
            raise DataError(f"{instance_id}: its patches refer to data files: give their folder")
        candidates = _restore_candidates(entry["candidates"], data)
        # as `write_json_atomic` writes it, which is how the pipeline wrote it
        files[CANDIDATES_FILE] = json.dumps(candidates, ensure_ascii=False, indent=1)
    if "matrix" in entry:
        if cache is None:
            raise DataError(f"{instance_id}: its matrix refers to the cell cache: import the cells first")
        rows = [BASE, *(c["id"] for c in candidates)]
        patches = ["", *(c["patch"] for c in candidates)]
        tests = [t["id"] for t in json.loads(files[TESTS_FILE])["tests"]]
        files[MATRIX_FILE] = _restore_matrix(instance_id, entry["matrix"], rows, patches, tests, cache)
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda name: name == DECISION_FILE):
        write_text_atomic(folder / name, files[name])


def _restore_candidates(slim: list[dict], data: DataRows) -> list[dict]:
    out = []
    for candidate in slim:
        ref = candidate.get("patch_ref")
        if ref is None:
            out.append(candidate)
            continue
        patch = data.patch(candidate["sources"][ref["source"]]["ref"])
        if patch is None or content_hash("patch", patch) != ref["hash"]:
            where = data.absolute(candidate["sources"][ref["source"]]["ref"])
            raise DataError(
                f"{candidate.get('instance_id')}: {where} no longer holds the patch of candidate "
                f"{candidate.get('id')} (hash {ref['hash']})"
            )
        sources = [
            {**s, "ref": data.absolute(s["ref"])} if i in ref["relative"] else s
            for i, s in enumerate(candidate["sources"])
        ]
        fields = {k: v for k, v in candidate.items() if k != "patch_ref"}
        restored = Candidate.model_validate({**fields, "patch": patch, "sources": sources})
        out.append(restored.model_dump(mode="json"))
    return out


def _restore_matrix(
    instance_id: str, matrix: dict, rows: list[str], patches: list[str], tests: list[str], cache: MatrixCache
) -> str:
    lines = []
    for cell in matrix["cells"]:
        if isinstance(cell, str):
            lines.append(cell)
            continue
        row, test = cell
        line = _cached_line(cache, instance_id, matrix["image"], patches[row], rows[row], tests[test])
        if line is None:
            raise DataError(
                f"{instance_id}: cell ({rows[row]}, {tests[test]}) under {matrix['image']} is not in the "
                "cell cache: import the cell export first"
            )
        lines.append(line)
    return "".join(line + "\n" for line in lines)
