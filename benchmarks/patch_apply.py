"""Real leaderboard patches through the sandbox's fallback chain, at their real base commits.

For each dev instance: an instance layer (one-commit repository from the upstream mirror), one sandbox,
and every candidate patch of `candidates_dev.jsonl` applied, diffed and reset in turn. Reports how many
apply with each method, which apply with none, and whether `diff()` after applying reproduces a patch
that applies cleanly with plain `git apply` (what the agent's submissions will be).

    python benchmarks/patch_apply.py --mirrors /path/to/mirrors --layout '{owner}+{name}/repo' \
        --out bench-results/patch_apply.json [--limit 20]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import time
from pathlib import Path

from patchfleet.data.sources import MirrorFolder
from patchfleet.sandbox.base import PatchMethod, SandboxSpec
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.images import BaseLayer, ImageBuilder, ImageSpec, InstanceLayer
from patchfleet.sandbox.trust import HostTrust

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def load(data: Path) -> tuple[list[dict], dict[str, list[dict]]]:
    dev = set((data / "splits" / "dev_ids.txt").read_text().split())
    # only the solving-side fields of the task rows are read here: repo and base commit
    tasks = [
        {"instance_id": row["instance_id"], "repo": row["repo"], "base_commit": row["base_commit"]}
        for row in map(json.loads, (data / "swebench_verified.jsonl").open())
        if row["instance_id"] in dev
    ]
    candidates: dict[str, list[dict]] = collections.defaultdict(list)
    for row in map(json.loads, (data / "candidates_dev.jsonl").open()):
        candidates[row["instance_id"]].append({"submission": row["submission"], "patch": row["model_patch"]})
    return sorted(tasks, key=lambda t: t["instance_id"]), candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, required=True)
    parser.add_argument("--layout", default="{owner}+{name}/repo")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=0, help="first N instances only (0: all)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    tasks, candidates = load(args.data)
    if args.limit:
        tasks = tasks[: args.limit]
    backend = DockerBackend(trust=HostTrust.from_env())
    builder = ImageBuilder(backend, repo_source=MirrorFolder(root=args.mirrors, layout=args.layout))
    methods: collections.Counter[str] = collections.Counter()
    failures, diff_problems, rows = [], [], []
    started = time.monotonic()
    for task in tasks:
        spec = ImageSpec(
            base=BaseLayer(distro="bullseye"),
            instance=InstanceLayer(key=task["instance_id"], repo=task["repo"], commit=task["base_commit"]),
        )
        tag = builder.ensure(spec)
        try:
            with backend.start(SandboxSpec(image=tag, labels={"role": "bench"}, cpus=None)) as sandbox:
                for cand in candidates[task["instance_id"]]:
                    result = sandbox.apply_patch(cand["patch"])
                    method = (
                        result.method.value if result.method else ("none" if not result.applied else "empty")
                    )
                    methods[method] += 1
                    entry = {
                        "instance_id": task["instance_id"],
                        "submission": cand["submission"],
                        "method": method,
                    }
                    if not result.applied:
                        entry["log_tail"] = result.log[-600:]
                        failures.append(entry)
                    else:
                        produced = sandbox.diff()
                        sandbox.reset()
                        again = sandbox.apply_patch(produced)
                        if produced and again.method is not PatchMethod.GIT_APPLY:
                            diff_problems.append(entry)
                    sandbox.reset()
                    rows.append(entry)
        finally:
            builder.client.images.remove(tag, force=True)
        print(f"{task['instance_id']}: {dict(methods)}", flush=True)
    total = sum(methods.values())
    report = {
        "benchmark": "patch_apply",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "instances": len(tasks),
        "patches": total,
        "by_method": dict(methods),
        "fraction_needing_fallback": round(
            (total - methods[PatchMethod.GIT_APPLY.value] - methods["empty"] - methods["none"])
            / max(total, 1),
            4,
        ),
        "not_applied": failures,
        "diff_not_reapplicable": diff_problems,
        "seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("not_applied", "diff_not_reapplicable")}))
    print(f"not applied: {len(failures)}; diff() not re-applicable by plain git apply: {len(diff_problems)}")


if __name__ == "__main__":
    main()
