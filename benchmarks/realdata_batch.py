"""What a real-data `patchfleet batch` measured, checked against the recorded and official truth.

The batch (README, "Real data, one command") replays the official mini-swe-agent Gemini 3 Pro trajectory of
each dev instance, adds the 12 leaderboard submissions of `candidates_dev.jsonl` (13 sources per task),
selects, and grades every candidate with the hidden tests. This script reads its run folder and writes a
small JSON: per instance the replay against the recording (patch identical after whitespace
normalisation, and if not, why), our verdicts against the official ones (each source's), the chosen
candidate with its sources and both verdicts; totals; wall time. It reads official verdicts only here,
after the run, never on the selection path.

    python3 benchmarks/realdata_batch.py --run out/batch-dev \
        --out benchmarks/results/realdata_batch/realdata_batch.json [--wall-time-s 1234] \
        [--previous benchmarks/results/realdata_batch/realdata_batch.json]

The dev split outlasts one session. `--previous` adds the figures of an earlier document whose instances
this run does not have (a session whose run folder did not survive); its totals are added to this run's,
and each session keeps its own entry under `sessions`. A run folder that did survive travels as a
`patchfleet ledger export` archive instead, and is simply measured again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_fidelity import ARTIFACT, normalise, split_files

from patchfleet.atomic import write_json_atomic

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
RECORDINGS = "trajectories/mini-swe-agent-gemini-3-pro"
MINI = "20251118_mini-v1.15.0_gemini-3-pro-preview-20251118"  # the submission the recordings are
SETUP_FILES = {"setup.py", "tox.ini"}  # sphinx's set-up edits: committed in our images, not in theirs


def replay_check(recorded: str, replayed: str) -> dict[str, Any]:
    """Same patch after normalisation? Else the differing files, each with what explains it."""
    old = {p: normalise(t) for p, t in split_files(recorded).items()}
    new = {p: normalise(t) for p, t in split_files(replayed).items()}
    differing = sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))
    causes = Counter(
        "build_artifact" if ARTIFACT.search(p) else "setup_edit" if p in SETUP_FILES else "source"
        for p in differing
    )
    return {
        "identical": not differing,
        "identical_in_source_files": causes["source"] == 0,
        "differing_files_by_cause": dict(causes),
        "differing_source_files": [p for p in differing if not ARTIFACT.search(p) and p not in SETUP_FILES],
    }


def instance_record(run: Path, instance_id: str, official: dict[tuple[str, str], bool], index: dict) -> dict:
    task = json.loads((run / instance_id / "task.json").read_text())
    record: dict[str, Any] = {"instance_id": instance_id, "status": task.get("status")}
    if task.get("status") != "done":
        return {**record, "error": task.get("error")}
    outcome = json.loads((run / instance_id / "outcomes.json").read_text())["trajectories"][0]
    recording = json.loads((DATA / RECORDINGS / f"{instance_id}.traj.json").read_text())
    recorded_steps = sum(1 for m in recording["messages"] if m.get("role") == "assistant")
    candidates = json.loads((run / "selection" / instance_id / "candidates.json").read_text())
    flags_path = run / instance_id / "evaluation.json"
    flags = json.loads(flags_path.read_text()) if flags_path.is_file() else {}
    prediction = json.loads((run / instance_id / "prediction.json").read_text())
    chosen = prediction.get("candidate_id")

    def official_of(source: dict[str, Any]) -> bool | None:
        if source["kind"] == "trajectory":  # our replay of mini's recording: its official verdict
            return index.get(instance_id, {}).get("resolved")
        return official.get((source["name"], instance_id))

    pairs = []  # (source, ours, official) for every source of every candidate
    for candidate in candidates:
        for source in candidate["sources"]:
            pairs.append(
                {
                    "source": "replay" if source["kind"] == "trajectory" else source["name"],
                    "candidate": candidate["id"],
                    "ours": flags.get(candidate["id"]) if candidate["patch"].strip() else False,
                    "official": official_of(source),
                }
            )
    replay_candidate = next(
        (c["id"] for c in candidates for s in c["sources"] if s["kind"] == "trajectory"), None
    )
    chosen_pairs = [p for p in pairs if p["candidate"] == chosen]
    return {
        **record,
        "replay": {
            "exit_status": outcome["exit_status"],
            "steps_replayed": outcome["steps"],
            "steps_recorded": recorded_steps,
            **replay_check(recording["info"]["submission"], outcome.get("patch") or ""),
            "ours": flags.get(replay_candidate) if replay_candidate else None,
            "official": index.get(instance_id, {}).get("resolved"),
        },
        "sources": len(pairs),
        "distinct_candidates": len(candidates),
        "chosen": {
            "candidate": chosen,
            "policy": prediction.get("policy"),
            "sources": [p["source"] for p in chosen_pairs],
            "ours": flags.get(chosen) if chosen else None,
            "official": sorted({p["official"] for p in chosen_pairs if p["official"] is not None}),
        },
        "oracle_ours": any(v for v in flags.values()),
        "agreement": [p for p in pairs if p["ours"] is not None and p["official"] is not None],
    }


def totals(records: list[dict[str, Any]], gold_resolved: set[str] | None = None) -> dict[str, Any]:
    done = [r for r in records if r.get("status") == "done"]
    # verdict pairs of the 12 submissions' patches (the replay's is counted under "replay")
    pairs = [p for r in done for p in r["agreement"] if p["source"] != "replay"]
    agree = [p for p in pairs if bool(p["ours"]) == bool(p["official"])]
    if gold_resolved is not None:  # the fidelity figure: instances whose gold patch resolves here
        fair = [
            p
            for r in done
            if r["instance_id"] in gold_resolved
            for p in r["agreement"]
            if p["source"] != "replay"
        ]
        fair_agree = sum(1 for p in fair if bool(p["ours"]) == bool(p["official"]))
    per_source: dict[str, list[int]] = {}
    for p in pairs:
        entry = per_source.setdefault(p["source"], [0, 0])
        entry[0] += bool(p["ours"])
        entry[1] += bool(p["official"])
    replays = [r["replay"] for r in done]
    chosen_official = [r["chosen"]["official"] for r in done]
    return {
        "instances": len(records),
        "done": len(done),
        "replay": {
            "submitted": sum(1 for r in replays if r["exit_status"] == "Submitted"),
            "every_step_replayed": sum(1 for r in replays if r["steps_replayed"] == r["steps_recorded"]),
            "identical_to_recording": sum(1 for r in replays if r["identical"]),
            "identical_in_source_files": sum(1 for r in replays if r["identical_in_source_files"]),
            "resolved_ours": sum(1 for r in replays if r["ours"]),
            "resolved_official": sum(1 for r in replays if r["official"]),
        },
        "verdicts_agree": {"pairs": len(pairs), "agree": len(agree)},
        "verdicts_agree_where_gold_resolves": None
        if gold_resolved is None
        else {
            "instances": sorted(r["instance_id"] for r in done if r["instance_id"] in gold_resolved),
            "pairs": len(fair),
            "agree": fair_agree,
        },
        "chosen_resolved_ours": sum(1 for r in done if r["chosen"]["ours"]),
        "chosen_resolved_official": sum(1 for v in chosen_official if v == [True]),
        "chosen_official_mixed": sum(1 for v in chosen_official if len(v) > 1),
        "oracle_ours": sum(1 for r in done if r["oracle_ours"]),
        "oracle_official": sum(1 for r in done if any(p["official"] for p in r["agreement"])),
        "random_pick_official": round(sum(_share(r["agreement"]) for r in done), 3),
        "resolved_by_source": {k: {"ours": v[0], "official": v[1]} for k, v in sorted(per_source.items())},
    }


def _share(pairs: list[dict[str, Any]]) -> float:
    """The chance that one of the 12 submissions, drawn at random, is officially resolved."""
    flags = [bool(p["official"]) for p in pairs if p["source"] != "replay"]
    return sum(flags) / len(flags) if flags else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the batch's output folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--wall-time-s", type=float, help="wall time of all invocations of the batch")
    parser.add_argument("--previous", type=Path, help="an earlier document to add (disjoint instances)")
    parser.add_argument("--command", help="the batch command, as typed (no machine paths)")
    parser.add_argument(
        "--gold-report",
        type=Path,
        nargs="*",
        default=[],
        help="`patchfleet eval --predictions gold` run reports",
    )
    args = parser.parse_args()
    official = {}
    for line in (DATA / "candidates_dev.jsonl").read_text().splitlines():
        row = json.loads(line)
        official[(row["submission"], row["instance_id"])] = bool(row["resolved"])
    index = {}
    for line in (DATA / RECORDINGS / "index.jsonl").read_text().splitlines():
        row = json.loads(line)
        index[row["instance_id"]] = row
    summary = json.loads((args.run / "summary.json").read_text())
    ids = sorted(p.parent.name for p in args.run.glob("*/task.json"))
    records = [instance_record(args.run, i, official, index) for i in ids]
    gold = None
    gold_evaluated: set[str] = set()
    for path in args.gold_report:
        report = json.loads(path.read_text())
        gold = (gold or set()) | set(report.get("resolved_ids") or [])
        gold_evaluated |= set(report.get("completed_ids") or []) | set(report.get("error_ids") or [])
    counted = totals(records, gold)
    if gold is not None:
        counted["gold_resolves_here"] = {
            "evaluated": len(gold_evaluated & set(ids)),
            "resolved": sorted(gold & set(ids)),
        }
    for record in records:  # the pairs are counted in the totals; per instance, only what disagrees
        pairs = record.pop("agreement", [])
        record["disagreements"] = [
            f"{p['source']}: ours {p['ours']}, official {p['official']}"
            for p in pairs
            if bool(p["ours"]) != bool(p["official"])
        ]
    document = {
        "benchmark": "realdata_batch",
        "date": dt.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "command": args.command,
        "instances": ids,
        "totals": counted,
        "pool": summary.get("candidates"),
        "stage_time_s": _stage_time(summary),
        "wall_time_s": args.wall_time_s,
        "per_instance": records,
    }
    if args.previous:
        document = combined(json.loads(args.previous.read_text()), document)
    write_json_atomic(args.out, document)
    t = document["totals"]
    print(json.dumps({k: t[k] for k in ("done", "replay", "verdicts_agree", "chosen_resolved_ours")}))


SESSION_KEYS = ("date", "command", "instances", "totals", "pool", "stage_time_s", "wall_time_s")


def combined(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`current` with an earlier document's instances and figures added: totals summed, sessions listed."""
    overlap = sorted(set(previous["instances"]) & set(current["instances"]))
    if overlap:
        raise SystemExit(f"--previous covers instances this run has too: {', '.join(overlap[:5])}")
    sessions = previous.get("sessions") or [{k: previous.get(k) for k in SESSION_KEYS}]
    sessions = [*sessions, {k: current.get(k) for k in SESSION_KEYS}]
    return {
        **current,
        "instances": sorted([*previous["instances"], *current["instances"]]),
        "totals": _added(previous["totals"], current["totals"]),
        "pool": _added(previous.get("pool") or {}, current.get("pool") or {}),
        "stage_time_s": _added(previous.get("stage_time_s") or {}, current.get("stage_time_s") or {}),
        "wall_time_s": _added(previous.get("wall_time_s"), current.get("wall_time_s")),
        "sessions": sessions,
        "per_instance": sorted(
            [*previous["per_instance"], *current["per_instance"]], key=lambda r: r["instance_id"]
        ),
    }


def _added(a: Any, b: Any) -> Any:
    """Counts add, lists of ids join, dicts add key by key; a figure one side lacks is the other's."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _added(a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b])}
    if isinstance(a, list) and isinstance(b, list):
        return sorted(set(a) | set(b))
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, int | float):
        return b
    total = a + b
    return round(total, 3) if isinstance(total, float) else total


def _stage_time(summary: dict[str, Any]) -> dict[str, float]:
    stages: Counter[str] = Counter()
    for times in (summary.get("stage_time") or {}).values():
        for stage, seconds in times.items():
            stages[stage] += float(seconds or 0)
    return {k: round(v, 1) for k, v in stages.items()}


if __name__ == "__main__":
    main()
