"""Do recorded trajectories replay to the same patch in our sandboxes, and does it resolve as officially?

Each dev instance's official mini-swe-agent trajectory (Gemini 3 Pro) is re-issued by `ReplayModel`
through our step loop, in a Docker sandbox started from the instance's image; the submission
(`sandbox.diff()`, as the agent takes it) is compared with the recorded `info.submission`
(whitespace-normalised), then evaluated with the hidden tests and compared with the official verdict.

    python benchmarks/replay_fidelity.py --mirrors /path/to/mirrors --layout '{owner}+{name}/repo' \
        --out benchmarks/results/replay_fidelity/replay_fidelity.json [--limit 4] [--instance-ids ID ...] \
        [--workers 2] [--work DIR] [--only-built] [--retry-errors] [--tree official|ours]

The recordings ran in official SWE-bench images, whose working tree differs from ours in two ways that
are not the agent's doing: the environment's set-up edits (sphinx pins setup.py and adds -rA to tox.ini)
are uncommitted there, and untracked install outputs (requests' build/) are not excluded from the
agent's `git add -A`. With `--tree official` (the default) each replay starts from our image turned
into that layout (`as_official_tree`), so the recorded patch is comparable as it is; `--tree ours`
replays in our layout, where patches leave those files out.

Resumable: one result JSON per instance in --work (skipped when present; with --retry-errors, results
that ended in an error are redone). An instance that fails is recorded with its error; it never stops
the batch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
import os
import re
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from patchfleet.agent import Agent, AgentConfig, ReplayModel
from patchfleet.agent.patch import exclude_new_files
from patchfleet.atomic import write_json_atomic
from patchfleet.data.loaders import load_tasks, read_ids
from patchfleet.data.recipes import recipe_for
from patchfleet.data.sources import MirrorFolder
from patchfleet.data.task import EvalSpec, Prediction, Task
from patchfleet.runs.evaluation import Evaluator
from patchfleet.sandbox.base import REPO_DIR, Network, Sandbox, SandboxSpec
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.git import BASELINE_MARK, forget_baseline
from patchfleet.sandbox.images import ImageBuilder, image_spec
from patchfleet.sandbox.trust import HostTrust

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
TRAJECTORIES = "trajectories/mini-swe-agent-gemini-3-pro"
MODEL_NAME = "replay__mini-swe-agent-gemini-3-pro"
WALL_TIME_LIMIT = 7200  # a replay that hangs must not hold a worker forever
# paths a build or an install leaves in the working tree: when they differ, the environments do
ARTIFACT = re.compile(r"(^|/)(build/|dist/|[^/]+\.egg-info/|__pycache__/|\.eggs/)|\.py[co]$")


# -- patches ------------------------------------------------------------------------------------------
def split_files(patch: str) -> dict[str, str]:
    """Per-file sections of a git patch, keyed by the new path (the old one for deletions)."""
    sections: dict[str, str] = {}
    current: list[str] = []
    path = ""
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            if current:
                sections[path] = "\n".join(current)
            current, path = [line], _path_of(line)
        elif current:
            current.append(line)
    if current:
        sections[path] = "\n".join(current)
    return sections


def _path_of(header: str) -> str:
    match = re.match(r"diff --git a/(.*) b/(.*)$", header)
    return match.group(2) if match else header


def normalise(section: str) -> str:
    """Blob hashes (`index` lines: their abbreviation length depends on the repository's size, and ours
    hold one commit), trailing whitespace and blank lines do not count."""
    lines = (line.rstrip() for line in section.splitlines() if not line.startswith("index "))
    return "\n".join(line for line in lines if line)


def compare(
    recorded: str,
    replayed: str,
    leftovers: list[str],
    setup_edits: list[str] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """Equal after normalisation? If not, which files differ, why (as far as the paths tell), and a
    short diff of the first files that both patches touch differently."""
    old = {path: normalise(text) for path, text in split_files(recorded).items()}
    new = {path: normalise(text) for path, text in split_files(replayed).items()}
    only_recorded = sorted(set(old) - set(new))
    only_replayed = sorted(set(new) - set(old))
    changed = sorted(p for p in set(old) & set(new) if old[p] != new[p])
    differing = [*only_recorded, *only_replayed, *changed]
    causes = {path: cause(path, leftovers, setup_edits) for path in differing}
    summary: dict[str, Any] = {
        "same": not differing,
        "same_in_source_files": all(c != "source" for c in causes.values()),
        "files_recorded": len(old),
        "files_replayed": len(new),
    }
    if differing:
        counts: dict[str, int] = {}
        for c in causes.values():
            counts[c] = counts.get(c, 0) + 1
        summary.update(
            differing_files_by_cause=counts,
            only_in_recorded=capped(only_recorded),
            only_in_replayed=capped(only_replayed),
            changed=capped(changed),
            differing_source_files=capped([p for p, c in causes.items() if c == "source"]),
            diff_excerpt=[_excerpt(old.get(p, ""), new.get(p, ""), p) for p in changed[:3]],
        )
    return summary


def cause(path: str, leftovers: list[str], setup_edits: list[str] = ()) -> str:  # type: ignore[assignment]
    """untracked_at_start: the file was there, untracked, when our sandbox started, so diff() leaves it
    out (sandbox/git.py baseline) where mini-swe-agent's `git add -A` submitted it; setup_edit: the
    environment's set-up changed it, which our instance layer commits (as SWE-bench's images do) and the
    recording's older image did not; build_artifact: a build output path our image does not have;
    source: a real difference in what the replay did."""
    if path in setup_edits:
        return "setup_edit"
    if any(path == entry or path.startswith(entry.rstrip("/") + "/") for entry in leftovers):
        return "untracked_at_start"
    if ARTIFACT.search(path):
        return "build_artifact"
    return "source"


def capped(paths: list[str], limit: int = 10) -> list[str]:
    return paths[:limit] + ([f"... and {len(paths) - limit} more"] if len(paths) > limit else [])


def setup_edited(sandbox: Sandbox) -> list[str]:
    """Files the instance layer's set-up commit changed (between the upstream base and HEAD)."""
    result = sandbox.exec("git diff --name-only $(git rev-list --max-parents=0 HEAD) HEAD", timeout=60)
    return result.output.split() if result.ok else []


