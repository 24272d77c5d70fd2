"""Does our evaluation give the official verdicts? Gold, empty and the real leaderboard patches of
`candidates_dev.jsonl`, evaluated in our environments, against the official `resolved` flags.

    python benchmarks/eval_fidelity.py --mirrors /path/to/mirrors --layout '{owner}+{name}/repo' \
        --out bench-results/eval_fidelity.json [--limit 10] [--workers 2] [--no-candidates]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import re
import subprocess
import time
from pathlib import Path

from patchfleet.data.loaders import load_predictions, load_tasks
from patchfleet.data.sources import MirrorFolder
from patchfleet.data.task import Prediction
from patchfleet.runs.evaluation import Evaluator, run_evaluation
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.trust import HostTrust

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


SIZE = re.compile(r"([\d.]+)\s*([kMGT]?B)")
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def image_sizes() -> dict[str, int]:
    """Bytes that patchfleet's base, env and instance layers add on their own (`docker system df -v`)."""
    out = subprocess.run(
        ["docker", "system", "df", "-v", "--format", "{{json .Images}}"], capture_output=True, text=True
    ).stdout
    sizes: collections.Counter[str] = collections.Counter()
    for image in json.loads(out or "[]"):
        repo = image.get("Repository", "")
        match = SIZE.fullmatch(image.get("UniqueSize", "0B"))
        if repo.startswith("patchfleet/") and match:
            sizes[repo.rpartition("/")[2]] += int(float(match.group(1)) * UNITS[match.group(2)])
    return dict(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, required=True)
    parser.add_argument("--layout", default="{owner}+{name}/repo")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-candidates", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("out/eval_fidelity"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    dev = sorted((args.data / "splits" / "dev_ids.txt").read_text().split())
    if args.limit:
        dev = dev[: args.limit]
    loaded = load_tasks(args.data / "swebench_verified.jsonl", instance_ids=dev)
    evaluator = Evaluator(
        DockerBackend(trust=HostTrust.from_env()),
        MirrorFolder(root=args.mirrors, layout=args.layout),
        args.work,
        log=print,
    )
    started = time.monotonic()
    gold, _ = load_predictions("gold", gold_from=loaded)
    gold_summary = run_evaluation(
        evaluator, loaded.tasks, loaded.eval_specs, gold, workers=args.workers, run_id="gold"
    )
    empty = {i: Prediction(instance_id=i, model_patch="", model_name_or_path="empty") for i in gold}
    empty_summary = run_evaluation(
        evaluator, loaded.tasks, loaded.eval_specs, empty, workers=args.workers, run_id="empty"
    )
    gold_ok = set(gold_summary["resolved_ids"])
    agreement = {"pairs": 0, "agree": 0, "disagreements": []}
    if not args.no_candidates:
        by_submission: dict[str, dict[str, tuple[str, bool]]] = collections.defaultdict(dict)
        for row in map(json.loads, (args.data / "candidates_dev.jsonl").open()):
            if row["instance_id"] in gold_ok:
                by_submission[row["submission"]][row["instance_id"]] = (row["model_patch"], row["resolved"])
        for submission, rows in sorted(by_submission.items()):
            predictions = {
                i: Prediction(instance_id=i, model_patch=p, model_name_or_path=submission)
                for i, (p, _) in rows.items()
            }
            summary = run_evaluation(
                evaluator,
                loaded.tasks,
                loaded.eval_specs,
                predictions,
                workers=args.workers,
                run_id=submission,
            )
            ours = set(summary["resolved_ids"])
            for instance_id, (_, official) in rows.items():
                agreement["pairs"] += 1
                if (instance_id in ours) == official:
                    agreement["agree"] += 1
                else:
                    agreement["disagreements"].append(
                        {
                            "submission": submission,
                            "instance_id": instance_id,
                            "official": official,
                            "ours": instance_id in ours,
                            "error": summary["errors"].get(instance_id),
                        }
                    )
    timings = gold_summary["timings"]
    report = {
        "benchmark": "eval_fidelity",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "instances": len(loaded.tasks),
        "gold_resolved": len(gold_ok),
        "gold_rate": round(len(gold_ok) / max(len(loaded.tasks), 1), 4),
        "gold_not_resolved": {
            i: gold_summary["errors"].get(i, "unresolved") for i in sorted(set(gold) - gold_ok)
        },
        "empty_resolved": empty_summary["resolved_instances"],
        "candidate_agreement": agreement,
        "candidate_agreement_rate": round(agreement["agree"] / max(agreement["pairs"], 1), 4),
        "seconds_total": round(time.monotonic() - started, 1),
        "seconds_in_tests_gold": round(sum(t.get("tests", 0) for t in timings.values()), 1),
        "seconds_outside_tests_gold": round(
            sum(t.get("total", 0) - t.get("tests", 0) for t in timings.values()), 1
        ),
        "image_bytes_by_layer": image_sizes(),
        "workers": args.workers,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "candidate_agreement"}, indent=1))


if __name__ == "__main__":
    main()
