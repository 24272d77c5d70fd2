"""Selection over other systems' patches, on real data: does the selector beat the best single submission?

For each dev instance: the 12 leaderboard submissions' patches (`candidates_dev.jsonl`) deduplicated into
candidates, tests harvested from the recorded mini-swe-agent trajectory and from the candidates, and
regression tests found at the base commit; every candidate and the base run against every test in
sandboxes (`selection.pipeline.select_task`). No model is reachable here, so generated tests and the
verifier are off. The official `resolved` verdicts are read only here, to score decisions, never by the
selection path.

Two phases, both resumable: `collect` runs what is missing (the matrix cells are cached and exportable,
`--export-cells`/`--import-cells`, and so are the finished instances' stored inputs, `--export-inputs`/
`--import-inputs`, their matrices as references into those cells and their patches into
`candidates_dev.jsonl`: import both, so a later machine continues), `score` re-scores the stored inputs
with every policy offline and writes the JSON: side by side with oracle, best single, random pick and
majority over normalised text; the test-time-scaling curve (k = 1..12 submissions, random subsets); a
*simulated* verifier swept over AUC 0.5..0.9 for the hybrid policies (labelled as a simulation); a sweep of
the default policy's weights with its k-fold cross-validated rate (what to expect off the tuning set); and
the same table over every instance asked for (`all_instances`).

Collect order: first the instances where the pick matters (the candidates' official verdicts differ); on
the others every pick scores the same, so `all_instances` is exact for them without a matrix, and a
mixed instance not collected yet is scored on its patches alone (listed in the JSON).

    python3 benchmarks/ensemble_selection.py --mirrors DIR --layout '{owner}+{name}/repo' \
        --work bench-work/ensemble --out benchmarks/results/ensemble_selection/ensemble_selection.json
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import itertools
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from patchfleet.data.loaders import load_tasks, read_ids
from patchfleet.data.recipes import recipe_for
from patchfleet.data.sources import MirrorFolder
from patchfleet.data.task import Task
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.engine import connect
from patchfleet.sandbox.images import ImageBuilder, image_spec
from patchfleet.sandbox.trust import HostTrust
from patchfleet.selection.candidates import load_candidates_from_predictions
from patchfleet.selection.export import DataRows, export_entry, import_entry
from patchfleet.selection.matrix_cache import MatrixCache
from patchfleet.selection.model import Candidate, Matrix, SelectionInputs
from patchfleet.selection.pipeline import SelectionConfig, SelectionEnv, load_inputs, select_task
from patchfleet.selection.policies import POLICIES, DefaultPolicyConfig, make_default, simulated_verifier

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
TRAJECTORIES = DATA / "trajectories" / "mini-swe-agent-gemini-3-pro"
AUCS = (0.5, 0.6, 0.7, 0.8, 0.9)


# -- official verdicts: read here only, to score ------------------------------------------------------


def official_verdicts(path: Path) -> dict[tuple[str, str], bool]:
    verdicts = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            verdicts[(row["submission"], row["instance_id"])] = bool(row["resolved"])
    return verdicts


def candidate_value(candidate: Candidate, verdicts: dict[tuple[str, str], bool]) -> float:
    """The chance that picking this candidate resolves the instance: the mean official verdict of its
    sources (identical patches from two submissions can carry different verdicts: flaky tests)."""
    values = [verdicts.get((s.name, candidate.instance_id), False) for s in candidate.sources]
    return statistics.fmean(values) if values else 0.0


# -- collect -------------------------------------------------------------------------------------------


def round_robin(tasks: list[Task]) -> list[Task]:
    by_repo: dict[str, list[Task]] = collections.defaultdict(list)
    for task in tasks:
        by_repo[task.repo].append(task)
    queues = [collections.deque(v) for _, v in sorted(by_repo.items())]
    ordered = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.popleft())
    return ordered


def collect(args: argparse.Namespace, tasks: list[Task], candidates: dict[str, list[Candidate]]) -> None:
    source = MirrorFolder(root=args.mirrors, layout=args.layout)
    backend = DockerBackend(connect(), max_concurrent_starts=2, trust=HostTrust.from_env())
    builder = ImageBuilder(backend, repo_source=source, log=lambda line: None)
    cache = MatrixCache(args.work / "cells")
    config = SelectionConfig(
        regression_budget_s=args.regression_budget, workers=args.workers, reuse_containers=True
    )
    deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
    for number, task in enumerate(tasks, 1):
        if deadline and time.monotonic() > deadline:
            print("time budget reached; run again to continue")
            break
        folder = args.work / "selection" / task.id
        if (folder / "decision.json").exists() and not args.redo:
            continue
        recipe = recipe_for(task, source)
        spec = image_spec(task, recipe)
        if args.built_only and not builder.exists(spec.tag()):
            continue
        started = time.monotonic()
        try:
            image = builder.ensure(spec)
            env = SelectionEnv(
                image=image,
                backend=backend,
                cache=cache,
                read_base=lambda path, t=task: source.read_file(t.repo, t.base_commit, path),
                log=lambda line: print(f"  {line}", flush=True),
            )
            trajectory = TRAJECTORIES / f"{task.id}.traj.json"
            result = select_task(
                task,
                candidates.get(task.id, []),
                env=env,
                config=config,
                out_dir=args.work / "selection",
                trajectories=[trajectory] if trajectory.exists() else [],
            )
            kinds = collections.Counter(t.kind.value for t in result.inputs.tests)
            print(
                f"[{number}/{len(tasks)}] {task.id}: {len(result.inputs.candidates)} candidates, "
                f"tests {dict(kinds)}, {result.containers} containers, "
                f"{time.monotonic() - started:.0f}s",
                flush=True,
            )
        except Exception as exc:  # noqa: BLE001 - one instance's failure is recorded; the others go on
            print(f"[{number}/{len(tasks)}] {task.id}: FAILED {type(exc).__name__}: {exc}", flush=True)
            (args.work / "failures").mkdir(parents=True, exist_ok=True)
            (args.work / "failures" / f"{task.id}.txt").write_text(f"{type(exc).__name__}: {exc}\n")


# -- export / import of the stored inputs (what `score` reads), so another machine continues -----------


def export_inputs(work: Path, path: Path) -> int:
    """Every finished instance's stored selection files as one gzipped JSONL line each: the matrix as
    references into the cell cache (export it too, `--export-cells`), the patches as references into
    `candidates_dev.jsonl` (see selection.export)."""
    import gzip

    cache, data = MatrixCache(work / "cells"), DataRows(DATA)
    lines = []
    for folder in sorted((work / "selection").glob("*")):
        if (folder / "decision.json").exists():
            lines.append(json.dumps(export_entry(folder, cache, data), ensure_ascii=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
    return len(lines)


def import_inputs(path: Path, work: Path) -> int:
    """Restore exported instances that this work folder does not have yet (finished work is kept); the
    cells they refer to must be imported first (`--import-cells`). Old exports (every file verbatim)
    import as they are."""
    import gzip

    cache, data = MatrixCache(work / "cells"), DataRows(DATA)
    added = 0
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            folder = work / "selection" / entry["instance_id"]
            if (folder / "decision.json").exists():
                continue
            import_entry(entry, folder, cache, data)
            added += 1
    return added


# -- score ---------------------------------------------------------------------------------------------


def restrict(inputs: SelectionInputs, submissions: set[str]) -> SelectionInputs:
    """The same instance as if only `submissions` had proposed patches (the matrix rows stay valid)."""
    kept = []
    for candidate in inputs.candidates:
        sources = tuple(s for s in candidate.sources if s.name in submissions)
        if sources:
            kept.append(candidate.model_copy(update={"sources": sources}))
    return inputs.model_copy(update={"candidates": kept})


def pick_value(policy, inputs: SelectionInputs, verdicts) -> float:
    if not inputs.candidates:
        return 0.0
    chosen = policy(inputs).chosen
    by_id = {c.id: c for c in inputs.candidates}
    return candidate_value(by_id[chosen], verdicts) if chosen in by_id else 0.0


def majority_value(inputs: SelectionInputs, verdicts) -> float:
    """Majority over whitespace-normalised text (candidate ids); ties broken at random (expected value)."""
    if not inputs.candidates:
        return 0.0
    top = max(len(c.sources) for c in inputs.candidates)
    tied = [c for c in inputs.candidates if len(c.sources) == top]
    return statistics.fmean(candidate_value(c, verdicts) for c in tied)


def random_value(inputs: SelectionInputs, verdicts) -> float:
    """A random submission's patch: candidates weighted by how many submissions proposed them."""
    values = [candidate_value(c, verdicts) for c in inputs.candidates for _ in c.sources]
    return statistics.fmean(values) if values else 0.0