def untracked_at_start(sandbox: Sandbox) -> list[str]:
    """The paths the sandbox recorded as present and untracked at start (its baseline)."""
    result = sandbox.exec('cat "$(git rev-parse --git-path info/exclude)"', timeout=60)
    lines = result.output.splitlines()
    if BASELINE_MARK not in lines:
        return []
    entries = lines[lines.index(BASELINE_MARK) + 1 :]
    return [re.sub(r"\\(.)", r"\1", entry).lstrip("/") for entry in entries if entry.strip()]


def _excerpt(old: str, new: str, path: str, lines: int = 24) -> str:
    delta = difflib.unified_diff(
        old.splitlines(), new.splitlines(), f"recorded/{path}", f"replayed/{path}", n=1, lineterm=""
    )
    out = list(delta)
    return "\n".join(out[:lines] + ([f"... ({len(out) - lines} more lines)"] if len(out) > lines else []))


def as_official_tree(sandbox: Sandbox) -> None:
    """Give a started sandbox the working tree of an official SWE-bench image: the set-up commit undone
    into uncommitted edits, untracked files no longer excluded, and diff() taken against the upstream
    base (the root commit). Only for comparing with recordings made there; agents run in our layout."""
    result = sandbox.exec(
        "root=$(git rev-list --max-parents=0 HEAD) && git reset -q --soft $root && git reset -q "
        "&& echo $root",
        timeout=120,
    )
    if not result.ok:
        raise RuntimeError(f"cannot undo the set-up commit: {result.output.strip()}")
    forget_baseline(sandbox, REPO_DIR)
    sandbox.base_commit = result.output.split()[-1]  # type: ignore[attr-defined]


# -- one instance -------------------------------------------------------------------------------------
def agent_config(recording: dict[str, Any]) -> AgentConfig:
    """Our loop configured as the recording ran: its command timeout and environment variables, no
    limits that mini-swe-agent did not hit, and nothing dropped from the patch (`git add -A` kept all)."""
    environment = (recording.get("info", {}).get("config") or {}).get("environment") or {}
    config = AgentConfig.load(
        overrides=[
            "limits.step_limit=0",
            "limits.cost_limit=0",
            "limits.format_error_limit=0",
            f"limits.wall_time_limit={WALL_TIME_LIMIT}",
        ]
    )
    update: dict[str, Any] = {"patch_exclude": []}
    if environment.get("timeout"):
        update["command_timeout"] = float(environment["timeout"])
    if environment.get("env"):
        update["env"] = dict(environment["env"])
    return config.model_copy(update=update)


