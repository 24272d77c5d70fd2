"""Execution matrix cost, side by side in one run: one container per candidate with reset between tests
(`reuse=True`) against one container per (candidate, test) pair (`reuse=False`), on real instances.

On a small local repository (six candidates, eight quick tests: container overhead dominates) and on
real dev instances, whose candidates are the distinct patches of the 12 submissions in
candidates_dev.jsonl and whose tests are the scripts harvested from the recorded trajectory and the
tests the candidates add. Every run starts from an empty matrix cache, so every cell runs; the modes
alternate in ABBA order (`--rounds`). Reported per mode: containers started, wall time, seconds per
phase, and whether both modes produced the same cells (exit code and normalised output hash).

    python benchmarks/matrix_reuse.py --mirrors /path/to/mirrors --layout '{owner}+{name}/repo' \
        --instance-ids sympy__sympy-13480 psf__requests-2317 \
        --out benchmarks/results/matrix_reuse/matrix_reuse.json [--max-candidates 6] [--max-tests 4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from patchfleet.atomic import write_json_atomic
from patchfleet.data.loaders import load_tasks
from patchfleet.data.recipes import recipe_for
from patchfleet.data.sources import LocalCheckout, MirrorFolder
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.engine import connect
from patchfleet.sandbox.images import ImageBuilder, ImageSpec, InstanceLayer, image_spec
from patchfleet.sandbox.trust import HostTrust
from patchfleet.selection.candidates import load_candidates_from_predictions
from patchfleet.selection.execution import MatrixRun, run_matrix
from patchfleet.selection.harvest import harvest_from_candidates, harvest_from_trajectory
from patchfleet.selection.matrix_cache import MatrixCache
from patchfleet.selection.model import Candidate, Contract, TestCase, TestKind, content_hash

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
TRAJECTORIES = DATA / "trajectories" / "mini-swe-agent-gemini-3-pro"


def same_cells(a: MatrixRun, b: MatrixRun) -> tuple[int, int]:
    """(cells whose exit code and output hash agree, cells compared), errors excluded."""
    left = {(c.candidate_id, c.test_id): c for c in a.matrix.cells if c.error is None}
    right = {(c.candidate_id, c.test_id): c for c in b.matrix.cells if c.error is None}
    shared = left.keys() & right.keys()
    agree = sum(
        1
        for k in shared
        if (left[k].exit_code, left[k].output_hash) == (right[k].exit_code, right[k].output_hash)
    )
    return agree, len(shared)


def small_repo(
    builder_backend: DockerBackend, workdir: Path
) -> tuple[Any, list[Candidate], list[TestCase], str]:
    """A small real git repository (a calculator with a bug in add), six candidate patches made with
    git, and eight quick tests: the regime where container overhead, not the tests, dominates."""
    repo = workdir / "calc"
    repo.mkdir(parents=True)
    (repo / "calc.py").write_text(
        "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n\n\n"
        "def neg(a):\n    return -a\n"
    )
    (repo / "test_calc.py").write_text(
        "from calc import add, mul\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "initial"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True)
    layer = InstanceLayer(key="bench-calc", repo="local/calc", commit=head.stdout.strip())
    image = ImageBuilder(builder_backend, repo_source=LocalCheckout(path=repo)).ensure(
        ImageSpec(instance=layer)
    )
    candidates = []
    for body in ("a + b", "b + a", "(a + b)", "a * b", "a + b + 0", "sum((a, b))"):
        original = (repo / "calc.py").read_text()
        (repo / "calc.py").write_text(original.replace("return a - b", f"return {body}"))
        patch = subprocess.run(["git", "diff"], cwd=repo, check=True, capture_output=True, text=True).stdout
        (repo / "calc.py").write_text(original)
        candidates.append(Candidate(id=content_hash(patch), instance_id="local__calc-bench", patch=patch))
    tests = [
        TestCase.make(
            instance_id="local__calc-bench",
            kind=TestKind.GENERATED,
            contract=Contract.EXIT_CODE,
            command=f"PYTHONPATH=. python3 /tmp/bench/t{i}.py",
            files={
                f"/tmp/bench/t{i}.py": "import sys\nfrom calc import add\n"
                f"sys.exit(0 if add({i}, 2) == {i} + 2 else 2)\n"
            },
            timeout=30,
        )
        for i in range(8)
    ]
    task = type("SmallTask", (), {"id": "local__calc-bench"})()
    return task, candidates, tests, image


MODES = {"reuse": True, "per_pair": False}


def measure(task, candidates, tests, image, backend, workers: int, rounds: int) -> dict[str, Any]:
    """Both modes `rounds` times in ABBA order (reuse, per-pair, per-pair, reuse, ...), so that a load
    that drifts during the run (other jobs on the machine) weighs on both alike."""
    order = [
        mode
        for r in range(rounds)
        for mode in (("reuse", "per_pair") if r % 2 == 0 else ("per_pair", "reuse"))
    ]
    runs: dict[str, list[MatrixRun]] = {mode: [] for mode in MODES}
    for mode in order:
        with tempfile.TemporaryDirectory(prefix="matrix-reuse-") as folder:
            runs[mode].append(
                run_matrix(
                    task.id,
                    candidates,
                    tests,
                    image=image,
                    backend=backend,
                    cache=MatrixCache(Path(folder)),
                    reuse=MODES[mode],
                    workers=workers,
                    log=lambda line: print(f"  {line}", flush=True),
                )
            )
    agree, compared = same_cells(runs["reuse"][0], runs["per_pair"][0])
    result: dict[str, Any] = {
        "instance_id": task.id,
        "image": image,
        "candidates": len(candidates),
        "rows": len(candidates) + 1,
        "tests": len(tests),
        "test_kinds": sorted({t.kind.value for t in tests}),
        "cells_agree": agree,
        "cells_compared": compared,
        "order": order,
    }
    for mode, done in runs.items():
        walls = [run.stats.wall_time for run in done]
        result[mode] = {
            "containers": done[0].stats.containers,
            "cells_run": done[0].stats.cells_run,
            "cell_errors": done[0].stats.cell_errors,
            "wall_time": round(statistics.mean(walls), 2),
            "wall_times": walls,
            "cell_seconds": round(
                statistics.mean(sum(c.duration for c in run.matrix.cells) for run in done), 2
            ),
            "phase_seconds": {
                phase: round(statistics.mean(run.stats.phase_seconds.get(phase, 0.0) for run in done), 2)
                for phase in sorted({p for run in done for p in run.stats.phase_seconds})
            },
        }
    result["speedup"] = round(result["per_pair"]["wall_time"] / max(result["reuse"]["wall_time"], 1e-9), 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mirrors", type=Path, default=os.environ.get("PATCHFLEET_MIRRORS"), required=False)
    parser.add_argument("--layout", default="{owner}/{name}.git")
    parser.add_argument("--dataset", type=Path, default=DATA / "swebench_verified.jsonl")
    parser.add_argument("--candidates", type=Path, default=DATA / "candidates_dev.jsonl")
    parser.add_argument("--instance-ids", nargs="+", default=["sympy__sympy-13480"])
    parser.add_argument("--max-candidates", type=int, default=6)
    parser.add_argument("--max-tests", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds of both modes per instance")
    parser.add_argument("--no-small-repo", action="store_true", help="skip the small local repository")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.mirrors is None:
        parser.error("--mirrors (or PATCHFLEET_MIRRORS) is required")

    source = MirrorFolder(root=args.mirrors, layout=args.layout)
    backend = DockerBackend(connect(), max_concurrent_starts=args.workers, trust=HostTrust.from_env())
    builder = ImageBuilder(backend, repo_source=source, log=lambda line: None)
    loaded = load_tasks(args.dataset, args.instance_ids)
    candidates = load_candidates_from_predictions(args.candidates).candidates
    results = []
    if not args.no_small_repo:
        with tempfile.TemporaryDirectory(prefix="matrix-reuse-repo-") as folder:
            task, chosen, tests, image = small_repo(backend, Path(folder))
            print(f"{task.id}: {len(chosen)} candidates + base x {len(tests)} tests", flush=True)
            results.append(measure(task, chosen, tests, image, backend, args.workers, args.rounds))
    for task in loaded.tasks:
        image = builder.ensure(image_spec(task, recipe_for(task, source)))
        chosen = candidates.get(task.id, [])[: args.max_candidates]
        trajectory = TRAJECTORIES / f"{task.id}.traj.json"
        tests = harvest_from_trajectory(trajectory, task.id) if trajectory.exists() else []
        tests += harvest_from_candidates(
            chosen, read_base=lambda path, t=task: source.read_file(t.repo, t.base_commit, path)
        )
        tests = tests[: args.max_tests]
        print(f"{task.id}: {len(chosen)} candidates + base x {len(tests)} tests", flush=True)
        results.append(measure(task, chosen, tests, image, backend, args.workers, args.rounds))

    totals = {
        mode: {
            "containers": sum(r[mode]["containers"] for r in results),
            "wall_time": round(sum(r[mode]["wall_time"] for r in results), 2),
            "cells_run": sum(r[mode]["cells_run"] for r in results),
        }
        for mode in ("reuse", "per_pair")
    }
    document = {
        "benchmark": "matrix_reuse",
        "what": "run_matrix with one container per candidate row (reset + re-apply between tests) vs one "
        "container per (candidate, test) pair, same candidates and tests, empty cache each time; both modes "
        "run `rounds` times in ABBA order on a machine shared with other jobs (see load_average_at_end)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_at_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "instances": results,
        "totals": totals,
        "speedup": round(totals["per_pair"]["wall_time"] / max(totals["reuse"]["wall_time"], 1e-9), 2),
    }
    write_json_atomic(args.out, document)
    print(f"{'instance':32} {'rows x tests':>12} {'mode':>9} {'containers':>10} {'wall s':>8} {'agree':>9}")
    for r in results:
        for mode in ("reuse", "per_pair"):
            shape = f"{r['rows']:>5} x {r['tests']:<4}"
            print(
                f"{r['instance_id']:32} {shape} {mode:>9} {r[mode]['containers']:>10} "
                f"{r[mode]['wall_time']:>8.1f} {r['cells_agree']:>4}/{r['cells_compared']:<4}"
            )
    print(f"per-pair / reuse wall time: {document['speedup']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