def oracle_value(inputs: SelectionInputs, verdicts) -> float:
    return max((candidate_value(c, verdicts) for c in inputs.candidates), default=0.0)


def text_only(instance_id: str, candidates: list[Candidate]) -> SelectionInputs:
    """An instance the collect phase has not reached: its candidates, no tests, no matrix."""
    return SelectionInputs(
        instance_id=instance_id, candidates=candidates, matrix=Matrix(instance_id=instance_id, cells=[])
    )


def with_fallback(ids, collected: dict[str, SelectionInputs], candidates) -> dict[str, SelectionInputs]:
    """Each instance's collected inputs, or its candidates alone where the collect phase has not been."""
    return {i: collected.get(i) or text_only(i, candidates.get(i, [])) for i in ids}


def all_instances(
    ids: list[str], stored: dict[str, SelectionInputs], candidates, submissions: list[str], verdicts
) -> dict[str, Any]:
    """Every instance asked for, each with the evidence there is: the collected ones with their tests and
    matrix, the others with their candidates' patches alone (what the policies then fall back to)."""
    inputs = with_fallback(ids, stored, candidates)
    # where every candidate carries the same official verdict, every pick scores the same: the matrix
    # matters only on the others, which the collect phase does first (`mixed_instances`)
    mixed = [i for i in ids if len({candidate_value(c, verdicts) for c in inputs[i].candidates}) > 1]

    def rate(values) -> float:
        return round(100 * statistics.fmean(values), 2)

    table = {
        "oracle": rate(oracle_value(inputs[i], verdicts) for i in ids),
        **{f"submission_{s}": rate(float(verdicts.get((s, i), False)) for i in ids) for s in submissions},
        "random_pick": rate(random_value(inputs[i], verdicts) for i in ids),
        "majority_normalised_text": rate(majority_value(inputs[i], verdicts) for i in ids),
        **{f"policy_{n}": rate(pick_value(p, inputs[i], verdicts) for i in ids) for n, p in POLICIES.items()},
    }
    return {
        "instances": len(ids),
        "with_execution_evidence": sum(i in stored for i in ids),
        "mixed_instances": len(mixed),
        "mixed_with_execution_evidence": sum(i in stored for i in mixed),
        "mixed_without_execution_evidence": sorted(i for i in mixed if i not in stored),
        "note": "on an instance whose candidates all carry the same official verdict every pick scores "
        "the same, so these need no matrix; the 'mixed' ones (candidates disagree) without a collected "
        "matrix are scored on their candidates' patches alone (no tests): the policies' fallback, not "
        "their full evidence",
        "resolve_rate_percent": table,
    }


