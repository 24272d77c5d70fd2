"""`patchfleet fix`: one issue in any Python repository, from a local path or a clone URL, end to end.

The repository's environment is detected (`data.detect`), built as content-hashed image layers (network
only during the build), N trajectories run in parallel sandboxes (`runs.trajectories.run_task`), the select
stage picks one patch, the run folder gets its report, and `--apply` commits the patch to a new branch of
the local repository without touching its working tree (`runs.apply_branch`). `fix_issue` is the same
flow for callers such as the GitHub bot.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from patchfleet.agent import AgentConfig, ParallelConfig
from patchfleet.atomic import write_json_atomic, write_text_atomic
from patchfleet.data.detect import DetectedEnvironment, detect_environment
from patchfleet.data.issue_input import IssueText
from patchfleet.data.sources import LocalCheckout, materialize_from
from patchfleet.data.task import Task
from patchfleet.errors import ConfigError, RepoSourceError
from patchfleet.runs import trajectories as runner
from patchfleet.runs.apply_branch import commit_to_branch
from patchfleet.runs.config import RunConfig
from patchfleet.runs.fix_select import SelectionJob, Selector
from patchfleet.sandbox.config import DockerConfig
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.images import ImageBuilder, image_spec
from patchfleet.selection.model import Candidate, CandidateSource, Decision, content_hash
from patchfleet.selection.pipeline import SelectionConfig

RUN_FILE = "run.json"
Log = Callable[[str], None]


class FixConfig(BaseModel):
    """Everything one fix needs besides the repository and the issue. The shared keys come from a
    `RunConfig` (`from_run_config`); the rest are what only a single fix has."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    agent: AgentConfig
    parallel: ParallelConfig = Field(default_factory=lambda: ParallelConfig(n=4))
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    verifier: bool = True  # judge with the run's own model when selection.verifier is not configured
    setup: str | None = None  # replaces the detected install steps ("" installs nothing)
    test_cmd: str | None = None  # replaces the detected test command ("" means none)
    out_dir: Path = Path("out/fix")
    sandbox: DockerConfig = Field(default_factory=DockerConfig)  # engine, limits, network: every sandbox
    max_sandboxes: int | None = None
    test_timeout: float = 600.0
    apply: bool = False
    branch: str | None = None  # default patchfleet/fix-<task id>

    @classmethod
    def from_run_config(cls, run: RunConfig, **fix_only: Any) -> FixConfig:
        """The keys a fix shares with every run (agent, parallel, selection, sandbox, outputs)."""
        return cls(
            agent=run.agent,
            parallel=run.parallel,
            selection=run.selection,
            out_dir=run.outputs.dir,
            sandbox=run.sandbox,
            max_sandboxes=run.max_sandboxes,
            **fix_only,
        )


@dataclass
class FixRun:
    """What one fix produced; `patch` is "" when no candidate was usable."""

    task: Task
    run_dir: Path
    environment: DetectedEnvironment
    candidates: list[Candidate]
    decision: Decision
    patch: str
    outcomes: list[dict[str, Any]]
    cost: float
    stages: dict[str, dict[str, float]]
    image: str = ""
    report: Path | None = None
    branch: str | None = None
    commit: str | None = None
    local_repo: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> Candidate | None:
        return next((c for c in self.candidates if c.id == self.decision.chosen), None)


@dataclass(frozen=True)
class ResolvedRepo:
    """A repository input turned into something the image builder can read, at a fixed commit."""

    name: str
    commit: str
    source: LocalCheckout
    checkout: Path  # a clean single-commit checkout of `commit`, for detection
    local: Path | None  # the user's repository, when given as a path (what --apply commits to)
    dirty: bool = False