def replay_one(
    task: Task,
    spec: EvalSpec,
    official: dict[str, Any],
    *,
    trajectory: Path,
    backend: DockerBackend,
    source: MirrorFolder,
    evaluator: Evaluator,
    work: Path,
    official_tree: bool = True,
) -> dict[str, Any]:
    recording = json.loads(trajectory.read_text())
    recorded_patch = recording["info"]["submission"]
    timings: dict[str, float] = {}
    started = time.monotonic()
    image = ImageBuilder(backend, repo_source=source).ensure(image_spec(task, recipe_for(task, source)))
    timings["image_s"] = time.monotonic() - started

    model = ReplayModel.from_file(trajectory)
    config = agent_config(recording)
    sandbox_spec = SandboxSpec(
        image=image,
        labels={"role": "replay", "task": task.id},
        network=Network.BRIDGE,  # as the recording ran (plain `docker run`)
        cpus=None,  # no quota, as the recording: a slower command may hit its timeout and diverge
        memory="8g",
    )
    started = time.monotonic()
    with backend.start(sandbox_spec) as sandbox:
        leftovers = untracked_at_start(sandbox)
        setup_edits = setup_edited(sandbox)
        if official_tree:
            as_official_tree(sandbox)
        agent = Agent(config, model, sandbox, trajectory_path=work / "trajectories" / f"{task.id}.traj.json")
        result = agent.run(task)  # the prompt does not matter: the replies are the recorded ones
    timings["replay_s"] = time.monotonic() - started
    patch = result.submission
    # what the default `patch_exclude` would have dropped, for the record (the replay keeps all)
    _, would_drop = exclude_new_files(patch, AgentConfig.load().patch_exclude)
    record: dict[str, Any] = {
        "instance_id": task.id,
        "tree": "official" if official_tree else "ours",
        "exit_status": result.exit_status,
        "error": result.error.to_json() if result.error else None,
        "steps_recorded": len([m for m in recording["messages"] if m.get("role") == "assistant"]),
        "steps_replayed": result.steps,
        "replay_left_unused": model.remaining,
        "patch": compare(recorded_patch, patch, leftovers, setup_edits),
        "untracked_at_start": capped(leftovers),
        "default_patch_exclude_would_drop": would_drop,
        "official_resolved": bool(official.get("resolved")),
        "official_exit_status": official.get("exit_status"),
    }
    if patch.strip():
        started = time.monotonic()
        outcome = evaluator.evaluate(
            task, spec, Prediction(instance_id=task.id, model_patch=patch, model_name_or_path=MODEL_NAME)
        )
        timings["evaluate_s"] = time.monotonic() - started
        record.update(resolved=outcome.resolved, eval_error=outcome.error)
    else:
        record.update(resolved=False, eval_error="empty patch: nothing to evaluate")
    record["timings"] = timings
    return record