def score(
    args: argparse.Namespace, instance_ids: list[str], submissions: list[str], verdicts, candidates
) -> dict[str, Any]:
    stored = {}
    for instance_id in instance_ids:
        folder = args.work / "selection" / instance_id
        if (folder / "decision.json").exists():
            stored[instance_id] = load_inputs(folder)
    n = len(stored)
    if not n:
        raise SystemExit("nothing collected yet: run the collect phase first")
    collected = dict(stored)
    if args.scope == "all":  # every instance asked for, those without a matrix as all_instances scores them
        stored = with_fallback(instance_ids, collected, candidates)
        n = len(stored)
    ids = sorted(stored)
    policies = dict(POLICIES)

    def rate(values) -> float:
        return round(100 * sum(values) / n, 2)

    per_submission = {s: rate(float(verdicts.get((s, i), False)) for i in ids) for s in submissions}
    # the best submission over the whole dev split (as the data README names it), and, on a subset, the
    # one that happens to be best on it (an optimistic baseline: chosen after seeing the verdicts)
    dev = read_ids(DATA / "splits" / "dev_ids.txt")
    overall = max(submissions, key=lambda s: sum(verdicts.get((s, i), False) for i in dev))
    posthoc = max(per_submission, key=per_submission.get)
    table = {
        "oracle": rate(oracle_value(stored[i], verdicts) for i in ids),
        "best_single": per_submission[overall],
        "best_single_submission": overall,
        "best_single_on_these_instances": per_submission[posthoc],
        "best_single_on_these_instances_submission": posthoc,
        "random_pick": rate(random_value(stored[i], verdicts) for i in ids),
        "majority_normalised_text": rate(majority_value(stored[i], verdicts) for i in ids),
    }
    decisions = {}
    for name, policy in policies.items():
        table[f"policy_{name}"] = rate(pick_value(policy, stored[i], verdicts) for i in ids)
        decisions[name] = {i: policy(stored[i]).chosen for i in ids}

    # test-time scaling: k submissions drawn at random, the same draws for every selector
    rng = random.Random(0)
    curve: dict[str, list[float]] = collections.defaultdict(list)
    for k in range(1, len(submissions) + 1):
        draws = [set(rng.sample(submissions, k)) for _ in range(args.draws)]
        sums: dict[str, float] = collections.defaultdict(float)
        for draw in draws:
            for i in ids:
                sub = restrict(stored[i], draw)
                sums["oracle"] += oracle_value(sub, verdicts)
                sums["random_pick"] += random_value(sub, verdicts)
                sums["majority_normalised_text"] += majority_value(sub, verdicts)
                for name, policy in policies.items():
                    sums[name] += pick_value(policy, sub, verdicts)
        for name, total in sums.items():
            curve[name].append(round(100 * total / (n * len(draws)), 2))

    # the hybrid without a model: a simulated verifier of chosen AUC (a simulation, labelled as one)
    simulated: dict[str, dict[str, float]] = {}
    for auc in AUCS:
        row: dict[str, list[float]] = collections.defaultdict(list)
        for seed in range(args.seeds):
            for i in ids:
                labels = {c.id: candidate_value(c, verdicts) >= 0.5 for c in stored[i].candidates}
                scored = stored[i].model_copy(
                    update={"verifier": simulated_verifier(i, labels, auc=auc, seed=seed)}
                )
                for name in ("r2e", "default"):
                    row[name].append(pick_value(policies[name], scored, verdicts))
                row["verifier_only"].append(pick_value(_verifier_only, scored, verdicts))
        simulated[str(auc)] = {name: round(100 * statistics.fmean(v), 2) for name, v in row.items()}

    everything = all_instances(sorted(instance_ids), collected, candidates, submissions, verdicts)
    tuning = sweep_default(stored, verdicts)

    tests = collections.Counter(t.kind.value for i in collected for t in collected[i].tests)
    matrix_stats = [
        json.loads((args.work / "selection" / i / "decision.json").read_text()) for i in sorted(collected)
    ]
    return {
        "instances": n,
        "scope": args.scope,
        "collected_instances": len(collected),
        "instance_ids": ids,
        "resolve_rate_percent": table,
        "per_submission_percent": per_submission,
        "decisions": decisions,
        "test_time_scaling_percent": {"k": list(range(1, len(submissions) + 1)), **curve},
        "simulated_verifier_percent": {
            "note": "SIMULATION: verifier scores drawn to separate resolved from unresolved candidates "
            "with the given AUC; no model was called",
            "by_auc": simulated,
        },
        "default_policy_tuning": tuning,
        "all_instances": everything,
        "tests_by_kind": dict(tests),
        "candidates_per_instance": round(statistics.fmean(len(stored[i].candidates) for i in ids), 2),
        "tests_per_collected_instance": round(sum(tests.values()) / max(1, len(collected)), 2),
        "matrix": {
            "containers": sum(m["matrix"]["containers"] for m in matrix_stats),
            "cells_run": sum(m["matrix"]["cells_run"] for m in matrix_stats),
            "cells_cached": sum(m["matrix"]["cells_cached"] for m in matrix_stats),
            "wall_time_s": round(sum(m["matrix"]["wall_time"] for m in matrix_stats), 1),
        },
    }