def resolve_repo(location: str, workdir: Path) -> ResolvedRepo:
    """A local path (its HEAD commit) or a clone URL (its default branch), materialized under `workdir`."""
    path = Path(location).expanduser()
    checkout = workdir / "checkout"
    if path.exists():
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True, timeout=60
        )
        if not path.is_dir() or top.returncode != 0:
            raise ConfigError(f"{location} is not a git repository (patchfleet fixes a commit of one)")
        path = Path(top.stdout.strip()).resolve()  # a folder inside a repository means that repository
        commit = _git_out(path, "rev-parse", "HEAD")
        materialize_from(str(path), commit, checkout)
        dirty = bool(_git_out(path, "status", "--porcelain", "--untracked-files=no"))
        return ResolvedRepo(path.name, commit, LocalCheckout(path=path), checkout, path, dirty)
    if not re.match(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:", location):
        raise ConfigError(f"{location} is neither an existing path nor a clone URL")
    heads = _git_out(None, "ls-remote", location, "HEAD")
    if not heads:
        raise RepoSourceError(f"{location} has no HEAD to fix")
    commit = heads.split()[0]
    materialize_from(location, commit, checkout)
    name = re.sub(r"\.git$", "", location.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]) or "repo"
    return ResolvedRepo(name, commit, LocalCheckout(path=checkout), checkout, None)


def _git_out(cwd: Path | None, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RepoSourceError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def task_for(repo: ResolvedRepo, issue: IssueText) -> Task:
    slug = re.sub(r"[^a-z0-9]+", "-", repo.name.lower()).strip("-") or "repo"
    ident = f"{slug}-{content_hash(repo.commit, issue.statement, length=8)}"
    return Task(id=ident, repo=f"local/{slug}", base_commit=repo.commit, problem_statement=issue.statement)


def run_fix(
    location: str,
    issue: IssueText,
    config: FixConfig,
    *,
    select: Selector | None = None,
    log: Log = print,
    backend: DockerBackend | None = None,
) -> FixRun:
    """The whole flow for one issue; raises `PatchfleetError` only for what stops it (bad input, an
    environment that does not build), never for a failed trajectory (recorded in outcomes). `select`
    defaults to the selection pipeline configured by `config.selection`."""
    from patchfleet.runs.fix_pipeline import pipeline_for, selection_cost
    from patchfleet.runs.report import write_report  # the report imports jinja2 templates: only when used
    from patchfleet.sandbox.trust import HostTrust

    runner.check_models(config.agent, config.parallel)
    config.selection.check()
    stages: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="patchfleet-fix-") as tmp:  # a clone lives here to the end
        started = time.monotonic()
        repo = resolve_repo(location, Path(tmp))
        if config.apply and repo.local is None:
            raise ConfigError("--apply needs the repository as a local path (it was given as a URL)")
        task = task_for(repo, issue)
        environment = detect_environment(repo.checkout, setup=config.setup, test_cmd=config.test_cmd)
        notes = []
        if repo.dirty:
            notes.append("the repository has uncommitted changes: the sandboxes hold its HEAD commit only")
        log(f"task {task.id}: {repo.name} at {repo.commit[:12]}")
        for line in [*environment.describe(), *(f"note: {n}" for n in notes)]:
            log(f"  {line}")
        stages["detect"] = _stage(started)

        started = time.monotonic()
        if backend is None:
            backend = config.sandbox.backend(HostTrust.from_env())
        recipe = environment.recipe()
        builder = ImageBuilder(
            backend, repo_source=repo.source, allow_pull=config.sandbox.allow_pull, log=log
        )
        image = builder.ensure(image_spec(task, recipe))
        log(f"environment ready: {image}")
        stages["environment"] = _stage(started)

        started = time.monotonic()
        limiter = threading.BoundedSemaphore(config.max_sandboxes) if config.max_sandboxes else None
        outcomes = runner.run_task(
            task,
            config.agent,
            config.parallel,
            backend=backend,
            builder=builder,
            recipe=lambda _: recipe,
            out_dir=config.out_dir,
            sandbox_limiter=limiter,
            sandbox_config=config.sandbox,
        )["trajectories"]
        cost = sum(row["cost"] for row in outcomes)
        stages["trajectories"] = _stage(started, cost)
        submitted = sum(row["exit_status"] == "Submitted" for row in outcomes)
        log(f"{submitted}/{len(outcomes)} trajectories submitted a patch (${cost:.4f})")

        started = time.monotonic()
        task_dir = config.out_dir / task.id
        if select is None:
            select = pipeline_for(config, source=repo.source, log=log)
        candidates = candidates_from_outcomes(task.id, outcomes)
        job = SelectionJob(
            task=task,
            candidates=candidates,
            image=image,
            backend=config.sandbox.limited(backend),  # the run config's limits in selection's sandboxes
            test_cmd=environment.test_cmd,
            out_dir=task_dir,
            trajectories=[Path(row["trajectory"]) for row in outcomes if row["trajectory"]],
            agent=config.agent,
            test_timeout=config.test_timeout,
            workers=config.selection.workers,
        )
        decision = select(job)
        stages["selection"] = _stage(started, selection_cost(task_dir))

    candidates = _recorded_candidates(task_dir, candidates)
    chosen = next((c for c in candidates if c.id == decision.chosen), None)
    result = FixRun(
        task=task,
        run_dir=config.out_dir,
        environment=environment,
        candidates=candidates,
        decision=decision,
        patch=chosen.patch if chosen else "",
        outcomes=outcomes,
        cost=cost + stages["selection"]["cost"],
        stages=stages,
        image=image,
        local_repo=repo.local,
        notes=notes,
    )
    if config.apply and result.patch and repo.local is not None:
        result.branch = config.branch or f"patchfleet/fix-{task.id}"
        message = (
            f"{issue.title or 'Fix'}\n\n"
            f"Chosen by patchfleet ({decision.policy}) from {len(outcomes)} trajectories."
        )
        result.commit = commit_to_branch(repo.local, repo.commit, result.patch, result.branch, message)
        log(f"committed {result.commit[:12]} on branch {result.branch} (working tree untouched)")

    started = time.monotonic()
    write_run_files(result, issue, location, config)
    result.report = write_report(config.out_dir)
    stages["report"] = _stage(started)
    write_run_files(result, issue, location, config)  # with the report's own time
    return result


