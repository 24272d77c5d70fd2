"""Does every astropy gold patch of SWE-bench Verified resolve in our environments? astropy has compiled
extensions and its own pins (see `data/astropy_env.py`), and is not in the dev split.

    python benchmarks/astropy_gold.py --mirrors /path/to/mirrors --layout '{owner}+{name}/repo' \
        --out benchmarks/results/astropy_gold/astropy_gold.json \
        [--verdicts benchmarks/results/astropy_gold/verdicts.jsonl.gz] [--cached-only] [--instance-ids ...]

One instance of each version first (a recipe problem shows early), then the rest. Verdicts are cached in
--work and, with --verdicts, exported after each instance, so a run cut short continues on the next
machine; `--cached-only` reports what the cache holds. `--causes FILE` ({instance_id: cause}) attaches the
cause of each gold patch that does not resolve, written after reading its test log, and the reason an
instance could not be evaluated at all (`not_measured`; those are not counted as unresolved).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

from patchfleet.data.loaders import load_predictions, load_tasks
from patchfleet.data.recipes import recipe_for
from patchfleet.data.sources import MirrorFolder
from patchfleet.data.task import Task
from patchfleet.runs.evaluation import Evaluator, Outcome
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.trust import HostTrust

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
REPO = "astropy/astropy"


def version_first(tasks: list[Task]) -> list[Task]:
    """The first instance of every version, then the second of every version, and so on."""
    seen: dict[str, int] = {}
    rank = {}
    for t in sorted(tasks, key=lambda t: t.id):
        rank[t.id] = seen.get(t.version, 0)
        seen[t.version] = rank[t.id] + 1
    return sorted(tasks, key=lambda t: (rank[t.id], t.version, t.id))


def failing(outcome: Outcome) -> dict[str, list[str]]:
    """The hidden tests that did not pass, by kind (empty when resolved or when nothing ran)."""
    if not outcome.report:
        return {}
    status = outcome.report[outcome.instance_id].get("tests_status", {})
    found = {kind: status.get(kind, {}).get("failure", []) for kind in ("FAIL_TO_PASS", "PASS_TO_PASS")}
    return {kind: tests for kind, tests in found.items() if tests}


def row(task: Task, outcome: Outcome, source: MirrorFolder, causes: dict[str, str]) -> dict[str, object]:
    recipe = recipe_for(task, source)
    entry: dict[str, object] = {
        "instance_id": task.id,
        "version": task.version,
        "python": recipe.runtime_python,
        "base": recipe.distro,
        "resolved": outcome.resolved,
        "failing": failing(outcome),
        "apply_method": outcome.apply_method,
        # None for a verdict read from the cache (its run's time is in that run's log)
        "seconds": round(outcome.timings["total"], 1) if "total" in outcome.timings else None,
    }
    if not outcome.resolved:
        entry["cause"] = causes.get(task.id, "not yet explained")
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, required=True)
    parser.add_argument("--layout", default="{owner}+{name}/repo")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=Path("out/astropy_gold"))
    parser.add_argument("--instance-ids", nargs="*", default=[])
    parser.add_argument("--verdicts", type=Path, default=None, help="verdict export to merge and rewrite")
    parser.add_argument("--causes", type=Path, default=None, help="JSON {instance_id: cause}")
    parser.add_argument("--cached-only", action="store_true", help="evaluate nothing; report the cache")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    loaded = load_tasks(args.data / "swebench_verified.jsonl", instance_ids=args.instance_ids or None)
    tasks = version_first([t for t in loaded.tasks if t.repo == REPO])
    source = MirrorFolder(root=args.mirrors, layout=args.layout)
    evaluator = Evaluator(DockerBackend(trust=HostTrust.from_env()), source, args.work, log=print)
    if args.verdicts and args.verdicts.is_file():
        print(f"merged {evaluator.verdicts.merge(args.verdicts)} verdicts from {args.verdicts}")
    causes = json.loads(args.causes.read_text()) if args.causes else {}
    gold, _ = load_predictions("gold", gold_from=loaded)
    started = time.monotonic()
    rows, missing = [], {}
    for task in tasks:
        spec, prediction = loaded.eval_specs[task.id], gold[task.id]
        if args.cached_only:
            outcome = evaluator.cached(task, spec, prediction)
        else:
            outcome = evaluator.evaluate(task, spec, prediction, run_id="gold")
            if args.verdicts:
                evaluator.verdicts.export(args.verdicts)
        if outcome is None or outcome.report is None:
            # no verdict: not evaluated yet, or the evaluation could not run (kept apart from "unresolved")
            missing[task.id] = causes.get(task.id) or (outcome.error if outcome else "not evaluated yet")
            print(f"{task.id} ({task.version}): not measured")
            continue
        rows.append(row(task, outcome, source, causes))
        print(f"{task.id} ({task.version}): {'resolved' if outcome.resolved else 'NOT resolved'}")
    if args.verdicts:  # also after --cached-only: the export then carries a cache other runs filled
        evaluator.verdicts.export(args.verdicts)
    resolved = [r["instance_id"] for r in rows if r["resolved"]]
    report = {
        "benchmark": "astropy_gold",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "seconds": round(time.monotonic() - started, 1),
        "instances": len(tasks),
        "measured": len(rows),
        "not_measured": missing,
        "resolved": len(resolved),
        "not_resolved": {r["instance_id"]: r["cause"] for r in rows if not r["resolved"]},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"gold resolved {len(resolved)} / {len(rows)} measured of {len(tasks)} astropy instances")


if __name__ == "__main__":
    main()
