"""Generated tests: test-writing trajectories that each leave one script with an exit-code contract.

The agent runs with its own prompt (`agent/config/test_writer.yaml`): write a standalone script at
`<scratch_dir>/patchfleet_test.py` that exits 0 when the issue is fixed and 2 when it is not, and run
it at the base commit. The script lives outside the repository, so it is never part of a patch; it is
read from each sandbox right before that sandbox closes (`write_test` wraps the factory for this, in
the unit that runs the trajectory, here or on a Ray node). Whether a script really reproduces the issue
(exits 2 at the base commit) is decided by the execution matrix's BASE row, not here.

Under a run's budget each trajectory reserves its `limits.cost_limit` before it starts and books what it
spent (`units.run_within`); an earlier file of the same trajectory (a worker that died, an earlier run) is
kept under `attempts/`, as the batch keeps its trajectories'.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from patchfleet.agent.config import AgentConfig, deep_merge, default_config_data
from patchfleet.agent.loop import ErrorInfo
from patchfleet.agent.model import Limiter, Model
from patchfleet.agent.parallel import (
    ParallelConfig,
    SandboxFactory,
    TrajectoryOutcome,
    TrajectorySpec,
    default_model_factory,
    plan,
    run_trajectory,
    set_aside,
    trajectory_path,
)
from patchfleet.agent.trajectory import read_state
from patchfleet.data.task import Task
from patchfleet.errors import SandboxError
from patchfleet.executor import Executor, LocalExecutor
from patchfleet.sandbox.base import REPO_DIR, Sandbox
from patchfleet.selection.model import Contract, TestCase, TestKind
from patchfleet.selection.units import BUDGET_EXHAUSTED, Budgeted, Spending, run_within

TEST_FILE = "patchfleet_test.py"
GENERATED_TIMEOUT = 120.0
MAX_SCRIPT_BYTES = 200_000


def load_test_writer_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> AgentConfig:
    """The agent config for test writing: default.yaml, then test_writer.yaml, then the user's file
    (e.g. the run's model) and dotted overrides."""
    text = resources.files("patchfleet.agent").joinpath("config/test_writer.yaml").read_text()
    base = deep_merge(default_config_data(), yaml.safe_load(text))
    return AgentConfig.load(path, overrides, base=base, label="test-writer config")


def script_path(agent_config: AgentConfig) -> str:
    """Where the prompt asks for the script (the prompt says `{{ scratch_dir }}/patchfleet_test.py`)."""
    return posixpath.join(agent_config.scratch_dir, TEST_FILE)


def generate_tests(
    task: Task,
    agent_config: AgentConfig,
    parallel: ParallelConfig,
    sandbox_factory: SandboxFactory,
    out_dir: Path,
    *,
    llm_limiter: Limiter | None = None,
    sandbox_limiter: Limiter | None = None,
    model_factory: Callable[[TrajectorySpec, Limiter | None], Model] = default_model_factory,
    timeout: float = GENERATED_TIMEOUT,
    executor: Executor | None = None,
    budget: Spending | None = None,
) -> list[TestCase]:
    """Run `parallel.n` test-writing trajectories for `task` and return one GENERATED test (EXIT_CODE)
    per distinct script they left behind, in trajectory order. Trajectory files go to
    `out_dir/<task id>/<i>.traj.json`; a trajectory that fails or writes no script contributes nothing.

    Each trajectory is a unit of `executor` (default: threads here, as `run_parallel`; Ray: a node each,
    whose engine runs its sandbox), so with a remote executor the factory, the model factory and the
    limiters must be picklable. With `budget`, each spends within it (`write_tests`)."""
    written = write_tests(
        task,
        agent_config,
        parallel,
        sandbox_factory,
        out_dir,
        llm_limiter=llm_limiter,
        sandbox_limiter=sandbox_limiter,
        model_factory=model_factory,
        executor=executor,
        budget=budget,
    )
    return tests_from_written(task, written, path=script_path(agent_config), timeout=timeout)


def write_tests(
    task: Task,
    agent_config: AgentConfig,
    parallel: ParallelConfig,
    sandbox_factory: SandboxFactory,
    out_dir: Path,
    *,
    llm_limiter: Limiter | None = None,
    sandbox_limiter: Limiter | None = None,
    model_factory: Callable[[TrajectorySpec, Limiter | None], Model] = default_model_factory,
    executor: Executor | None = None,
    budget: Spending | None = None,
) -> list[Written]:
    """What each test-writing trajectory left, in index order; one the budget did not allow to start
    ends in `BUDGET_EXHAUSTED` with no file and no script."""
    path = script_path(agent_config)
    jobs = [
        WriterJob(
            task,
            spec,
            sandbox_factory,
            out_dir,
            path,
            llm_limiter,
            sandbox_limiter,
            model_factory,
            delay=parallel.start_spread_s * spec.index / parallel.n,
        )
        for spec in plan(agent_config, parallel)
    ]
    runner = executor or LocalExecutor()
    workers = parallel.max_workers or parallel.n
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="test-writer") as pool:
        return list(pool.map(lambda job: run_within(runner, write_test, job, budget, _budgeted(job)), jobs))