# -- tuning the default policy on the dev split, with an honest out-of-sample estimate -----------------

SWEEP_GRID: dict[str, tuple[float, ...]] = {
    "harvested": (0.0, 1.0, 2.0),
    "behaviour": (0.0, 0.5, 1.0),
    "support": (0.0, 1.0),
    "consensus": (0.0, 1.0, 2.0, 4.0),
    "regression": (0.0, 1.0),
    "regression_slack": (0, 1),
}


def sweep_default(stored: dict[str, SelectionInputs], verdicts, folds: int = 5, repeats: int = 10) -> dict:
    """Every weight combination of `SWEEP_GRID` scored on the stored instances, and k-fold
    cross-validation of "pick the best combination on the other folds": the in-sample best is what the
    default is tuned to, the cross-validated rate is what to expect on instances it was not tuned on.
    Ties between combinations go to the one nearest the current defaults (then the first in the grid)."""
    ids = sorted(stored)
    names = list(SWEEP_GRID)
    current = DefaultPolicyConfig()
    configs = [dict(zip(names, values, strict=True)) for values in itertools.product(*SWEEP_GRID.values())]

    def distance(config: dict) -> float:
        return sum(abs(float(v) - float(getattr(current, k))) for k, v in config.items())

    values = [
        [pick_value(make_default(DefaultPolicyConfig(**config)), stored[i], verdicts) for i in ids]
        for config in configs
    ]

    def best(on: list[int]) -> int:
        return max(
            range(len(configs)), key=lambda c: (sum(values[c][j] for j in on), -distance(configs[c]), -c)
        )

    everything = list(range(len(ids)))
    chosen = best(everything)
    rng = random.Random(0)
    held_out: list[float] = []
    for _ in range(repeats):
        order = everything[:]
        rng.shuffle(order)
        for fold in range(folds):
            test = order[fold::folds]
            train = [j for j in order if j not in set(test)]
            pick = best(train)
            held_out.extend(values[pick][j] for j in test)
    ranked = sorted(range(len(configs)), key=lambda c: -sum(values[c]))
    return {
        "grid": {k: list(v) for k, v in SWEEP_GRID.items()},
        "combinations": len(configs),
        "current_defaults": {k: getattr(current, k) for k in names},
        "current_defaults_percent": round(
            100 * statistics.fmean(pick_value(POLICIES["default"], stored[i], verdicts) for i in ids), 2
        ),
        "best_in_sample": configs[chosen],
        "best_in_sample_percent": round(100 * statistics.fmean(values[chosen]), 2),
        "cross_validated_percent": round(100 * statistics.fmean(held_out), 2),
        "cross_validation": f"{folds}-fold over instances, {repeats} shuffles; the best combination on the "
        "training folds scored on the held-out fold",
        "top5": [
            {"weights": configs[c], "percent": round(100 * statistics.fmean(values[c]), 2)}
            for c in ranked[:5]
        ],
    }