def fix_issue(repo_path: Path, title: str, body: str, config: FixConfig, **kwargs: Any) -> FixRun:
    """One issue of a local repository, for callers that already hold its text."""
    return run_fix(str(repo_path), IssueText(title=title, body=body), config, **kwargs)


def bot_fix(
    repo_path: Path,
    issue_title: str,
    issue_body: str,
    *,
    model: str | None = None,
    samples: int = 4,
    policy: str | None = None,
    budget: float | None = None,
    out_dir: Path | None = None,
    overrides: tuple[str, ...] = (),
    generated_tests: int | None = None,
):
    """The GitHub bot's entry (`runs.github.command` calls it): a fix of the checkout, as the bot's
    `FixResult`. `budget` (dollars) is split evenly into per-trajectory cost limits; `overrides` are
    dotted `RunConfig` keys, as `patchfleet fix --set` takes them."""
    from patchfleet.runs.config import RunConfig
    from patchfleet.runs.github.bot import FixResult

    shorthands = {
        "agent.model.type": "litellm" if model else None,
        "agent.model.model": model,
        "parallel.n": samples,
        "selection.policy": policy,
        "selection.generated_tests": generated_tests,
        "agent.limits.cost_limit": budget / samples if budget is not None else None,
        "outputs.dir": out_dir or Path(tempfile.mkdtemp(prefix="patchfleet-bot-run-")),
    }
    config = FixConfig.from_run_config(RunConfig.load(None, overrides, shorthands))
    run = fix_issue(Path(repo_path), issue_title, issue_body, config, log=lambda line: None)
    return FixResult(
        patch=run.patch,
        summary=summarize_patch(run.patch),
        rationale=rationale_markdown(run),
        cost=run.cost,
        outcome="patched" if run.patch.strip() else "no_patch",
    )


def summarize_patch(patch: str) -> str:
    """One line: which files change and by how many lines."""
    files = re.findall(r"^\+\+\+ b/(\S+)", patch, re.M)
    added = sum(1 for line in patch.splitlines() if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in patch.splitlines() if line.startswith("-") and not line.startswith("---"))
    if not files:
        return "No patch was chosen."
    return f"Changes {', '.join(f'`{f}`' for f in files)} (+{added} -{removed})."


