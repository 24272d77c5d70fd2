"""Do our environments behave as the official ones, test by test, on instances we never tuned on?

    python benchmarks/heldout_envcheck.py --mirrors /path/to/mirrors --layout '{owner}+{name}/repo' \
        --out benchmarks/results/heldout_envcheck/heldout_envcheck.json \
        [--verdicts benchmarks/results/heldout_envcheck/verdicts.jsonl.gz] [--limit N] [--cached-only]

Official leaderboard verdicts exist in `../shared/data` only for the dev split, yet by the definition of
SWE-bench's FAIL_TO_PASS and PASS_TO_PASS lists every instance carries a per-test oracle of its official
environment: at the base commit (the empty patch) each FAIL_TO_PASS test fails and each PASS_TO_PASS test
passes, and with the gold patch all of them pass. So, for the Verified instances outside the dev split
whose repositories can be brought here, this evaluates the empty and the gold patch and lists every test
whose status differs from that oracle:

- `f2p_pass_at_base`: a FAIL_TO_PASS test that passes without any fix. Our environment hides the bug (a
  newer package, different state), and any candidate "fixes" that test here: a false-positive risk, the
  kind of difference that makes us say resolved where the official harness does not;
- `p2p_fail_at_base`, `p2p_fail_with_gold`: a test our environment cannot pass (missing network, a
  conda-only package, a different version): a false-negative risk;
- `f2p_fail_with_gold`: the fix does not fix it here;
- `not_run_at_base`, `not_run_with_gold`: a listed test that neither passes nor fails here (skipped: a
  missing optional package, an older SQLite, no network). Every listed test ran and passed officially,
  and swebench's grading counts such a test as neither success nor failure, so a candidate that breaks it
  is resolved here and not officially (a FAIL_TO_PASS test skipped at base even resolves the empty patch).

Verdicts are cached in --work and exported to --verdicts after each instance, as in eval_fidelity.py, so
a run longer than a session continues on the next machine; `--cached-only` reports what the export holds.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

from patchfleet.data.loaders import load_tasks
from patchfleet.data.sources import MirrorFolder
from patchfleet.data.task import Prediction
from patchfleet.runs.evaluation import Evaluator, Outcome
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.trust import HostTrust

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
# repositories whose upstream mirrors are small enough to bring here (django, scikit-learn and
# matplotlib are not; astropy has its own gold benchmark, astropy_gold.py)
MEASURABLE = (
    "psf/requests",
    "pytest-dev/pytest",
    "pylint-dev/pylint",
    "sphinx-doc/sphinx",
    "sympy/sympy",
    "pydata/xarray",
    "mwaskom/seaborn",
    "pallets/flask",
)


def heldout_ids(data: Path) -> list[str]:
    """Verified instances of the measurable repositories that are not in the dev split, one repository
    after another in turn (a run cut short still samples each)."""
    dev = set((data / "splits" / "dev_ids.txt").read_text().split())
    by_repo: dict[str, list[str]] = collections.defaultdict(list)
    for row in map(json.loads, (data / "swebench_verified.jsonl").open()):
        if row["instance_id"] not in dev and row["repo"] in MEASURABLE:
            by_repo[row["repo"]].append(row["instance_id"])
    queues = [sorted(ids) for _, ids in sorted(by_repo.items())]
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def test_status(outcome: Outcome) -> dict[str, dict[str, list[str]]] | None:
    """The report's per-test status ({FAIL_TO_PASS: {success, failure}, PASS_TO_PASS: ...})."""
    if outcome.report is None:
        return None
    return outcome.report[outcome.instance_id].get("tests_status")


def not_run(status: dict[str, dict[str, list[str]]], listed: dict[str, tuple[str, ...]]) -> list[str]:
    """Listed tests that the report counts neither as success nor as failure (skipped here)."""
    return [
        test
        for part, tests in listed.items()
        for test in tests
        if test not in status[part]["success"] and test not in status[part]["failure"]
    ]


