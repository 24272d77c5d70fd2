"""Loading SWE-bench-style rows and predictions from files, tolerating bad rows.

A malformed row becomes a `DataError` that names the file, the row and the field; the other rows still
load. Batch users run hundreds of instances and must not lose a run to one broken line. Rows are named
`file:line` in .jsonl files and `file row N` (1-based) in .json lists, .parquet files and datasets.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from patchfleet.data.task import EvalSpec, Prediction, Task
from patchfleet.errors import ConfigError, DataError

TASK_FIELDS = ("instance_id", "repo", "base_commit", "problem_statement")
_SHA = re.compile(r"[0-9a-f]{7,40}")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


@dataclass
class Loaded:
    """Tasks with their evaluation specs (kept in a separate mapping), and the rows that failed."""

    tasks: list[Task] = field(default_factory=list)
    eval_specs: dict[str, EvalSpec] = field(default_factory=dict)
    errors: list[DataError] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)  # asked for by the filter, found in no good row
    # every instance id of the source, asked for or not (the harness checks predictions against these)
    dataset_ids: set[str] = field(default_factory=set)


def read_rows(source: str | Path) -> Iterator[tuple[str, Any]]:
    """(where, row) pairs from .jsonl, .json (a list), .parquet, or a Hugging Face dataset name.

    A line that is not JSON comes out as (where, DataError) so that the caller can record it and go on.
    """
    path = Path(source)
    if not path.exists() and looks_like_path(str(source)):
        raise DataError(f"{path}: no such file")
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield where, DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
    elif path.suffix == ".json":
        data = _read_json(path)
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
        for number, row in enumerate(data, start=1):
            yield f"{path} row {number}", row
    elif path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ConfigError("reading .parquet needs pyarrow: pip install 'patchfleet[parquet]'") from exc
        for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"{path} row {number}", row
    elif path.exists():
        raise DataError(f"{path}: unsupported format (use .jsonl, .json or .parquet)")
    else:
        yield from _hugging_face_rows(str(source))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def _hugging_face_rows(name: str) -> Iterator[tuple[str, Any]]:
    """Rows of `name` or `name:split` (default split: test), e.g. `princeton-nlp/SWE-bench_Verified`."""
    dataset, _, split = name.partition(":")
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError(
            f"{name!r} is not a file; as a Hugging Face dataset it needs `pip install 'patchfleet[hf]'`"
        ) from exc
    if not os.environ.get("HF_HUB_OFFLINE"):
        # without this, `datasets` retries for half a minute before a long traceback
        hub_reachable(name)
    try:
        rows = datasets.load_dataset(dataset, split=split or "test")
    except Exception as exc:  # datasets raises many unrelated types; all mean "not loadable" here
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DataError(f"{name}: not a file, and not a loadable Hugging Face dataset ({first})") from exc
    for number, row in enumerate(rows, start=1):
        yield f"{name} row {number}", row


DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".gz", ".txt")


def looks_like_path(source: str) -> bool:
    """A file path rather than a Hugging Face dataset name (`name`, `owner/name`, `owner/name:split`)."""
    return (
        source.startswith(("/", ".", "~"))
        or source.count("/") > 1
        or "\\" in source
        or source.lower().endswith(DATA_SUFFIXES)
    )


def hub_reachable(name: str, timeout: float = 5.0) -> None:
    """Raise a one-line `ConfigError` when the Hugging Face Hub does not answer at all (any HTTP status,
    even 401 or 404, means it does: then `datasets` gives the verdict). Honours HF_ENDPOINT and proxies."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    request = urllib.request.Request(f"{endpoint}/api/datasets/{name.partition(':')[0]}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            f"{name}: no such file, and the Hugging Face Hub at {endpoint} cannot be reached ({reason}); "
            "pass a .jsonl/.json/.parquet file, or set HF_HUB_OFFLINE=1 to use a cached copy"
        ) from exc