def tests_from_written(
    task: Task, written: Sequence[Written], *, path: str, timeout: float = GENERATED_TIMEOUT
) -> list[TestCase]:
    """One GENERATED test per distinct script, run in the sandboxes' workdir."""
    scripts = {w.outcome.index: w.script for w in written if w.script is not None}
    workdirs = {w.workdir for w in written if w.workdir is not None}
    workdir = next(iter(workdirs)) if len(workdirs) == 1 else REPO_DIR
    outcomes = [w.outcome for w in written]
    return tests_from_scripts(task, scripts, outcomes, path=path, workdir=workdir, timeout=timeout)


def _budgeted(job: WriterJob) -> Budgeted:
    """A writer's spending: its cost limit reserved; what its outcome, or the file of an attempt whose
    worker died, says it spent (whichever says more: a trajectory that crashed reports nothing)."""
    path = trajectory_path(job.out_dir, job.task.id, job.spec.index)
    refusal = ErrorInfo(BUDGET_EXHAUSTED, "budget", "the run's budget does not allow another test writer")
    return Budgeted(
        unit=f"test_writer {job.spec.index}",
        reserve=job.spec.agent.limits.cost_limit,
        spent=lambda written: max(written.outcome.cost, read_state(path).cost),
        refused=lambda: Written(TrajectoryOutcome.failure(job.spec, path, refusal), None, None),
        lost=lambda: read_state(path).cost,
        before=lambda: set_aside(path),
    )


@dataclass(frozen=True)
class WriterJob:
    """One test-writing trajectory as a unit of work."""

    task: Task
    spec: TrajectorySpec
    sandboxes: SandboxFactory
    out_dir: Path
    script: str  # where the prompt asks for the script
    llm_limiter: Limiter | None = None
    sandbox_limiter: Limiter | None = None
    model_factory: Callable[[TrajectorySpec, Limiter | None], Model] = default_model_factory
    delay: float = 0.0


@dataclass(frozen=True)
class Written:
    """What one test-writing trajectory left: its outcome, its script (None: none), its sandbox's workdir."""

    outcome: TrajectoryOutcome
    script: str | None
    workdir: str | None


def write_test(job: WriterJob) -> Written:
    """Run one test-writing trajectory wherever the executor put it; the script is read from its sandbox
    right before that sandbox closes. Its failures are in the outcome, as `run_parallel`'s are."""
    left: dict[str, str | None] = {}

    @contextmanager
    def collecting(index: int) -> Iterator[Sandbox]:
        with job.sandboxes(index) as sandbox:
            try:
                yield sandbox
            finally:
                left["script"] = read_script(sandbox, job.script)
                left["workdir"] = sandbox.spec.workdir

    outcome = run_trajectory(
        job.task,
        job.spec,
        collecting,
        job.out_dir,
        job.llm_limiter,
        job.sandbox_limiter,
        job.model_factory,
        job.delay,
    )
    return Written(outcome, left.get("script"), left.get("workdir"))


def read_script(sandbox: Sandbox, path: str) -> str | None:
    """The script at `path` in the sandbox, or None when there is none (or it is empty or huge)."""
    try:
        data = sandbox.read_file(path)
    except (OSError, SandboxError):
        return None
    if not data.strip() or len(data) > MAX_SCRIPT_BYTES:
        return None
    return data.decode("utf-8", "replace")


def tests_from_scripts(
    task: Task,
    scripts: dict[int, str],
    outcomes: Sequence[TrajectoryOutcome],
    *,
    path: str,
    workdir: str = REPO_DIR,
    timeout: float = GENERATED_TIMEOUT,
) -> list[TestCase]:
    """One TestCase per distinct script, run as the prompt told the agent to run it."""
    by_index = {o.index: o for o in outcomes}
    tests: dict[str, TestCase] = {}
    for index in sorted(scripts):
        outcome = by_index.get(index)
        status = outcome.exit_status if outcome else "unknown"
        origin = f"{outcome.path if outcome else index} ({status})"
        test = TestCase.make(
            instance_id=task.id,
            kind=TestKind.GENERATED,
            contract=Contract.EXIT_CODE,
            command=f"cd {shlex.quote(workdir)} && python {shlex.quote(path)}",
            files={path: scripts[index]},
            origin=origin,
            timeout=timeout,
        )
        tests.setdefault(test.id, test)
    return list(tests.values())