def rationale_markdown(run: FixRun) -> str:
    """How the patch was chosen, for a pull request body: environment, candidates, decision."""
    lines = [f"Environment: {'; '.join(run.environment.describe())}", ""]
    submitted = sum(row["exit_status"] == "Submitted" for row in run.outcomes)
    lines.append(
        f"{submitted} of {len(run.outcomes)} trajectories submitted a patch; "
        f"{len(run.candidates)} distinct candidate(s)."
    )
    lines += ["", "| candidate | votes | size | flags | scores |", "| --- | --- | --- | --- | --- |"]
    for c in run.candidates:
        mark = " (chosen)" if c.id == run.decision.chosen else ""
        scores = ", ".join(f"{k}={v}" for k, v in run.decision.scores.get(c.id, {}).items())
        lines.append(f"| `{c.id}`{mark} | {len(c.sources)} | {c.size} | {', '.join(c.flags)} | {scores} |")
    tests = _stored_tests(run.run_dir / run.task.id)
    if tests:
        kinds = Counter(str(t.get("kind")) for t in tests)
        lines += ["", "Tests run against every candidate: " + ", ".join(f"{n} {k}" for k, n in kinds.items())]
    lines += ["", f"Decision ({run.decision.policy}):", *(f"- {reason}" for reason in run.decision.reasons)]
    lines += [f"- note: {note}" for note in run.notes]
    return "\n".join(lines)


def candidates_from_outcomes(instance_id: str, outcomes: list[dict[str, Any]]) -> list[Candidate]:
    """One candidate per distinct patch (trailing whitespace aside); each trajectory giving it is a source."""
    grouped: dict[str, Candidate] = {}
    for row in outcomes:
        patch = row.get("patch") or ""
        if row["exit_status"] != "Submitted" or not patch.strip():
            continue
        ident = content_hash("\n".join(line.rstrip() for line in patch.strip().splitlines()))
        source = CandidateSource(
            kind="trajectory", name=row["model"], ref=row["trajectory"] or "", trajectory=row["trajectory"]
        )
        known = grouped.get(ident)
        grouped[ident] = (
            Candidate(id=ident, instance_id=instance_id, patch=patch, sources=(source,))
            if known is None
            else known.model_copy(update={"sources": (*known.sources, source)})
        )
    return list(grouped.values())


def _recorded_candidates(task_dir: Path, fallback: list[Candidate]) -> list[Candidate]:
    """The candidates as the select stage recorded them (with flags and AST keys), when it did."""
    path = task_dir / "candidates.json"
    if not path.is_file():
        return fallback
    return [Candidate.model_validate(row) for row in json.loads(path.read_text())]


def _stored_tests(task_dir: Path) -> list[dict[str, Any]]:
    path = task_dir / "tests.json"
    if not path.is_file():
        return []
    raw = json.loads(path.read_text())
    return raw.get("tests", []) if isinstance(raw, dict) else raw


def _stage(started: float, cost: float = 0.0) -> dict[str, float]:
    return {"seconds": round(time.monotonic() - started, 3), "cost": round(cost, 6)}


def write_run_files(result: FixRun, issue: IssueText, location: str, config: FixConfig) -> None:
    """run.json (what was run, the stages' time and cost), the chosen patch, and preds.jsonl."""
    run_dir = result.run_dir
    model = config.agent.model
    write_json_atomic(
        run_dir / RUN_FILE,
        {
            "kind": "fix",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "repository": location,
            "base_commit": result.task.base_commit,
            "issue": {"title": issue.title, "url": issue.url},
            "model": getattr(model, "model", getattr(model, "type", None)),
            "samples": config.parallel.n,
            "policy": result.decision.policy,
            "environment": result.environment.describe(),
            "test_cmd": result.environment.test_cmd,
            "tasks": [result.task.id],
            "stages": result.stages,
            "cost": result.cost,
            "chosen": result.decision.chosen,
            "branch": result.branch,
            "commit": result.commit,
            "notes": result.notes,
        },
    )
    write_text_atomic(run_dir / result.task.id / "chosen.patch", result.patch)
    prediction = {
        "instance_id": result.task.id,
        "model_name_or_path": f"patchfleet-{result.decision.policy}",
        "model_patch": result.patch,
    }
    write_text_atomic(run_dir / "preds.jsonl", json.dumps(prediction) + "\n")
