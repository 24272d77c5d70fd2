"""A run folder as one self-contained `report.html`: the test-time-scaling figure (resolve rate against the
number of samples: oracle, selector, random best-of-k), time and cost by stage, and a table per task.

Everything is read from the run's files (files are the source of truth), plots are inline SVG drawn here
(no JavaScript, no CDN): the report opens offline, in a CI artefact, or attached to an issue. The selector
curve re-scores random subsets of each task's trajectories with the run's own policy, offline, from the
recorded matrix and verifier scores.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined

from patchfleet.atomic import write_text_atomic
from patchfleet.selection.model import (
    Candidate,
    Cell,
    Contract,
    Decision,
    Matrix,
    SelectionInputs,
    TestCase,
    VerifierScore,
)

REPORT_FILE = "report.html"
SHOWN_SCORES = ("votes", "size", "tests_passed", "tests", "verifier", "score", "sources")  # own columns
EVALUATION_FILE = "evaluation.json"  # {candidate id: resolved}, when the run knows the truth
SELECTION_DIR = "selection"  # a batch keeps selection files in <run>/selection/<id>/ (runs/layout.py)
SUBSETS_PER_K = 40
Policy = Callable[[SelectionInputs], Decision]


@dataclass
class TaskView:
    """One task's recorded files, as read from `<run>/<task id>/`."""

    id: str
    folder: Path
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    tests: list[TestCase] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    verifier: dict[str, VerifierScore] = field(default_factory=dict)
    decision: Decision | None = None
    others: dict[str, Decision] = field(default_factory=dict)  # other policies' decisions on the same inputs
    resolved: dict[str, bool] | None = None  # by candidate id
    chosen_resolved: bool | None = None  # a batch's evaluation: only the chosen patch is graded
    costs: dict[str, float] = field(default_factory=dict)  # a batch task's booked stage costs

    def candidate_of(self, row: dict[str, Any]) -> str | None:
        """The candidate a trajectory's patch became (matched by its trajectory file, then by patch)."""
        traj = row.get("trajectory")
        for c in self.candidates:
            if traj and any(s.trajectory == traj or s.ref == traj for s in c.sources):
                return c.id
        patch = (row.get("patch") or "").strip()
        return next((c.id for c in self.candidates if patch and c.patch.strip() == patch), None)

    @property
    def inputs(self) -> SelectionInputs:
        return SelectionInputs(
            instance_id=self.id,
            candidates=self.candidates,
            tests=self.tests,
            matrix=Matrix(instance_id=self.id, cells=self.cells),
            verifier=self.verifier,
        )


@dataclass
class RunView:
    folder: Path
    meta: dict[str, Any]
    tasks: list[TaskView]

    @property
    def stages(self) -> dict[str, dict[str, float]]:
        """{stage: {seconds, cost}}: as fix/demo record it, or summed over a batch's tasks (its summary's
        stage_time, each task.json's costs; trajectory costs from the outcomes)."""
        if self.meta.get("stages"):
            return self.meta["stages"]
        stages: dict[str, dict[str, float]] = {}
        for times in (self.meta.get("stage_time") or {}).values():
            for stage, seconds in times.items():
                stages.setdefault(stage, {"seconds": 0.0, "cost": 0.0})["seconds"] += float(seconds or 0)
        for task in self.tasks:
            for stage, cost in task.costs.items():
                stages.setdefault(stage, {"seconds": 0.0, "cost": 0.0})["cost"] += float(cost or 0)
            if "trajectories" not in task.costs and task.outcomes:
                entry = stages.setdefault("trajectories", {"seconds": 0.0, "cost": 0.0})
                entry["cost"] += sum(float(r.get("cost") or 0) for r in task.outcomes)
        return stages


def load_run(folder: Path) -> RunView:
    """Every task folder under `folder` (holding outcomes.json, decision.json or a batch's task.json)."""
    meta: dict[str, Any] = {}
    for name in ("run.json", "summary.json"):
        if (folder / name).is_file():
            meta = {**_json(folder / name), **meta}
    resolved_ids = set(((meta.get("evaluation") or {}).get("resolved_ids")) or ())
    tasks = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if any((sub / name).is_file() for name in ("outcomes.json", "decision.json", "task.json")):
            view = load_task(sub, folder / SELECTION_DIR / sub.name)
            if meta.get("evaluation") and view.decision is not None and view.decision.chosen:
                view.chosen_resolved = view.id in resolved_ids
            tasks.append(view)
    return RunView(folder, meta, tasks)