def run_one(
    task: Task, spec: EvalSpec, official: dict[str, Any], work: Path, **kwargs: Any
) -> dict[str, Any]:
    """`replay_one`, with any failure turned into a result that says why (the batch goes on)."""
    try:
        record = replay_one(task, spec, official, work=work, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one instance must never stop the batch; recorded below
        record = {
            "instance_id": task.id,
            "error": {"class": type(exc).__name__, "message": str(exc)[:2000]},
            "traceback": traceback.format_exc(limit=8)[-4000:],
            "official_resolved": bool(official.get("resolved")),
        }
    record["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json_atomic(result_path(work, task.id), record)
    return record


def result_path(work: Path, instance_id: str) -> Path:
    return work / "results" / f"{instance_id}.json"


def failed(record: dict[str, Any]) -> bool:
    """Did the instance end without a comparable replay (infrastructure, bug), as opposed to a result?"""
    return "patch" not in record


# -- the batch ----------------------------------------------------------------------------------------
def gold_failures(report: Path | None) -> list[str] | None:
    """Instances whose gold patch does not resolve in our environments, from an eval_fidelity report:
    there no patch can resolve, whatever the replay did (e.g. tests that need the internet)."""
    if report is None:
        return None
    rows = json.loads(report.read_text()).get("gold_not_resolved", [])
    return sorted(row["instance_id"] if isinstance(row, dict) else row for row in rows)


def summarise(records: list[dict[str, Any]], gold_failed: list[str] | None = None) -> dict[str, Any]:
    summary = _summary(records)
    if gold_failed is not None:
        kept = [r for r in records if r["instance_id"] not in set(gold_failed)]
        summary["where_gold_resolves"] = {
            "excluded_gold_fails_here": sorted(set(gold_failed) & {r["instance_id"] for r in records}),
            **{k: v for k, v in _summary(kept).items() if k.startswith("resolved") or k == "replayed"},
        }
    return summary


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in records if not failed(r)]
    n = len(done)
    same = sum(r["patch"]["same"] for r in done)
    same_src = sum(r["patch"]["same_in_source_files"] for r in done)
    ours = sum(bool(r.get("resolved")) for r in done)
    official = sum(r["official_resolved"] for r in done)
    evaluated = [r for r in done if not r.get("eval_error")]
    disagree = [r for r in done if bool(r.get("resolved")) != r["official_resolved"]]
    return {
        "instances": len(records),
        "replayed": n,
        "failed": sorted(r["instance_id"] for r in records if failed(r)),
        "patches_reproduced": same,
        "patches_reproduced_rate": same / n if n else None,
        "patches_reproduced_in_source_files": same_src,
        "resolved_ours": ours,
        "resolved_official": official,
        "resolved_rate_ours": ours / n if n else None,
        "resolved_rate_official": official / n if n else None,
        "resolved_rate_gap_points": 100 * (ours - official) / n if n else None,
        "evaluation_errors": {r["instance_id"]: r["eval_error"] for r in done if r.get("eval_error")},
        "evaluated": len(evaluated),
        # with the same patch a different verdict is the evaluation's doing, not the replay's
        "verdict_disagreements": {
            "same_patch": sorted(r["instance_id"] for r in disagree if r["patch"]["same"]),
            "same_in_source_files": sorted(
                r["instance_id"]
                for r in disagree
                if not r["patch"]["same"] and r["patch"]["same_in_source_files"]
            ),
            "different_patch": sorted(
                r["instance_id"] for r in disagree if not r["patch"]["same_in_source_files"]
            ),
        },
        "targets": {"patches_reproduced_rate": 0.9, "resolved_rate_gap_points": 3.0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, required=True, help="folder of bare upstream mirrors")
    parser.add_argument("--layout", default="{owner}/{name}.git", help="mirror path under --mirrors")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--work", type=Path, default=Path("out/replay_fidelity"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--instance-ids", nargs="+", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only-built", action="store_true", help="skip instances whose image is missing")
    parser.add_argument("--retry-errors", action="store_true", help="redo instances that ended in an error")
    parser.add_argument(
        "--gold-report",
        type=Path,
        default=None,
        help="an eval_fidelity JSON: also compare resolved rates where the gold patch resolves here",
    )
    parser.add_argument(
        "--tree", choices=("official", "ours"), default="official", help="working-tree layout to replay in"
    )
    args = parser.parse_args()

    ids = args.instance_ids or read_ids(args.data / "splits" / "dev_ids.txt")
    loaded = load_tasks(args.data / "swebench_verified.jsonl", ids)
    if loaded.missing_ids:
        print(f"not in the dataset: {loaded.missing_ids}", file=sys.stderr)
    index_path = args.data / TRAJECTORIES / "index.jsonl"
    official = {row["instance_id"]: row for row in map(json.loads, index_path.read_text().splitlines())}
    backend = DockerBackend(trust=HostTrust.from_env())
    source = MirrorFolder(root=args.mirrors, layout=args.layout)
    evaluator = Evaluator(backend, source, args.work / "eval")
    builder = ImageBuilder(backend, repo_source=source)

    tasks = [t for t in loaded.tasks if (args.data / TRAJECTORIES / f"{t.id}.traj.json").is_file()]
    if len(tasks) < len(loaded.tasks):
        print(f"{len(loaded.tasks) - len(tasks)} instances have no recorded trajectory", file=sys.stderr)
    if args.only_built:
        tasks = [t for t in tasks if builder.exists(image_spec(t, recipe_for(t, source)).tag())]
    tasks = tasks[: args.limit] if args.limit else tasks
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for task in tasks:
        path = result_path(args.work, task.id)
        if path.is_file():
            record = json.loads(path.read_text())
            other_tree = record.get("tree", "ours") != args.tree and not failed(record)
            if not other_tree and not (args.retry_errors and (failed(record) or record.get("eval_error"))):
                records[task.id] = record
                continue
        todo.append(task)
    print(f"{len(tasks)} instances: {len(records)} done before, {len(todo)} to replay", file=sys.stderr)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(args.workers, 1)) as pool:
        futures = {
            pool.submit(
                run_one,
                task,
                loaded.eval_specs[task.id],
                official.get(task.id, {}),
                args.work,
                trajectory=args.data / TRAJECTORIES / f"{task.id}.traj.json",
                backend=backend,
                source=source,
                evaluator=evaluator,
                official_tree=args.tree == "official",
            ): task
            for task in todo
        }
        for future in as_completed(futures):
            record = future.result()
            records[record["instance_id"]] = record
            print(_line(record), file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started

    ordered = [records[t.id] for t in tasks if t.id in records]
    summary = summarise(ordered, gold_failures(args.gold_report))
    report = {
        "benchmark": "replay_fidelity",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "compared": (
            "mini-swe-agent Gemini 3 Pro trajectories replayed by ReplayModel through our loop in our "
            "Docker images: replayed sandbox.diff() vs recorded info.submission (whitespace and index "
            "lines normalised), and our evaluation of the replayed patch vs the official resolved flag"
        ),
        "workers": args.workers,
        "tree": args.tree,
        "seconds_this_session": round(elapsed, 1),
        "summary": summary,
        "differing_patches": [
            {"instance_id": r["instance_id"], **r["patch"]}
            for r in ordered
            if not failed(r) and not r["patch"]["same"]
        ],
        "instances": ordered,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(ordered, summary)


def _line(record: dict[str, Any]) -> str:
    name = record["instance_id"]
    if failed(record):
        return f"{name}: failed ({record['error']['class']}: {record['error']['message'][:200]})"
    same = "same patch" if record["patch"]["same"] else "patch differs"
    return f"{name}: {same}, resolved {record.get('resolved')} (official {record['official_resolved']})"


def _print_table(records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print(f"{'instance':<32}{'exit':<16}{'patch':<22}{'ours':>6}{'official':>10}")
    for r in records:
        if failed(r):
            print(f"{r['instance_id']:<32}{'error: ' + r['error']['class']:<60}")
            continue
        patch = (
            "same"
            if r["patch"]["same"]
            else ("same in source" if r["patch"]["same_in_source_files"] else "DIFFERS")
        )
        ours = "error" if r.get("eval_error") else str(bool(r.get("resolved")))
        print(
            f"{r['instance_id']:<32}{r['exit_status']:<16}{patch:<22}{ours:>6}{r['official_resolved']!s:>10}"
        )
    n = summary["replayed"]
    if n:
        print(
            f"patches reproduced {summary['patches_reproduced']}/{n} "
            f"({100 * summary['patches_reproduced_rate']:.1f}%, target >= 90%); "
            f"same in source files {summary['patches_reproduced_in_source_files']}/{n}"
        )
        print(
            f"resolved: ours {summary['resolved_ours']}/{n}, official {summary['resolved_official']}/{n} "
            f"(gap {summary['resolved_rate_gap_points']:+.1f} points, target within 3)"
        )
    if "where_gold_resolves" in summary:
        sub = summary["where_gold_resolves"]
        print(
            f"where the gold patch resolves here ({sub['replayed']}): ours {sub['resolved_ours']}, "
            f"official {sub['resolved_official']} (gap {sub['resolved_rate_gap_points']:+.1f} points)"
        )
    if summary["failed"]:
        print(f"failed: {', '.join(summary['failed'])}")


if __name__ == "__main__":
    main()
