"""One instance's selection from end to end: candidates -> tests -> matrix -> verifier -> decision.

Every stage writes its result under `<out>/<instance>/` as it finishes (candidates.json, tests.json,
matrix.jsonl, verifier.json, decision.json), so a killed run resumes stage by stage and any policy can
re-score the stored inputs offline (`load_inputs`). Only a `Task` comes in: nothing here can see the
hidden tests.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from patchfleet.agent.config import AgentConfig, ModelConfig
from patchfleet.agent.parallel import ParallelConfig
from patchfleet.atomic import write_json_atomic, write_text_atomic
from patchfleet.data.task import Task
from patchfleet.errors import ConfigError
from patchfleet.executor import Executor, LocalExecutor
from patchfleet.selection.execution import MatrixRun, SandboxStarter, run_matrix
from patchfleet.selection.harvest import default_runner, harvest_from_candidates, harvest_from_trajectory
from patchfleet.selection.matrix_cache import MatrixCache
from patchfleet.selection.model import (
    Candidate,
    Decision,
    Matrix,
    SelectionInputs,
    TestCase,
    VerifierScore,
    content_hash,
)
from patchfleet.selection.policies import POLICIES, DefaultPolicyConfig, make_default
from patchfleet.selection.units import (
    BUDGET_EXHAUSTED,
    Budgeted,
    RegressionJob,
    Spending,
    WriterSandboxes,
    discover_regression,
    judge,
    run_within,
)
from patchfleet.selection.verifier import Verifier, VerifierConfig, condense_trajectory

Log = Callable[[str], None]
ReadBase = Callable[[str], str | None]  # a file's content at the base commit (None: absent)

CANDIDATES_FILE = "candidates.json"
TESTS_FILE = "tests.json"
MATRIX_FILE = "matrix.jsonl"
VERIFIER_FILE = "verifier.json"
DECISION_FILE = "decision.json"


class SelectionConfig(BaseModel):
    """How to select: which test sources to gather, the verifier, the policy, and how to run."""

    model_config = ConfigDict(extra="forbid")

    policy: str = "default"
    harvest: bool = Field(True, description="scripts the trajectories wrote and ran")
    candidate_tests: bool = Field(True, description="test functions the candidates add")
    regression: bool = Field(True, description="existing tests near the changed code, passing at base")
    regression_budget_s: float = Field(300.0, ge=0)
    regression_runner: str = Field("auto", description="pytest, sympy (bin/test), or auto")
    max_harvested_per_trajectory: int = Field(3, ge=0)
    generated_tests: int = Field(0, ge=0, description="test-writing trajectories per instance (need a model)")
    test_writer: ModelConfig | None = None  # None: the run's agent model
    verifier: VerifierConfig | None = None  # None: no execution-free judge
    reuse_containers: bool = True
    workers: int = Field(2, ge=1)
    default_policy: DefaultPolicyConfig = Field(default_factory=DefaultPolicyConfig)

    def check(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"unknown selection policy {self.policy!r}: choose from {', '.join(POLICIES)}")

    def policies(self) -> dict[str, Callable[[SelectionInputs], Decision]]:
        return {**POLICIES, "default": make_default(self.default_policy)}


@dataclass
class SelectionEnv:
    """The machinery one instance's selection uses: its image, a backend, the shared cell cache."""

    image: str
    backend: SandboxStarter
    cache: MatrixCache
    read_base: ReadBase | None = None
    log: Log = field(default=lambda line: None)
    verifier: Verifier | None = None  # built once per run by the caller (its cache is shared)
    test_writer: AgentConfig | None = None  # the test-writing agent, with its model set
    work_dir: Path | None = None  # where test-writing trajectories go (default: <selection>/test-writers)
    # where matrix rows, regression discovery, test writers and judgements run (None: threads here);
    # a remote one (Ray) needs backend and verifier as `executor.OnNode`s (selection/units.py)
    executor: Executor | None = None
    prepare: Callable[[], object] | None = None  # where a unit runs, before its containers: the image
    # every sandbox's environment: what an official image's conda env sets (ours carry theirs on PATH)
    sandbox_env: dict[str, str] = field(default_factory=dict)
    image_id: str | None = None  # `image`'s content id when its name can move (an official image)
    # the run's budget (a batch's): test writers and judgements reserve their cost limits in it
    budget: Spending | None = None


@dataclass
class SelectionResult:
    decision: Decision
    inputs: SelectionInputs
    others: dict[str, Decision]  # every other policy's decision on the same inputs
    timings: dict[str, float]
    containers: int = 0