def load_task(folder: Path, selection: Path | None = None) -> TaskView:
    """A task's files; selection files from `folder`, else from `selection` (a batch's selection/<id>/)."""
    view = TaskView(id=folder.name, folder=folder)
    if (folder / "outcomes.json").is_file():
        document = _json(folder / "outcomes.json")
        view.id = document.get("instance_id", view.id)
        view.outcomes = document.get("trajectories", [])
    if (folder / "task.json").is_file():
        view.costs = dict(_json(folder / "task.json").get("costs") or {})
    chosen_files = folder if (folder / "decision.json").is_file() or selection is None else selection
    _load_selection(view, chosen_files)
    if (folder / EVALUATION_FILE).is_file():
        view.resolved = {k: bool(v) for k, v in _json(folder / EVALUATION_FILE).items()}
    return view


def _load_selection(view: TaskView, folder: Path) -> None:
    if (folder / "candidates.json").is_file():
        view.candidates = [Candidate.model_validate(c) for c in _json(folder / "candidates.json")]
    if (folder / "tests.json").is_file():
        raw = _json(folder / "tests.json")  # the pipeline stores {"key", "tests"}, the suite stage a list
        view.tests = [TestCase.model_validate(t) for t in (raw["tests"] if isinstance(raw, dict) else raw)]
    if (folder / "matrix.jsonl").is_file():
        lines = (folder / "matrix.jsonl").read_text().splitlines()
        view.cells = [Cell.model_validate_json(line) for line in lines if line.strip()]
    if (folder / "verifier.json").is_file():
        raw = _json(folder / "verifier.json")
        rows = raw.values() if isinstance(raw, dict) else raw
        scores = [VerifierScore.model_validate(r) for r in rows]
        view.verifier = {s.candidate_id: s for s in scores}
    if (folder / "decision.json").is_file():
        raw = _json(folder / "decision.json")  # the pipeline stores {"decision", "others", "timings", ...}
        view.decision = Decision.model_validate(raw.get("decision", raw))
        view.others = {k: Decision.model_validate(d) for k, d in (raw.get("others") or {}).items()}


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


# -- the scaling figure --------------------------------------------------------------------------------


def oracle_at_k(n: int, good: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n resolves), `good` of n resolving."""
    if good <= 0:
        return 0.0
    if n - good < k:
        return 1.0
    return 1.0 - math.comb(n - good, k) / math.comb(n, k)


def subset_inputs(task: TaskView, trajectories: set[str]) -> SelectionInputs:
    """The selection inputs as if only `trajectories` had run: candidates keep the sources among them."""
    inputs = task.inputs
    kept = []
    for c in inputs.candidates:
        sources = tuple(
            s for s in c.sources if (s.trajectory or s.ref) in trajectories or s.kind != "trajectory"
        )
        if sources:
            kept.append(c.model_copy(update={"sources": sources}))
    return inputs.model_copy(update={"candidates": kept})


def scaling_curve(
    run: RunView, policy: Policy | None, *, seed: int = 0
) -> dict[str, list[tuple[int, float]]] | None:
    """Mean over tasks of oracle@k, random@k and selector@k for k = 1..n; None without ground truth."""
    tasks = [t for t in run.tasks if t.resolved is not None and t.outcomes]
    if not tasks:
        return None
    n_max = min(len(t.outcomes) for t in tasks)
    rng = random.Random(seed)
    curves: dict[str, list[tuple[int, float]]] = {"oracle": [], "random": [], "selector": []}
    for k in range(1, n_max + 1):
        oracle, rand, chosen = [], [], []
        for task in tasks:
            assert task.resolved is not None
            flags = [task.resolved.get(task.candidate_of(row) or "", False) for row in task.outcomes]
            oracle.append(oracle_at_k(len(flags), sum(flags), k))
            rand.append(sum(flags) / len(flags))
            if policy is not None:
                chosen.append(_selector_at_k(task, policy, k, rng))
        curves["oracle"].append((k, sum(oracle) / len(oracle)))
        curves["random"].append((k, sum(rand) / len(rand)))
        if chosen:
            curves["selector"].append((k, sum(chosen) / len(chosen)))
    return curves


def _selector_at_k(task: TaskView, policy: Policy, k: int, rng: random.Random) -> float:
    assert task.resolved is not None
    paths = [row.get("trajectory") or f"#{row['index']}" for row in task.outcomes]
    subsets = {tuple(sorted(rng.sample(paths, k))) for _ in range(SUBSETS_PER_K)}
    wins = 0
    for subset in subsets:
        decision = policy(subset_inputs(task, set(subset)))
        wins += bool(decision.chosen and task.resolved.get(decision.chosen, False))
    return wins / len(subsets)


def policy_for(name: str | None) -> Policy | None:
    """The recorded decisions' policy by name, to re-score subsets with it."""
    from patchfleet.runs.fix_select import suite_vote_policy

    known: dict[str, Policy] = {"suite-vote": suite_vote_policy}
    try:  # selection.policies is the lead's registry once it lands; until then only suite-vote re-scores
        from patchfleet.selection.policies import POLICIES  # type: ignore[import-not-found]

        known.update(POLICIES)
    except ImportError:
        pass
    return known.get(name or "")


