"""Candidates from our trajectories' outcomes files and from anyone's predictions files, deduplicated.

Every row becomes a `Candidate` whose id hashes the whitespace-normalised patch (selection.normalize),
so the same change proposed by several trajectories or submissions is one candidate carrying all of its
sources, and scores attach to that id end to end. Evaluation-only columns of a predictions file (the
`resolved` verdict of `candidates_dev.jsonl`) are never read. A bad file or row is a `DataError` naming
it; the other rows still load.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchfleet.agent.trajectory import read_trajectory
from patchfleet.data.loaders import read_rows
from patchfleet.errors import DataError
from patchfleet.selection.model import Candidate, CandidateSource
from patchfleet.selection.normalize import hunks_consistent, is_empty_patch, patch_id

OUTCOMES_FILE = "outcomes.json"  # as written by `patchfleet trajectories` (runs/trajectories.py)


@dataclass
class LoadedCandidates:
    """Distinct candidates per instance id, the rows that failed, and what was read and dropped."""

    candidates: dict[str, list[Candidate]] = field(default_factory=dict)
    errors: list[DataError] = field(default_factory=list)
    rows: int = 0  # good rows read (empty patches included)
    empty: int = 0  # rows whose patch was empty: dropped

    @property
    def total(self) -> int:
        """Distinct candidates over all instances."""
        return sum(len(found) for found in self.candidates.values())


def make_candidate(instance_id: str, patch: str, source: CandidateSource) -> Candidate:
    return Candidate(id=patch_id(patch), instance_id=instance_id, patch=patch, sources=(source,))


def merge_candidates(*lists: Iterable[Candidate]) -> list[Candidate]:
    """One candidate per (instance, id), in order of first appearance, with every source kept.

    Of several texts of one change the kept one is, in order: one whose hunks match their headers (not
    whitespace-damaged), the longest (damage only removes), the first. Empty patches are dropped.
    """
    merged: dict[tuple[str, str], Candidate] = {}
    for candidate in (c for found in lists for c in found):
        if is_empty_patch(candidate.patch):
            continue
        key = (candidate.instance_id, candidate.id)
        kept = merged.get(key)
        if kept is None:
            merged[key] = candidate
            continue
        sources = kept.sources + tuple(s for s in candidate.sources if s not in kept.sources)
        best = kept if _preference(kept) >= _preference(candidate) else candidate
        merged[key] = best.model_copy(
            update={"sources": sources, "ast_key": best.ast_key or kept.ast_key or candidate.ast_key}
        )
    return list(merged.values())


def _preference(candidate: Candidate) -> tuple[bool, int]:
    return hunks_consistent(candidate.patch), len(candidate.patch)


def merge_loaded(*loaded: LoadedCandidates) -> LoadedCandidates:
    """Several loads (files of several systems, our outcomes) as one: candidates deduplicated across
    all of them, per instance in order of first appearance."""
    result = LoadedCandidates()
    by_instance: dict[str, list[Candidate]] = {}
    for part in loaded:
        result.errors.extend(part.errors)
        result.rows += part.rows
        result.empty += part.empty
        for instance_id, found in part.candidates.items():
            by_instance.setdefault(instance_id, []).extend(found)
    result.candidates = {i: merge_candidates(found) for i, found in by_instance.items()}
    return result


def load_candidates(
    predictions: Iterable[str | Path] = (), outcomes: Iterable[str | Path] = ()
) -> LoadedCandidates:
    """Everything at once: any number of predictions files and outcomes files (or folders of them)."""
    parts = [load_candidates_from_outcomes(path) for path in outcomes]
    parts += [load_candidates_from_predictions(path) for path in predictions]
    return merge_loaded(*parts)


def _collect(rows: Iterable[tuple[str, Any]], parse) -> LoadedCandidates:
    loaded = LoadedCandidates()
    found: list[Candidate] = []
    try:
        for where, row in rows:
            if isinstance(row, DataError):
                loaded.errors.append(row)
                continue
            try:
                candidate = parse(row, where)
            except DataError as exc:
                loaded.errors.append(exc)
                continue
            loaded.rows += 1
            if candidate is None:
                loaded.empty += 1
            else:
                found.append(candidate)
    except DataError as exc:  # the file itself: missing, not JSON, wrong shape
        loaded.errors.append(exc)
    for candidate in merge_candidates(found):
        loaded.candidates.setdefault(candidate.instance_id, []).append(candidate)
    return loaded


# -- predictions files -------------------------------------------------------------------------------


def load_candidates_from_predictions(path: str | Path) -> LoadedCandidates:
    """SWE-bench predictions (.jsonl, a .json list, or a .json dict {instance_id: {model_patch, ...}}),
    or rows of several submissions with a `submission` column as in `candidates_dev.jsonl`.

    Only `instance_id`, `model_patch` and the system's name (`submission`, else `model_name_or_path`,
    else the file's stem) are read: any other column, evaluation verdicts included, is ignored.
    """
    path = Path(path)
    return _collect(_prediction_rows(path), lambda row, where: _prediction(row, where, path.stem))


def _prediction_rows(path: Path) -> Iterator[tuple[str, Any]]:
    if not path.is_file():  # read_rows would take a missing path for a Hugging Face dataset name
        raise DataError(f"{path}: no such file")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(data, dict):
            for key, value in data.items():
                row = {"instance_id": key, **value} if isinstance(value, dict) else value
                yield f"{path} key {key!r}", row
            return
    yield from read_rows(path)


def _prediction(row: Any, where: str, default_name: str) -> Candidate | None:
    if not isinstance(row, dict):
        raise DataError(f"{where}: a prediction must be an object, got {type(row).__name__}")
    instance_id = row.get("instance_id")
    if not isinstance(instance_id, str) or not instance_id.strip():
        raise DataError(f"{where}: field instance_id must be a non-empty string")
    if "model_patch" not in row:
        raise DataError(f"{where}: missing field model_patch")
    patch = row["model_patch"]
    if patch is not None and not isinstance(patch, str):
        raise DataError(f"{where}: field model_patch must be a string or null, got {type(patch).__name__}")
    name = row.get("submission") or row.get("model_name_or_path") or default_name
    if not isinstance(name, str):
        raise DataError(f"{where}: field submission/model_name_or_path must be a string")
    if is_empty_patch(patch):
        return None
    source = CandidateSource(kind="predictions", name=name, ref=where)
    return make_candidate(instance_id, patch, source)


# -- trajectory files beside predictions ---------------------------------------------------------------


def attach_trajectories(
    candidates: Iterable[Candidate], folders: Iterable[str | Path]
) -> tuple[list[Candidate], list[DataError]]:
    """Link `<folder>/<instance_id>.traj.json` files (ours or mini-swe-agent's) to the candidate whose id
    their `info.submission` has, e.g. a leaderboard submission's patch to the trajectory that wrote it,
    so the verifier can read it. Every source of that candidate without a trajectory gets the file: the
    trajectory produced exactly that change, whichever system also proposed it.
    """
    found: dict[tuple[str, str], str] = {}
    errors: list[DataError] = []
    candidates = list(candidates)
    for folder in folders:
        for instance_id in dict.fromkeys(c.instance_id for c in candidates):
            path = Path(folder) / f"{instance_id}.traj.json"
            if not path.is_file():
                continue
            try:
                submission = read_trajectory(path)["info"].get("submission")
            except DataError as exc:
                errors.append(exc)
                continue
            if isinstance(submission, str) and not is_empty_patch(submission):
                found.setdefault((instance_id, patch_id(submission)), str(path))
    attached = []
    for candidate in candidates:
        trajectory = found.get((candidate.instance_id, candidate.id))
        if trajectory is not None:
            sources = tuple(
                s if s.trajectory else s.model_copy(update={"trajectory": trajectory})
                for s in candidate.sources
            )
            candidate = candidate.model_copy(update={"sources": sources})
        attached.append(candidate)
    return attached, errors


# -- outcomes of `patchfleet trajectories` ------------------------------------------------------------


def load_candidates_from_outcomes(path: str | Path) -> LoadedCandidates:
    """`<out>/<instance_id>/outcomes.json` files: one file, or a run's output folder holding them."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob(f"*/{OUTCOMES_FILE}"))
        if not files:
            return LoadedCandidates(errors=[DataError(f"{path}: no */{OUTCOMES_FILE} in this folder")])
        return merge_loaded(*(load_candidates_from_outcomes(file) for file in files))
    return _collect(_outcome_rows(path), _outcome)


def _outcome_rows(path: Path) -> Iterator[tuple[str, Any]]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("trajectories"), list):
        raise DataError(f"{path}: expected an outcomes document with a list of trajectories")
    instance_id = document.get("instance_id")
    if not isinstance(instance_id, str) or not instance_id:
        raise DataError(f"{path}: field instance_id must be a non-empty string")
    for number, row in enumerate(document["trajectories"], start=1):
        where = f"{path} trajectory {number}"
        yield where, {**row, "instance_id": instance_id} if isinstance(row, dict) else row


def _outcome(row: Any, where: str) -> Candidate | None:
    if not isinstance(row, dict):
        raise DataError(f"{where}: a trajectory row must be an object, got {type(row).__name__}")
    patch = row.get("patch")
    if patch is not None and not isinstance(patch, str):
        raise DataError(f"{where}: field patch must be a string or null, got {type(patch).__name__}")
    trajectory = row.get("trajectory")
    if trajectory is not None and not isinstance(trajectory, str):
        raise DataError(f"{where}: field trajectory must be a path or null")
    if is_empty_patch(patch):
        return None  # a failed or empty trajectory: nothing to select
    model = row.get("model") if isinstance(row.get("model"), str) else ""
    source = CandidateSource(
        kind="trajectory", name=model or "unknown", ref=trajectory or where, trajectory=trajectory
    )
    return make_candidate(row["instance_id"], patch, source)
