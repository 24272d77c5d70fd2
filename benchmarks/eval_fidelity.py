"""Does our evaluation give the official verdicts? Gold, empty and the real leaderboard patches of
`candidates_dev.jsonl`, evaluated in our environments, against the official `resolved` flags.

    python benchmarks/eval_fidelity.py --mirrors /path/to/mirrors --layout '{owner}+{name}/repo' \
        --out benchmarks/results/eval_fidelity/eval_fidelity.json [--limit 10] [--workers 2] \
        [--no-candidates] [--verdicts benchmarks/results/eval_fidelity/verdicts.jsonl.gz]
    python benchmarks/eval_fidelity.py ... --throughput 6 \
        --out benchmarks/results/eval_fidelity/eval_throughput.json

Verdicts are cached in --work (see `runs.evaluation.verdict_key`): a killed run resumes, and the
identical patches several submissions share are evaluated once; `--verdicts FILE` carries that cache
to the next machine (committed in benchmarks/results/eval_fidelity/, it lets the next session continue
the run), and `--cached-only` reports what such a file holds without evaluating anything.
`--throughput K` instead evaluates the gold patches of K instances whose images exist, with 1 then 2
workers, in fresh folders (no cache).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from patchfleet.data.loaders import load_predictions, load_tasks
from patchfleet.data.recipes import recipe_for
from patchfleet.data.sources import MirrorFolder
from patchfleet.data.task import Prediction
from patchfleet.runs.evaluation import Evaluator, instance_dir, run_evaluation
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.images import image_spec
from patchfleet.sandbox.trust import HostTrust

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def image_sizes() -> dict[str, int]:
    """Bytes each kind of patchfleet layer adds on its own: the top layer of every base/env/instance image
    (each is one `docker import` or `docker commit` over its parent), summed per kind."""
    import docker

    client = docker.from_env()
    sizes: collections.Counter[str] = collections.Counter()
    for image in client.images.list(name="patchfleet/*"):
        kind = image.tags[0].split(":")[0].rpartition("/")[2] if image.tags else "untagged"
        history = image.history()
        sizes[kind] += int(history[0].get("Size", 0)) if history else 0
        sizes[f"{kind}_images"] += 1
    return dict(sizes)


def layer_disk(sizes: dict[str, int], instances: int) -> dict[str, float]:
    """Disk per layer kind in MB, and what one more instance costs once its environment exists."""
    mb = {f"{kind}_mb": round(size / 1e6, 1) for kind, size in sizes.items() if not kind.endswith("_images")}
    counts = {kind: n for kind, n in sizes.items() if kind.endswith("_images")}
    per_instance = sizes.get("inst", 0) / max(sizes.get("inst_images", 0), 1) / 1e6
    per_env = sizes.get("env", 0) / max(sizes.get("env_images", 0), 1) / 1e6
    return {
        **mb,
        **counts,
        "dataset_instances": instances,
        "mb_per_instance_layer": round(per_instance, 1),
        "mb_per_env_layer": round(per_env, 1),
    }


def why_not_resolved(work: Path, run_id: str, instance_id: str, error: str | None) -> str:
    """The cause of a gold patch not resolving: the error, or the hidden tests that did not pass."""
    if error:
        return error
    try:
        report = json.loads((instance_dir(work, run_id, "gold", instance_id) / "report.json").read_text())
        report = report[instance_id]
    except (OSError, ValueError, KeyError):
        return "unresolved (no report)"
    status = report.get("tests_status", {})
    failed = {kind: status.get(kind, {}).get("failure", []) for kind in ("FAIL_TO_PASS", "PASS_TO_PASS")}
    return "unresolved; failing: " + json.dumps(
        {k: v[:5] + (["..."] if len(v) > 5 else []) for k, v in failed.items() if v}
    )


def throughput(args: argparse.Namespace, loaded, count: int) -> dict[str, object]:
    """Gold patches of `count` instances whose images exist, with 1 and 2 workers, side by side."""
    existing = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True
    ).stdout
    source = MirrorFolder(root=args.mirrors, layout=args.layout)
    ready = [t for t in loaded.tasks if image_spec(t, recipe_for(t, source)).tags()[-1] in existing][:count]
    gold, _ = load_predictions("gold", gold_from=loaded)
    results: dict[str, object] = {"instances": [t.id for t in ready]}
    for workers in (1, 2):
        work = args.work / f"throughput-{workers}-{time.time_ns()}"
        evaluator = Evaluator(DockerBackend(trust=HostTrust.from_env()), source, work)
        started = time.monotonic()
        summary = run_evaluation(evaluator, ready, loaded.eval_specs, gold, workers=workers, run_id="gold")
        wall = time.monotonic() - started
        timings = summary["timings"].values()
        tests = sum(t.get("tests", 0) for t in timings)
        total = sum(t.get("total", 0) for t in timings)
        results[f"workers_{workers}"] = {
            "wall_seconds": round(wall, 1),
            "instances_per_hour": round(len(ready) * 3600 / max(wall, 1e-9), 1),
            "resolved": summary["resolved_instances"],
            "seconds_in_eval_script": round(tests, 1),
            "seconds_outside_eval_script": round(total - tests, 1),
            "share_outside_eval_script": round((total - tests) / max(total, 1e-9), 3),
        }
    one, two = results["workers_1"], results["workers_2"]
    results["speedup_2_vs_1"] = round(one["wall_seconds"] / max(two["wall_seconds"], 1e-9), 2)  # type: ignore[index]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, required=True)
    parser.add_argument("--layout", default="{owner}+{name}/repo")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--instance-ids", nargs="*", default=None, help="only these dev instances")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-candidates", action="store_true")
    parser.add_argument(
        "--throughput", type=int, default=0, help="only measure 1 vs 2 workers on K instances"
    )
    parser.add_argument("--work", type=Path, default=Path("out/eval_fidelity"))
    parser.add_argument(
        "--verdicts",
        type=Path,
        default=None,
        help="a verdict export (.jsonl[.gz]): merged into --work's cache first, rewritten after each "
        "instance, so a run longer than one machine's session continues on the next",
    )
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="evaluate nothing: report what the verdict cache (and --verdicts) holds, over the instances "
        "whose every verdict is there",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    dev = sorted((args.data / "splits" / "dev_ids.txt").read_text().split())
    if args.instance_ids:
        unknown = sorted(set(args.instance_ids) - set(dev))
        if unknown:
            parser.error(f"--instance-ids: not in the dev split: {unknown}")
        dev = sorted(args.instance_ids)
    if args.limit:
        dev = dev[: args.limit]
    loaded = load_tasks(args.data / "swebench_verified.jsonl", instance_ids=dev)
    tasks_by_id = {t.id: t for t in loaded.tasks}
    if args.throughput:
        report = {
            "benchmark": "eval_throughput",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(),
            **throughput(args, loaded, args.throughput),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=1))
        return
    evaluator = Evaluator(
        DockerBackend(trust=HostTrust.from_env()),
        MirrorFolder(root=args.mirrors, layout=args.layout),
        args.work,
        log=print,
    )
    if args.verdicts and args.verdicts.is_file():
        print(f"merged {evaluator.verdicts.merge(args.verdicts)} verdicts from {args.verdicts}")
    started = time.monotonic()
    gold, _ = load_predictions("gold", gold_from=loaded)
    if args.cached_only:
        missing = [
            i for i, p in gold.items() if evaluator.cached(tasks_by_id[i], loaded.eval_specs[i], p) is None
        ]
        if missing:
            raise SystemExit(
                f"--cached-only: no stored gold verdict for {len(missing)} instances: {missing[:5]}"
            )
    gold_summary = run_evaluation(
        evaluator, loaded.tasks, loaded.eval_specs, gold, workers=args.workers, run_id="gold"
    )
    gold_ok = set(gold_summary["resolved_ids"])
    candidates: dict[str, list[tuple[str, str, bool]]] = collections.defaultdict(list)
    if not args.no_candidates:
        for row in map(json.loads, (args.data / "candidates_dev.jsonl").open()):
            candidates[row["instance_id"]].append((row["submission"], row["model_patch"], row["resolved"]))

    def write_report(done: dict[str, list[dict[str, object]]]) -> dict[str, object]:
        report = fidelity_report(args, loaded, gold, gold_summary, done, time.monotonic() - started)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        return report

    # instance by instance (its image is warm; identical patches hit the verdict cache), so that a run
    # cut short still has every verdict of the instances it finished, and writes them after each one
    done: dict[str, list[dict[str, object]]] = {}
    with ThreadPoolExecutor(max_workers=max(args.workers, 1)) as pool:
        for instance_id in round_robin_by_repo(sorted(tasks_by_id)):
            jobs = [("empty", "", False)] + (candidates[instance_id] if instance_id in gold_ok else [])
            task, spec = tasks_by_id[instance_id], loaded.eval_specs[instance_id]
            predictions = [
                Prediction(instance_id=instance_id, model_patch=patch, model_name_or_path=submission)
                for submission, patch, _ in jobs
            ]
            if args.cached_only:
                outcomes = [evaluator.cached(task, spec, prediction) for prediction in predictions]
                if None in outcomes:
                    continue  # not finished by any run yet
            else:
                futures = [pool.submit(evaluator.evaluate, task, spec, p) for p in predictions]
                outcomes = [future.result() for future in futures]
            done[instance_id] = [
                {
                    "submission": submission,
                    "official": official,
                    "ours": outcome.resolved,
                    "error": outcome.error,
                    "apply_method": outcome.apply_method,
                }
                for (submission, _, official), outcome in zip(jobs, outcomes, strict=True)
            ]
            if not args.cached_only:
                write_report(done)
                if args.verdicts:
                    evaluator.verdicts.export(args.verdicts)
    report = write_report(done)
    print(json.dumps({k: v for k, v in report.items() if k != "candidate_disagreements"}, indent=1))


FUZZ = "patch --batch"


def round_robin_by_repo(instance_ids: list[str]) -> list[str]:
    """One instance of each repository in turn, so that a run cut short still samples every repository."""
    by_repo: dict[str, list[str]] = collections.defaultdict(list)
    for instance_id in instance_ids:
        by_repo[instance_id.rsplit("-", 1)[0]].append(instance_id)
    queues = list(by_repo.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def _same_change(patch: str) -> str:
    """A patch's text without what cannot change its effect: `index` lines and trailing whitespace."""
    lines = (line.rstrip() for line in patch.strip().splitlines() if not line.startswith("index "))
    return "\n".join(lines)