# -- SVG ----------------------------------------------------------------------------------------------

COLOURS = {"oracle": "#2b8a3e", "selector": "#1c64d1", "random": "#c2410c"}


def line_chart(
    curves: dict[str, list[tuple[int, float]]], title: str, width: int = 560, height: int = 320
) -> str:
    """Resolve rate (0..1) against k, one polyline and dots per series, with axes and a legend."""
    left, right, top, bottom = 52, 150, 34, 44
    xs = sorted({k for series in curves.values() for k, _ in series})
    if not xs:
        return ""
    x_max = max(xs[-1], 2)
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(k: float) -> float:
        return left + (k - 1) / (x_max - 1) * plot_w

    def py(v: float) -> float:
        return top + (1 - v) * plot_h

    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for tick in range(0, 11, 2):
        y = py(tick / 10)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{tick * 10}%</text>'
        )
    for k in xs:
        parts.append(
            f'<text x="{px(k):.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle">{k}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="12" text-anchor="middle">'
        "samples per task (k)</text>"
    )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#374151"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#374151"/>'
    )
    for i, (name, series) in enumerate(curves.items()):
        if not series:
            continue
        colour = COLOURS.get(name, "#6b7280")
        points = " ".join(f"{px(k):.1f},{py(v):.1f}" for k, v in series)
        parts.append(
            f'<polyline class="series" data-series="{name}" fill="none" stroke="{colour}" '
            f'stroke-width="2.5" points="{points}"/>'
        )
        for k, v in series:
            parts.append(
                f'<circle cx="{px(k):.1f}" cy="{py(v):.1f}" r="3.5" fill="{colour}">'
                f"<title>{name} k={k}: {v:.1%}</title></circle>"
            )
        ly = top + 14 + 20 * i
        parts.append(
            f'<line x1="{left + plot_w + 14}" y1="{ly}" x2="{left + plot_w + 36}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="3"/>'
            f'<text x="{left + plot_w + 42}" y="{ly + 4}" font-size="12">{name} ({series[-1][1]:.0%})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(values: dict[str, float], title: str, unit: str, width: int = 420, left: int = 110) -> str:
    """Horizontal bars, one per stage, labelled with their value."""
    if not values:
        return ""
    top, bar, gap = 30, 20, 8
    height = top + len(values) * (bar + gap) + 10
    peak = max(values.values()) or 1.0
    span = width - left - 90
    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (name, value) in enumerate(values.items()):
        y = top + i * (bar + gap)
        w = max(1.0, value / peak * span)
        label = f"${value:.4f}" if unit == "$" else f"{value:.1f} {unit}"
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" font-size="12" text-anchor="end">{escape(name)}</text>'
            f'<rect class="bar" x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="#6366f1">'
            f"<title>{escape(name)}: {label}</title></rect>"
            f'<text x="{left + w + 6:.1f}" y="{y + 14}" font-size="12">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def pool_chart(figures: dict[str, Any] | None) -> str:
    """A batch whose every candidate was graded: resolve rate of the chosen patch, the oracle (any
    candidate), a source picked at random, and each source alone (a submission, or our trajectories)."""
    if not figures or not figures.get("tasks"):
        return ""
    n = figures["tasks"]
    values = {
        "selector (chosen)": 100 * figures["chosen_resolved"] / n,
        "oracle (any candidate)": 100 * figures["oracle_resolved"] / n,
        "random pick": 100 * figures["random_pick_resolved"] / n,
    }
    for name, counts in sorted((figures.get("by_source") or {}).items()):
        values[name] = 100 * counts["resolved"] / n
    left = min(12 + 7 * max(len(name) for name in values), 400)
    title = f"Resolved over the candidate pool ({n} tasks)"
    return bar_chart(values, title, "%", width=left + 320, left=left)


# -- the page -------------------------------------------------------------------------------------------


def task_rows(run: RunView, task: TaskView) -> dict[str, Any]:
    """What the template shows of one task: trajectories, candidates with their evidence, the decision."""
    decision = task.decision
    chosen = decision.chosen if decision else None
    tests = {t.id for t in task.tests}
    behaviour = {t.id for t in task.tests if t.contract == Contract.BEHAVIOUR}
    matrix = Matrix(instance_id=task.id, cells=task.cells)
    clusters = {}
    for c in task.candidates:
        # candidates that every test treats alike form one cluster: same verdict, or for behaviour
        # tests (which only print) the same normalised output
        row = matrix.row(c.id)
        clusters[c.id] = "|".join(
            "?" if t not in row else row[t].output_hash if t in behaviour else str(row[t].exit_code)
            for t in sorted(tests)
        )
    by_signature: dict[str, list[str]] = {}
    for cid, signature in clusters.items():
        by_signature.setdefault(signature, []).append(cid)
    cluster_label = {cid: f"C{i + 1}" for i, ids in enumerate(by_signature.values()) for cid in ids}
    candidates = []
    for c in task.candidates:
        row = matrix.row(c.id)
        scores = (decision.scores.get(c.id, {}) if decision else {}) or {}
        verifier = task.verifier.get(c.id)
        candidates.append(
            {
                "id": c.id,
                "chosen": c.id == chosen,
                "rank": (decision.ranking.index(c.id) + 1) if decision and c.id in decision.ranking else None,
                "votes": len(c.sources),
                "size": c.size,
                "flags": ", ".join(c.flags),
                "cluster": cluster_label.get(c.id, ""),
                # verdicts only: a behaviour test (it only prints) votes through the clusters instead
                "passed": sum(1 for t in tests - behaviour if t in row and row[t].exit_code == 0),
                "tests": len(tests - behaviour),
                "verifier": None if verifier is None or verifier.score is None else verifier.score,
                "score": scores.get("score"),
                "scores": {k: v for k, v in scores.items() if k not in SHOWN_SCORES},
                "resolved": None if task.resolved is None else task.resolved.get(c.id, False),
                "trajectories": [_link(run.folder, s.trajectory or s.ref) for s in c.sources],
            }
        )
    trajectories = []
    for row in task.outcomes:
        trajectories.append(
            {
                "index": row["index"],
                "status": row["exit_status"],
                "steps": row["steps"],
                "cost": row["cost"],
                "temperature": row.get("temperature"),
                "model": row.get("model", ""),
                "candidate": task.candidate_of(row),
                "error": (row.get("error") or {}).get("message", "") or _limit(row),
                "link": _link(run.folder, row.get("trajectory")),
            }
        )
    patch = next((c.patch for c in task.candidates if c.id == chosen), "")
    return {
        "id": task.id,
        "decision": decision,
        "others": {name: d.chosen for name, d in sorted(task.others.items())},
        "candidates": candidates,
        "trajectories": trajectories,
        "patch": patch,
        "resolved": (
            task.chosen_resolved
            if task.resolved is None or chosen is None
            else task.resolved.get(chosen, False)
        ),
    }


def _limit(row: dict[str, Any]) -> str:
    """Which limit ended a trajectory that stopped without an error (steps, cost, format errors, ...)."""
    if row.get("exit_status") != "LimitsExceeded" or not row.get("trajectory"):
        return ""
    try:
        info = json.loads(Path(row["trajectory"]).read_text()).get("info", {})
    except (OSError, json.JSONDecodeError):
        return ""
    return f"limit: {info['limit']}" if info.get("limit") else ""


def _link(folder: Path, path: str | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    try:
        return str(p.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(p)


def render_report(folder: Path, *, policy: Policy | None = None) -> str:
    run = load_run(folder)
    if policy is None:
        names = {t.decision.policy for t in run.tasks if t.decision}
        policy = policy_for(next(iter(names))) if len(names) == 1 else None
    curves = scaling_curve(run, policy)
    stages = run.stages
    tasks = [task_rows(run, t) for t in run.tasks]
    known = [t for t in tasks if t["resolved"] is not None]
    template = resources.files("patchfleet.runs").joinpath("templates/report.html.j2").read_text()
    env = Environment(undefined=StrictUndefined, autoescape=True)
    return env.from_string(template).render(
        meta=run.meta,
        tasks=tasks,
        resolved=sum(1 for t in known if t["resolved"]),
        evaluated=len(known),
        scaling=line_chart(curves, "Resolve rate against samples per task") if curves else "",
        pool=pool_chart(run.meta.get("candidates")),
        time_chart=bar_chart({k: v.get("seconds", 0.0) for k, v in stages.items()}, "Time by stage", "s"),
        cost_chart=bar_chart({k: v.get("cost", 0.0) for k, v in stages.items()}, "Cost by stage", "$"),
        total_cost=sum(v.get("cost", 0.0) for v in stages.values()),
        total_time=sum(v.get("seconds", 0.0) for v in stages.values()),
    )


def write_report(folder: Path, *, policy: Policy | None = None) -> Path:
    """Render `<folder>/report.html` from the run's files; returns its path."""
    path = folder / REPORT_FILE
    write_text_atomic(path, render_report(folder, policy=policy))
    return path