def select_task(
    task: Task,
    candidates: Sequence[Candidate],
    *,
    env: SelectionEnv,
    config: SelectionConfig,
    out_dir: Path,
    trajectories: Sequence[Path] = (),
    extra_tests: Sequence[TestCase] = (),
) -> SelectionResult:
    """Gather tests, run the matrix, ask the verifier, apply every policy; the configured one decides.

    trajectories: files to harvest scripts from (ours or mini-swe-agent's). extra_tests: tests made
    elsewhere (e.g. by test-writing trajectories).
    """
    config.check()
    folder = out_dir / task.id
    timings: dict[str, float] = {}
    clock = time.monotonic()
    write_json_atomic(folder / CANDIDATES_FILE, [c.model_dump(mode="json") for c in candidates])

    tests = _stored_tests(folder, candidates, config)
    if tests is None:
        tests = gather_tests(task, candidates, env=env, config=config, trajectories=trajectories)
        generated, complete = _generated_tests(task, env, config, folder)
        tests += generated
        tests += [t for t in extra_tests if t.id not in {x.id for x in tests}]
        # tests short of a writer the budget refused are not reused: a resumed run writes them again
        key = _tests_key(candidates, config) if complete else "incomplete"
        write_json_atomic(
            folder / TESTS_FILE, {"key": key, "tests": [t.model_dump(mode="json") for t in tests]}
        )
    timings["tests"] = time.monotonic() - clock

    clock = time.monotonic()
    run: MatrixRun = run_matrix(
        task.id,
        candidates,
        tests,
        image=env.image,
        backend=env.backend,
        cache=env.cache,
        reuse=config.reuse_containers,
        workers=config.workers,
        log=env.log,
        executor=env.executor,
        prepare=env.prepare,
        sandbox_env=env.sandbox_env,
        image_id=env.image_id,
    )
    annotated = run.annotated(candidates)
    write_text_atomic(folder / MATRIX_FILE, "".join(c.model_dump_json() + "\n" for c in run.matrix.cells))
    write_json_atomic(folder / CANDIDATES_FILE, [c.model_dump(mode="json") for c in annotated])
    timings["matrix"] = time.monotonic() - clock

    clock = time.monotonic()
    scores = _verify(task, annotated, env, config.workers) if env.verifier is not None else {}
    write_json_atomic(folder / VERIFIER_FILE, {cid: s.model_dump(mode="json") for cid, s in scores.items()})
    timings["verifier"] = time.monotonic() - clock

    inputs = SelectionInputs(
        instance_id=task.id, candidates=annotated, tests=tests, matrix=run.matrix, verifier=scores
    )
    decisions = {name: policy(inputs) for name, policy in config.policies().items()}
    decision = decisions.pop(config.policy)
    write_json_atomic(
        folder / DECISION_FILE,
        {
            "decision": decision.model_dump(mode="json"),
            "others": {name: d.model_dump(mode="json") for name, d in decisions.items()},
            "timings": timings,
            "matrix": run.stats.model_dump(mode="json"),
        },
    )
    return SelectionResult(decision, inputs, decisions, timings, run.stats.containers)


def gather_tests(
    task: Task,
    candidates: Sequence[Candidate],
    *,
    env: SelectionEnv,
    config: SelectionConfig,
    trajectories: Sequence[Path] = (),
) -> list[TestCase]:
    """Tests from the trajectories, from the candidates, and regression tests found at the base commit."""
    found: dict[str, TestCase] = {}
    if config.harvest:
        for path in trajectories:
            if not config.max_harvested_per_trajectory:
                break
            try:  # reproduction scripts come first: the cap keeps them
                harvested = harvest_from_trajectory(
                    path, task.id, max_tests=config.max_harvested_per_trajectory
                )
            except ConfigError as exc:  # an unreadable trajectory costs its tests, not the instance
                env.log(f"{task.id}: no tests harvested from {path}: {exc}")
                continue
            for test in harvested:
                found.setdefault(test.id, test)
    if config.candidate_tests:
        runner = default_runner(task.repo)
        for test in harvest_from_candidates(candidates, read_base=env.read_base, runner=runner):
            found.setdefault(test.id, test)
    if config.regression:
        for test in _regression_tests(task, candidates, env, config):
            found.setdefault(test.id, test)
    return list(found.values())