def _verifier_only(inputs: SelectionInputs):
    from patchfleet.selection.model import Decision

    scored = [
        c for c in inputs.candidates if inputs.verifier.get(c.id) and inputs.verifier[c.id].score is not None
    ]
    chosen = max(scored, key=lambda c: inputs.verifier[c.id].score).id if scored else None
    return Decision(instance_id=inputs.instance_id, policy="verifier_only", chosen=chosen)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("phase", choices=["collect", "score", "both"], nargs="?", default="both")
    parser.add_argument("--mirrors", type=Path, default=os.environ.get("PATCHFLEET_MIRRORS"))
    parser.add_argument("--layout", default="{owner}/{name}.git")
    parser.add_argument("--work", type=Path, default=Path("bench-work/ensemble"))
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/ensemble_selection/ensemble_selection.json"
    )
    parser.add_argument("--instance-ids", nargs="*")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--regression-budget", type=float, default=120.0)
    parser.add_argument(
        "--minutes", type=float, default=0, help="stop collecting after this long (0: no limit)"
    )
    parser.add_argument("--built-only", action="store_true", help="only instances whose image exists")
    parser.add_argument("--redo", action="store_true")
    parser.add_argument(
        "--scope",
        choices=["all", "collected"],
        default="all",
        help="score every instance asked for (those without a matrix on their patches alone) or only "
        "the collected ones",
    )
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--import-cells", type=Path)
    parser.add_argument("--export-cells", type=Path)
    parser.add_argument("--import-inputs", type=Path, help="finished instances exported by --export-inputs")
    parser.add_argument(
        "--export-inputs", type=Path, help="write finished instances' stored inputs (gz JSONL)"
    )
    args = parser.parse_args()
    if args.import_cells:  # first: imported inputs refer to these cells
        added = MatrixCache(args.work / "cells").merge(args.import_cells)
        print(f"imported {added} cells from {args.import_cells}")
    if args.import_inputs:
        print(f"imported {import_inputs(args.import_inputs, args.work)} finished instance(s)")

    ids = args.instance_ids or read_ids(DATA / "splits" / "dev_ids.txt")
    tasks = round_robin(load_tasks(DATA / "swebench_verified.jsonl", ids).tasks)
    loaded = load_candidates_from_predictions(DATA / "candidates_dev.jsonl")
    submissions = sorted({s.name for found in loaded.candidates.values() for c in found for s in c.sources})
    if args.phase in ("collect", "both"):
        if not args.mirrors:
            sys.exit("--mirrors (or PATCHFLEET_MIRRORS) is needed to collect")
        # the instances where the pick matters first (candidates' official verdicts differ): on the
        # others every pick scores the same, so their matrices change no figure (they are collected last)
        verdicts = official_verdicts(DATA / "candidates_dev.jsonl")

        def matters(task: Task) -> bool:
            return len({candidate_value(c, verdicts) for c in loaded.candidates.get(task.id, [])}) > 1

        collect(
            args, [t for t in tasks if matters(t)] + [t for t in tasks if not matters(t)], loaded.candidates
        )
    if args.export_inputs:
        print(f"exported {export_inputs(args.work, args.export_inputs)} finished instance(s)")
    if args.export_cells:
        exported = MatrixCache(args.work / "cells").export(args.export_cells)
        print(f"exported {exported} cells to {args.export_cells}")
    if args.phase in ("score", "both"):
        verdicts = official_verdicts(DATA / "candidates_dev.jsonl")
        result = score(args, [t.id for t in tasks], submissions, verdicts, loaded.candidates)
        result.update(
            {
                "benchmark": "ensemble_selection",
                "compared": "selection policies vs oracle, best single, random pick, majority over text",
                "generated_tests": False,
                "verifier": "off (no model reachable); simulated sweep separately labelled",
                "cpus": os.cpu_count(),
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        table = result["resolve_rate_percent"]
        print(f"{result['instances']} instances")
        for name, value in table.items():
            print(f"  {name:28s} {value}")


if __name__ == "__main__":
    main()