def _test_list(row: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    """FAIL_TO_PASS / PASS_TO_PASS: a JSON-encoded list upstream, a real list in some exports."""
    value = row.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: field {name} is not a JSON list ({exc.msg})") from exc
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise DataError(f"{where}: field {name} must be a list of test names")
    return tuple(value)


def _text(row: dict[str, Any], name: str, where: str, required: bool) -> str:
    value = row.get(name)
    if value is None:
        if required:
            raise DataError(f"{where}: missing field {name}")
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise DataError(f"{where}: field {name} is empty")
    return value


def _version(row: dict[str, Any], where: str) -> str:
    value = row.get("version")
    if value is None:
        return ""
    if not isinstance(value, str):
        # a float has already lost what matters: 1.10 and 1.1 are different recipes
        raise DataError(f"{where}: field version must be a string (got {type(value).__name__} {value!r})")
    return value


def _created_at(row: dict[str, Any]) -> str:
    value = row.get("created_at")
    if isinstance(value, datetime | date):  # parquet and datasets give timestamps
        return value.isoformat()
    return "" if value is None else str(value)


def parse_row(row: Any, where: str) -> tuple[Task, EvalSpec]:
    """One SWE-bench row into its solving half and its evaluation half."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: a row must be an object, got {type(row).__name__}")
    text = {name: _text(row, name, where, required=True) for name in TASK_FIELDS}
    if not _REPO.fullmatch(text["repo"]):
        raise DataError(f"{where}: field repo must be owner/name, got {text['repo']!r}")
    if not _SHA.fullmatch(text["base_commit"]):
        raise DataError(f"{where}: field base_commit must be a hex commit id, got {text['base_commit']!r}")
    setup_commit = _text(row, "environment_setup_commit", where, required=False)
    task = Task(
        id=text["instance_id"],
        repo=text["repo"],
        base_commit=text["base_commit"],
        problem_statement=text["problem_statement"],
        hints=_text(row, "hints_text", where, required=False),
        created_at=_created_at(row),
        version=_version(row, where),
        environment_setup_commit=setup_commit,
    )
    spec = EvalSpec(
        instance_id=task.id,
        test_patch=_text(row, "test_patch", where, required=False),
        fail_to_pass=_test_list(row, "FAIL_TO_PASS", where),
        pass_to_pass=_test_list(row, "PASS_TO_PASS", where),
        gold_patch=_text(row, "patch", where, required=False),
        environment_setup_commit=setup_commit,
    )
    return task, spec


def load_tasks(source: str | Path, instance_ids: Iterable[str] | None = None) -> Loaded:
    """Every good row of `source` (optionally only `instance_ids`), and an error for every bad one.

    With a filter, rows of other instances are skipped before they are checked, so a broken row that
    was not asked for costs nothing; ids asked for and not found are listed in `missing_ids`.
    """
    wanted = set(instance_ids) if instance_ids is not None else None
    loaded = Loaded()
    seen: set[str] = set()
    for where, row in read_rows(source):
        if isinstance(row, DataError):
            loaded.errors.append(row)
            continue
        if isinstance(row, dict) and isinstance(row.get("instance_id"), str):
            loaded.dataset_ids.add(row["instance_id"])
        if wanted is not None and isinstance(row, dict) and row.get("instance_id") not in wanted:
            continue
        try:
            task, spec = parse_row(row, where)
        except DataError as exc:
            loaded.errors.append(exc)
            continue
        if task.id in seen:
            loaded.errors.append(
                DataError(f"{where}: field instance_id: duplicate {task.id}; the first one is kept")
            )
            continue
        seen.add(task.id)
        loaded.tasks.append(task)
        loaded.eval_specs[task.id] = spec
    if wanted is not None:
        loaded.missing_ids = sorted(wanted - seen)
    return loaded


def read_ids(path: str | Path) -> list[str]:
    """Instance ids from a text file, one per line (blank lines and `#` comments ignored)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def load_predictions(
    source: str | Path, gold_from: Loaded | None = None
) -> tuple[dict[str, Prediction], list[DataError]]:
    """Predictions from .jsonl, a .json list, a .json dict keyed by instance id, or the word `gold`.

    A repeated instance id keeps the last prediction, as the official harness's dict does, and is
    reported. A `null` model_patch reads as "": the harness treats both as an empty patch (not run).
    """
    if str(source) == "gold":
        if gold_from is None:
            raise ConfigError("`gold` predictions need the dataset they come from")
        return {
            spec.instance_id: Prediction(
                instance_id=spec.instance_id, model_patch=spec.gold_patch, model_name_or_path="gold"
            )
            for spec in gold_from.eval_specs.values()
        }, []
    path = Path(source)
    rows: Iterable[tuple[str, Any]]
    if path.suffix == ".json" and path.is_file() and isinstance(data := _read_json(path), dict):
        rows = (
            (f"{path} key {key!r}", {"instance_id": key, **value} if isinstance(value, dict) else value)
            for key, value in data.items()
        )
    else:
        rows = read_rows(path)
    predictions: dict[str, Prediction] = {}
    errors: list[DataError] = []
    for where, row in rows:
        if isinstance(row, DataError):
            errors.append(row)
            continue
        try:
            prediction = _prediction(row, where)
        except DataError as exc:
            errors.append(exc)
            continue
        if prediction.instance_id in predictions:
            errors.append(
                DataError(
                    f"{where}: field instance_id: duplicate {prediction.instance_id}; the last one is kept"
                )
            )
        predictions[prediction.instance_id] = prediction
    return predictions, errors


def _prediction(row: Any, where: str) -> Prediction:
    if not isinstance(row, dict):
        raise DataError(f"{where}: a prediction must be an object, got {type(row).__name__}")
    instance_id = _text(row, "instance_id", where, required=True)
    if "model_patch" not in row:
        raise DataError(f"{where}: missing field model_patch")
    patch = row["model_patch"]
    if patch is not None and not isinstance(patch, str):
        raise DataError(f"{where}: field model_patch must be a string or null, got {type(patch).__name__}")
    model = _text(row, "model_name_or_path", where, required=False) or "unknown"
    return Prediction(instance_id=instance_id, model_patch=patch or "", model_name_or_path=model)