def _regression_tests(
    task: Task, candidates: Sequence[Candidate], env: SelectionEnv, config: SelectionConfig
) -> list[TestCase]:
    from patchfleet.selection.normalize import changed_files

    # most candidates' files first: the discovery's time budget goes where most of the changes are
    counts = Counter(path for c in candidates for path in changed_files(c.patch))
    changed = [path for path, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    if not changed:
        return []
    job = RegressionJob(
        task.id,
        env.image,
        env.backend,
        tuple(changed),
        config.regression_budget_s,
        config.regression_runner,
        dict(env.sandbox_env),
        env.prepare,
    )
    # mapped, as matrix rows are: on Ray, a discovery whose node died runs again (it changes nothing)
    return _executor(env).map(discover_regression, [job], workers=1)[0]


def _generated_tests(
    task: Task, env: SelectionEnv, config: SelectionConfig, folder: Path
) -> tuple[list[TestCase], bool]:
    """GENERATED tests from `config.generated_tests` test-writing trajectories (CodeMonkeys' votes),
    each trajectory a unit of the executor within the run's budget; False when the budget refused one."""
    if not config.generated_tests or env.test_writer is None:
        return [], True
    from patchfleet.selection.generate import script_path, tests_from_written, write_tests

    sandboxes = WriterSandboxes(task.id, env.image, env.backend, dict(env.sandbox_env), env.prepare)
    parallel = ParallelConfig(n=config.generated_tests)
    if config.test_writer is not None:
        parallel = parallel.model_copy(update={"models": [config.test_writer]})
    out = env.work_dir or folder / "test-writers"  # not both: callers name their work folder test-writers
    written = write_tests(
        task, env.test_writer, parallel, sandboxes, out, executor=_executor(env), budget=env.budget
    )
    refused = any(w.outcome.exit_status == BUDGET_EXHAUSTED for w in written)
    return tests_from_written(task, written, path=script_path(env.test_writer)), not refused


def _verify(
    task: Task, candidates: Sequence[Candidate], env: SelectionEnv, workers: int
) -> dict[str, VerifierScore]:
    """Every usable candidate's score, each judgement a unit of the executor (at most `workers` at once;
    scores are cached by prompt, so a rerun costs nothing) that reserves the verifier's cost limit in the
    run's budget; trajectories are condensed here, where their files are (another system's may exist on
    this machine only)."""
    assert env.verifier is not None
    items: list[tuple[Candidate, str | None]] = []
    for candidate in candidates:
        if not candidate.usable:
            continue
        path = next((Path(s.trajectory) for s in candidate.sources if s.trajectory), None)
        text = None
        if path is not None and path.is_file():
            try:
                text = condense_trajectory(path) or None
            except ConfigError:  # an unreadable trajectory: judge the patch alone
                text = None
        items.append((candidate, text))
    if not items:
        return {}
    verifier, executor, budget = env.verifier, _executor(env), env.budget

    def one(item: tuple[Candidate, str | None]) -> VerifierScore:
        candidate_id = item[0].id
        how = Budgeted(
            unit=f"judge {candidate_id}",
            reserve=verifier.config.cost_limit,
            spent=lambda score: 0.0 if score.cached else score.cost,
            # a missing score, not cached: asked again when the run resumes with budget left
            refused=lambda: VerifierScore(
                instance_id=task.id,
                candidate_id=candidate_id,
                score=None,
                samples=0,
                model=verifier.config.model.model,
                detail="not judged: the run's budget does not allow another judgement",
            ),
        )
        return run_within(executor, partial(judge, verifier, task), item, budget, how)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="judge") as pool:
        scores = list(pool.map(one, items))
    return {candidate.id: score for (candidate, _), score in zip(items, scores, strict=True)}


def _executor(env: SelectionEnv) -> Executor:
    return env.executor or LocalExecutor()


def _tests_key(candidates: Sequence[Candidate], config: SelectionConfig) -> str:
    """What the gathered tests depend on: the candidates and the test-source settings."""
    settings = config.model_dump(
        include={
            "harvest",
            "candidate_tests",
            "regression",
            "regression_budget_s",
            "regression_runner",
            "generated_tests",
        }
    )
    return content_hash(*sorted(c.id for c in candidates), json.dumps(settings, sort_keys=True))


def _stored_tests(
    folder: Path, candidates: Sequence[Candidate], config: SelectionConfig
) -> list[TestCase] | None:
    """Tests gathered by an earlier (killed) run over the same candidates and settings."""
    path = folder / TESTS_FILE
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != _tests_key(candidates, config):
        return None
    return [TestCase.model_validate(t) for t in stored.get("tests", [])]


def load_inputs(folder: Path) -> SelectionInputs:
    """The stored inputs of one instance's selection, for re-scoring offline with any policy."""
    candidates = [Candidate.model_validate(c) for c in json.loads((folder / CANDIDATES_FILE).read_text())]
    tests = [TestCase.model_validate(t) for t in json.loads((folder / TESTS_FILE).read_text())["tests"]]
    cells = [json.loads(line) for line in (folder / MATRIX_FILE).read_text().splitlines() if line.strip()]
    verifier_path = folder / VERIFIER_FILE
    scores = json.loads(verifier_path.read_text()) if verifier_path.exists() else {}
    return SelectionInputs(
        instance_id=folder.name,
        candidates=candidates,
        tests=tests,
        matrix=Matrix(instance_id=folder.name, cells=cells),
        verifier={cid: VerifierScore.model_validate(s) for cid, s in scores.items()},
    )