def differences(base: Outcome, gold: Outcome, listed: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """Every test whose status differs from what the official environment gives, by definition."""
    at_base, with_gold = test_status(base), test_status(gold)
    row: dict[str, Any] = {
        "gold_resolved": gold.resolved,
        "empty_resolved": base.resolved,
        "errors": {k: o.error for k, o in (("empty", base), ("gold", gold)) if o.error},
    }
    if at_base is not None:
        row["f2p_pass_at_base"] = at_base["FAIL_TO_PASS"]["success"]
        row["p2p_fail_at_base"] = at_base["PASS_TO_PASS"]["failure"]
        row["not_run_at_base"] = not_run(at_base, listed)
    if with_gold is not None:
        row["f2p_fail_with_gold"] = with_gold["FAIL_TO_PASS"]["failure"]
        row["p2p_fail_with_gold"] = with_gold["PASS_TO_PASS"]["failure"]
        row["not_run_with_gold"] = not_run(with_gold, listed)
        parts = ("FAIL_TO_PASS", "PASS_TO_PASS")
        row["tests"] = sum(len(v) for part in parts for v in with_gold[part].values())
    return row


def summarise(rows: dict[str, dict[str, Any]], repos: dict[str, str]) -> dict[str, Any]:
    """Counts over the instances done, and per repository, of each kind of difference."""
    kinds = (
        "f2p_pass_at_base",
        "p2p_fail_at_base",
        "f2p_fail_with_gold",
        "p2p_fail_with_gold",
        "not_run_at_base",
        "not_run_with_gold",
    )
    per_repo: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for instance_id, row in rows.items():
        counter = per_repo[repos[instance_id]]
        counter["instances"] += 1
        counter["gold_resolved"] += row["gold_resolved"]
        counter["empty_resolved"] += row["empty_resolved"]
        counter["tests"] += row.get("tests", 0)
        for kind in kinds:
            counter[f"instances_with_{kind}"] += bool(row.get(kind))
            counter[f"tests_{kind}"] += len(row.get(kind, ()))
    total: collections.Counter[str] = collections.Counter()
    for counter in per_repo.values():
        total.update(counter)
    return {"total": dict(total), "by_repo": {repo: dict(c) for repo, c in sorted(per_repo.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, required=True)
    parser.add_argument("--layout", default="{owner}+{name}/repo")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--instance-ids", nargs="*", default=None, help="only these (default: all held out)")
    parser.add_argument("--work", type=Path, default=Path("out/heldout_envcheck"))
    parser.add_argument("--verdicts", type=Path, default=None, help="verdict export to merge and update")
    parser.add_argument("--cached-only", action="store_true", help="evaluate nothing; report the cache")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    ids = args.instance_ids or heldout_ids(args.data)
    if args.limit:
        ids = ids[: args.limit]
    loaded = load_tasks(args.data / "swebench_verified.jsonl", instance_ids=ids)
    tasks = {t.id: t for t in loaded.tasks}
    unknown = sorted(set(ids) - set(tasks))
    if unknown:
        parser.error(f"--instance-ids: not in {args.data / 'swebench_verified.jsonl'}: {unknown}")
    repos = {t.id: t.repo for t in loaded.tasks}
    evaluator = Evaluator(
        DockerBackend(trust=HostTrust.from_env()),
        MirrorFolder(root=args.mirrors, layout=args.layout),
        args.work,
        log=print,
    )
    if args.verdicts and args.verdicts.is_file():
        print(f"merged {evaluator.verdicts.merge(args.verdicts)} verdicts from {args.verdicts}")
    started = time.monotonic()
    rows: dict[str, dict[str, Any]] = {}

    def write() -> None:
        report = {
            "benchmark": "heldout_envcheck",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(),
            "note": "Verified instances outside the dev split, measurable repositories; the oracle is the "
            "definition of FAIL_TO_PASS (fails at base, passes with gold) and PASS_TO_PASS (passes in both)",
            "instances_planned": len(ids),
            "instances_done": len(rows),
            "seconds": round(time.monotonic() - started, 1),
            **summarise(rows, repos),
            "instances": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")

    for instance_id in ids:
        task, spec = tasks[instance_id], loaded.eval_specs[instance_id]
        predictions = [
            Prediction(instance_id=instance_id, model_patch="", model_name_or_path="empty"),
            Prediction(instance_id=instance_id, model_patch=spec.gold_patch, model_name_or_path="gold"),
        ]
        if args.cached_only:
            outcomes = [evaluator.cached(task, spec, p) for p in predictions]
            if None in outcomes:
                continue
        else:
            outcomes = [evaluator.evaluate(task, spec, p) for p in predictions]
        listed = {"FAIL_TO_PASS": spec.fail_to_pass, "PASS_TO_PASS": spec.pass_to_pass}
        rows[instance_id] = differences(*outcomes, listed)
        print(instance_id, json.dumps({k: v for k, v in rows[instance_id].items() if v}), flush=True)
        if not args.cached_only:
            write()
            if args.verdicts:
                evaluator.verdicts.export(args.verdicts)
    write()
    print(json.dumps(summarise(rows, repos)["total"], indent=1))


if __name__ == "__main__":
    main()
