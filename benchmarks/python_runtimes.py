"""Does the gold patch still resolve once each environment gets its spec's minor Python and the new
package cut-off? Evaluates gold patches one instance at a time through `patchfleet eval`, records the
verdict, the Python the tests ran on (from the test log's header) and the time, and writes one JSON.

Two kinds of instance: `--dev` ones run with the published specs (dev-split ones, whose environment
changed because the cut-off moved, and xarray's because it now runs on jammy's 3.10; the split is
recorded); `--python ID=X.Y` ones run with their published spec but `python: X.Y`, for the minor versions
no mirrored repository's spec asks for (3.6 on bionic and 3.8 on focal are asked for only by django,
scikit-learn, astropy and matplotlib). `--env-only
REPO=VERSION` builds just the environment layer of a published spec that needs no repository files (a
conda package list), e.g. scikit-learn 0.20 on 3.6, and records what its interpreter imports.

    python benchmarks/python_runtimes.py --mirrors /path/to/mirrors --layout '{owner}+{name}/repo' \\
        --python sympy__sympy-14711=3.6 pytest-dev__pytest-7236=3.8 \\
        --dev pytest-dev__pytest-7432 psf__requests-1142 sympy__sympy-24539 sphinx-doc__sphinx-8595 \\
              pylint-dev__pylint-7080 pydata__xarray-4094 pydata__xarray-7233 pydata__xarray-3677 \\
        --env-only scikit-learn/scikit-learn=0.20 \\
        --out benchmarks/results/python_runtimes/python_runtimes.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from patchfleet.data.recipes import packages_as_of, runtime_of, spec_for

DATASET = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "swebench_verified.jsonl"
# pytest's header, sympy's bin/test header ("executable: ... (3.6.5-final-0)"), Sphinx's test header
PYTHON_SEEN = re.compile(r"Python (\d+\.\d+\.\d+)|\((\d+\.\d+\.\d+)-final-0\)|python: (\d+\.\d+\.\d+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--mirrors", type=Path, required=True)
    parser.add_argument("--layout", default="{owner}+{name}/repo")
    parser.add_argument("--dev", nargs="*", default=[], help="instances evaluated with the published specs")
    parser.add_argument("--dev-ids", type=Path, default=DATASET.parent / "splits" / "dev_ids.txt")
    parser.add_argument("--python", nargs="*", default=[], help="ID=X.Y: the published spec, python X.Y")
    parser.add_argument("--env-only", nargs="*", default=[], help="REPO=VERSION: build its env layer only")
    parser.add_argument("--work", type=Path, default=None, help="evaluation folders (default: a temp dir)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--append", action="store_true", help="add to the results already in --out")
    args = parser.parse_args()
    rows = {r["instance_id"]: r for r in map(json.loads, args.dataset.read_text().splitlines())}
    work = args.work or Path(tempfile.mkdtemp(prefix="patchfleet-runtimes-"))
    runs = [tuple(item.split("=", 1)) for item in args.python] + [(iid, None) for iid in args.dev]
    # --append: keep the instances (and env builds) of an earlier run in --out, add this run's
    earlier = json.loads(args.out.read_text()) if args.append and args.out.exists() else {}
    results: list[dict[str, Any]] = earlier.get("instances", [])
    for iid, python in runs:
        results.append(evaluate(rows[iid], python, args, work))
        write(args.out, results, earlier.get("env_only_builds"))
        last = results[-1]
        print(
            f"{iid:32} {last['python_wanted']:>5} {last['distro']:>9} {last['python_seen'] or '?':>7} "
            f"{last['verdict']:>10} {last['seconds']:7.0f}s"
        )
    envs = earlier.get("env_only_builds", []) + [build_env(*item.split("=", 1)) for item in args.env_only]
    write(args.out, results, envs)


def build_env(repo: str, version: str) -> dict[str, Any]:
    """Build the environment layer of (repo, version) from its published spec; what its Python imports."""
    from patchfleet.data.recipes import recipe_for
    from patchfleet.data.task import Task
    from patchfleet.sandbox.docker import DockerBackend
    from patchfleet.sandbox.images import EnvLayer, ImageBuilder, ImageSpec, image_spec
    from patchfleet.sandbox.trust import HostTrust

    task = Task(
        id=f"{repo}-{version}", repo=repo, base_commit="0" * 40, problem_statement="", version=version
    )
    recipe = recipe_for(task)
    spec = image_spec(task, recipe)
    env_only = ImageSpec(base=spec.base, env=spec.env or EnvLayer(key=recipe.key))
    backend = DockerBackend(trust=HostTrust.from_env(), reap_leaked=False)
    started = time.monotonic()
    entry: dict[str, Any] = {
        "repo": repo,
        "version": version,
        "distro": recipe.distro,
        "python": recipe.python,
    }
    try:
        tag = ImageBuilder(backend, allow_pull=False).ensure(env_only)
        probe = subprocess.run(
            ["docker", "run", "--rm", tag, "python", "-c", IMPORT_PROBE], capture_output=True, text=True
        )
        entry |= {"built": True, "tag": tag, "imports": probe.stdout.strip() or probe.stderr[-500:]}
    except Exception as exc:  # noqa: BLE001 - a benchmark records the failure and goes on
        entry |= {"built": False, "error": str(exc)[:1500]}
    entry["seconds"] = round(time.monotonic() - started, 1)
    print(f"env {repo} {version} on {recipe.distro}: {entry.get('imports') or entry.get('error')}")
    return entry


IMPORT_PROBE = (
    "import sys, importlib; mods = ['numpy', 'scipy', 'Cython', 'pytest', 'pandas', 'matplotlib']; "
    "print(sys.version.split()[0], *(m + '=' + getattr(importlib.import_module(m), '__version__', '?') "
    "for m in mods))"
)


def evaluate(row: dict[str, Any], python: str | None, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One gold evaluation in its own output folder; `python` overrides the spec's interpreter."""
    iid, repo, version = row["instance_id"], row["repo"], row["version"]
    spec = spec_for(repo, version)
    out = work / iid
    command = [
        "nice", "-n", "5", "patchfleet", "eval", "--predictions", "gold", "--dataset", str(args.dataset),
        "--instance-ids", iid, "--mirrors", str(args.mirrors), "--layout", args.layout, "--out", str(out),
        "--images", "local", "--no-pull",
    ]  # fmt: skip
    specs = None
    if python is not None:
        out.mkdir(parents=True, exist_ok=True)
        specs = {repo: {version: {**spec, "python": python}}}
        (out / "recipes.json").write_text(json.dumps(specs))
        command += ["--recipes", str(out / "recipes.json")]
    runtime = runtime_of(repo, version, specs)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ}, errors="replace")
    seconds = time.monotonic() - started
    reports = sorted(out.glob("*.json"))
    report = json.loads(reports[0].read_text()) if reports else {}
    logs = list(out.glob(f"logs/run_evaluation/*/*/{iid}/test_output.txt"))
    seen = PYTHON_SEEN.search(logs[0].read_text(errors="replace")) if logs else None
    verdict = (
        "resolved"
        if iid in report.get("resolved_ids", [])
        else "unresolved"
        if iid in report.get("unresolved_ids", [])
        else "error"
    )
    return {
        "instance_id": iid,
        "split": ("dev" if iid in dev_ids(args.dev_ids) else "non-dev")
        + ("" if python is None else ", python overridden"),
        "repo": repo,
        "version": version,
        "python_spec": str(spec.get("python")),
        "python_wanted": runtime.wanted,
        "python_runtime": runtime.python,
        "distro": runtime.distro,
        "installer": runtime.installer,
        "packages_as_of": packages_as_of(repo, version),
        "python_seen": next((g for g in seen.groups() if g), None) if seen else None,
        "verdict": verdict,
        "exit_code": done.returncode,
        "seconds": round(seconds, 1),
        "output_tail": (done.stdout + done.stderr)[-1500:] if verdict != "resolved" else "",
    }


def dev_ids(path: Path) -> set[str]:
    return set(path.read_text().split()) if path.exists() else set()


def write(path: Path, results: list[dict[str, Any]], envs: list[dict[str, Any]] | None = None) -> None:
    summary = {
        "benchmark": "python_runtimes",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "compared": "gold verdicts after each spec got its minor Python (Ubuntu bionic/focal/jammy bases) "
        "and the 2024-10-10 package cut-off; the official verdict of every gold patch is resolved",
        "evaluated": len(results),
        "resolved": sum(r["verdict"] == "resolved" for r in results),
        "by_python": {
            py: f"{sum(r['verdict'] == 'resolved' for r in results if r['python_runtime'] == py)}/"
            f"{sum(r['python_runtime'] == py for r in results)}"
            for py in sorted({r["python_runtime"] for r in results})
        },
        "instances": results,
        "env_only_builds": envs or [],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