def contradicting_twins(candidates: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """(instance, submission) -> the other submissions whose patch is the same change (byte for byte but
    `index` lines and trailing whitespace) and whose official flag is the opposite. For such a pair no
    harness can agree with both flags: the official verdict is not a function of the patch there."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for row in candidates:
        groups[row["instance_id"], _same_change(row["model_patch"])].append(row)
    twins: dict[tuple[str, str], list[str]] = {}
    for rows in groups.values():
        for row in rows:
            opposite = [r["submission"] for r in rows if r["resolved"] != row["resolved"]]
            if opposite:
                twins[row["instance_id"], row["submission"]] = opposite
    return twins


def annotate_disagreements(disagreements: list[dict[str, Any]], candidates_file: Path) -> dict[str, object]:
    """Mark each disagreement whose official flag a twin patch contradicts, and count them."""
    twins = contradicting_twins([json.loads(line) for line in candidates_file.open()])
    for row in disagreements:
        row["official_flag_contradicted_by"] = twins.get((row["instance_id"], row["submission"]), [])
    contradicted = sum(bool(row["official_flag_contradicted_by"]) for row in disagreements)
    return {"candidate_disagreements_official_flags_contradict": contradicted}


def fidelity_report(args, loaded, gold, gold_summary, done, seconds: float) -> dict[str, object]:
    """Gold rate with causes, empty-patch verdicts, and agreement with the official flags so far."""
    gold_ok = set(gold_summary["resolved_ids"])
    pairs = [
        {"instance_id": i, **row}
        for i, rows in done.items()
        for row in rows
        if row["submission"] != "empty" and i in gold_ok
    ]
    disagreements = [p for p in pairs if p["ours"] != p["official"]]
    empty = {i: rows[0] for i, rows in done.items()}
    sizes = image_sizes()
    timings = gold_summary["timings"]
    fresh = [t for t in timings.values() if "total" in t]
    return {
        "benchmark": "eval_fidelity",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "instances": len(loaded.tasks),
        "gold_resolved": len(gold_ok),
        "gold_rate": round(len(gold_ok) / max(len(loaded.tasks), 1), 4),
        "gold_not_resolved": {
            i: why_not_resolved(args.work, "gold", i, gold_summary["errors"].get(i))
            for i in sorted(set(gold) - gold_ok)
        },
        "empty_evaluated": len(empty),
        "empty_resolved": sorted(i for i, row in empty.items() if row["ours"]),
        "empty_errors": {i: row["error"] for i, row in empty.items() if row["error"]},
        "candidate_instances_done": sum(1 for i in done if i in gold_ok),
        "candidate_pairs": len(pairs),
        "candidate_agree": len(pairs) - len(disagreements),
        "candidate_agreement_rate": round(1 - len(disagreements) / max(len(pairs), 1), 4),
        "candidate_disagreements": disagreements,
        # the same change with the opposite official flag elsewhere: no harness can agree with both
        **annotate_disagreements(disagreements, args.data / "candidates_dev.jsonl"),
        # patches only `patch --fuzz` applies: a harness without that fallback calls them unapplied
        "candidate_pairs_applied_only_by_fuzz": sum(FUZZ in (p.get("apply_method") or "") for p in pairs),
        "seconds_total": round(seconds, 1),
        "gold_fresh_evaluations": len(fresh),
        "seconds_in_eval_script_gold": round(sum(t.get("tests", 0) for t in fresh), 1),
        "seconds_outside_eval_script_gold": round(sum(t["total"] - t.get("tests", 0) for t in fresh), 1),
        "image_bytes_by_layer": sizes,
        "disk_mb": layer_disk(sizes, len(loaded.tasks)),
        "workers": args.workers,
    }


if __name__ == "__main__":
    main()
