"""The verdict cache: one JSON file per (instance, verdict key) under `<out>/verdicts/`.

Keys are content hashes (recipe, image tag, hidden tests, patch; see `evaluation.verdict_key`), so a
verdict is valid wherever the key matches: a killed run resumes from it, equal patches run once, and
an export (JSONL, gzipped when the name ends in .gz) carries verdicts to another machine, where
`merge` adds the ones it lacks. This is how an evaluation longer than one machine's session finishes.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from patchfleet.atomic import write_json_atomic
from patchfleet.errors import DataError

CACHE_DIR = "verdicts"


class VerdictCache:
    """`chain`: the patch-apply chain the verdicts were made with; an entry made with another chain is
    reused only when its apply method is one of `stable_methods` (its verdict cannot depend on it)."""

    def __init__(self, out_dir: Path, *, chain: list[str], stable_methods: set[str]) -> None:
        self.root = out_dir / CACHE_DIR
        self.chain = chain
        self.stable_methods = stable_methods

    def _path(self, instance_id: str, key: str) -> Path:
        return self.root / instance_id / f"{key}.json"

    def get(self, instance_id: str, key: str) -> dict[str, Any] | None:
        found = self.lookup(instance_id, key)
        return found[0] if found else None

    def method(self, instance_id: str, key: str) -> str | None:
        """How the cached verdict's patch got applied (a step of the chain, or "empty")."""
        found = self.lookup(instance_id, key)
        return found[1] if found else None

    def lookup(self, instance_id: str, key: str) -> tuple[dict[str, Any], str | None] | None:
        """(report, apply method) of a usable entry, from one read of its file."""
        entry = self._usable(instance_id, key)
        return (entry["report"], entry.get("method")) if entry else None

    def _usable(self, instance_id: str, key: str) -> dict[str, Any] | None:
        try:
            entry = json.loads(self._path(instance_id, key).read_text())
            entry["report"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or torn by a kill: evaluate again
        # the chain matters only when plain `git apply` fails, and that first step never changes
        if entry.get("chain") != self.chain and entry.get("method") not in self.stable_methods:
            return None
        return entry

    def put(self, instance_id: str, key: str, report: dict[str, Any], method: str, logs: Path) -> None:
        entry = {"report": report, "logs": str(logs), "method": method, "chain": self.chain}
        write_json_atomic(self._path(instance_id, key), entry)

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every readable entry, with its instance and key, without the local log path."""
        for path in sorted(self.root.glob("*/*.json")):
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            entry.pop("logs", None)
            yield {"instance_id": path.parent.name, "key": path.stem, **entry}

    def export(self, path: Path) -> int:
        """Write every entry to a JSONL file (atomically); return how many."""
        tmp = path.with_name(path.name + ".tmp")
        count = 0
        with _open(tmp, "wt") as handle:
            for entry in self.entries():
                handle.write(json.dumps(entry, sort_keys=True) + "\n")
                count += 1
        tmp.replace(path)
        return count

    def merge(self, path: Path) -> int:
        """Add the entries of an export that are not here; return how many were added."""
        added = 0
        with _open(path, "rt") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    entry = json.loads(line)
                    instance_id, key = entry.pop("instance_id"), entry.pop("key")
                    entry["report"]
                except (ValueError, KeyError, AttributeError) as exc:
                    raise DataError(f"{path}:{number}: not a verdict entry ({exc})") from exc
                if "/" in instance_id or "/" in key or instance_id.startswith("."):
                    raise DataError(f"{path}:{number}: bad instance id or key")
                target = self._path(instance_id, key)
                if not target.exists():
                    entry["logs"] = f"merged from {path.name}"
                    write_json_atomic(target, entry)
                    added += 1
        return added


def _open(path: Path, mode: str) -> IO[str]:
    if path.name.endswith(".gz") or path.name.endswith(".gz.tmp"):
        return gzip.open(path, mode, encoding="utf-8")  # type: ignore[return-value]
    return path.open(mode, encoding="utf-8")
