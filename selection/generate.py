"""Generated tests: test-writing trajectories that each leave one script with an exit-code contract.

The agent runs with its own prompt (`agent/config/test_writer.yaml`): write a standalone script at
`<scratch_dir>/patchfleet_test.py` that exits 0 when the issue is fixed and 2 when it is not, and run
it at the base commit. The script lives outside the repository, so it is never part of a patch; it is
read from each sandbox right before that sandbox closes (the factory given to `run_parallel` is
wrapped for this). Whether a script really reproduces the issue (exits 2 at the base commit) is decided
by the execution matrix's BASE row, not here.
"""

from __future__ import annotations

import posixpath
import shlex
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import yaml

from patchfleet.agent.config import AgentConfig, deep_merge, default_config_data
from patchfleet.agent.model import Limiter, Model
from patchfleet.agent.parallel import (
    ParallelConfig,
    SandboxFactory,
    TrajectoryOutcome,
    TrajectorySpec,
    default_model_factory,
    run_parallel,
)
from patchfleet.data.task import Task
from patchfleet.errors import SandboxError
from patchfleet.sandbox.base import REPO_DIR, Sandbox
from patchfleet.selection.model import Contract, TestCase, TestKind

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
) -> list[TestCase]:
    """Run `parallel.n` test-writing trajectories for `task` and return one GENERATED test (EXIT_CODE)
    per distinct script they left behind, in trajectory order. Trajectory files go to
    `out_dir/<task id>/<i>.traj.json`; a trajectory that fails or writes no script contributes nothing."""
    path = script_path(agent_config)
    scripts: dict[int, str] = {}
    workdirs: set[str] = set()
    lock = threading.Lock()

    @contextmanager
    def collecting(index: int) -> Iterator[Sandbox]:
        with sandbox_factory(index) as sandbox:
            try:
                yield sandbox
            finally:
                script = read_script(sandbox, path)
                with lock:
                    workdirs.add(sandbox.spec.workdir)
                    if script is not None:
                        scripts[index] = script

    outcomes = run_parallel(
        task,
        agent_config,
        parallel,
        sandbox_factory=collecting,
        out_dir=out_dir,
        llm_limiter=llm_limiter,
        sandbox_limiter=sandbox_limiter,
        model_factory=model_factory,
    )
    workdir = next(iter(workdirs)) if len(workdirs) == 1 else REPO_DIR
    return tests_from_scripts(task, scripts, outcomes, path=path, workdir=workdir, timeout=timeout)


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
