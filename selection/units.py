"""Selection's work that needs a node, as units of an `executor.Executor`: regression discovery (a
container at the base commit), the sandboxes of test-writing trajectories, and one verifier judgement.

With `--executor ray` each runs on a node of the cluster with that node's Docker engine, as the matrix
rows do (`execution._Runner.run_row`); so every field here is picklable there: the backend and the
verifier are `executor.OnNode`s, `prepare` makes sure of the image on the node. With the local executor
they run in this process, exactly as before.

Units that call a model (test writers, judgements) spend within the run's budget when one is given
(`Spending`): each holds a reservation, taken here on the driver before it starts and settled with what
it spent, as the batch's trajectories do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from patchfleet.data.task import Task
from patchfleet.errors import WorkerLost
from patchfleet.executor import Executor
from patchfleet.sandbox.base import Sandbox, SandboxSpec
from patchfleet.selection.model import Candidate, TestCase, VerifierScore

T = TypeVar("T")
R = TypeVar("R")

BUDGET_EXHAUSTED = "BudgetExhausted"  # a unit the run's budget did not allow to start, as a trajectory's


class Spending(Protocol):
    """The run's budget as selection spends it (a batch's per-task view of `runs.budget.Budget`)."""

    def reserve(self, amount: float) -> bool:
        """Hold `amount` for one unit, waiting for running ones to settle; False: it can never fit."""
        ...

    def settle(self, reserved: float, spent: float, unit: str) -> None:
        """Release a reservation and book what the unit (e.g. "test_writer 0") really spent."""
        ...


@dataclass(frozen=True)
class Budgeted:
    """How one unit that calls a model spends: what it reserves, what it spent (from its result, or, when
    its worker died, from what it left behind), and what stands for it when the budget refuses it."""

    unit: str  # as the booking names it, e.g. "test_writer 0"
    reserve: float  # the unit's own cost limit
    spent: Callable[[Any], float]
    refused: Callable[[], Any]
    lost: Callable[[], float] = lambda: 0.0  # what an attempt whose worker died spent, as far as known
    before: Callable[[], object] = lambda: None  # before each attempt (e.g. set an earlier file aside)


LOST_ATTEMPTS = 4  # runs of a unit whose worker keeps dying, as `RayExecutor.map` gives mapped units


def run_within(
    executor: Executor, fn: Callable[[T], R], item: T, budget: Spending | None, how: Budgeted
) -> R:
    """`fn(item)` as a unit of `executor`, each attempt within a reservation of `how.reserve` that is
    settled with what that attempt spent. An attempt whose worker died is booked with what it left
    behind (money spent twice is spent) and run again; the budget refusing one returns `how.refused()`."""

    def attempt() -> R:
        how.before()
        reserved = how.reserve if budget is not None else 0.0
        if budget is not None and not budget.reserve(reserved):
            return how.refused()
        spent = 0.0
        try:
            result = executor.run(fn, item)
            spent = how.spent(result)
            return result
        except WorkerLost:
            spent = how.lost()
            raise
        finally:
            if budget is not None:
                budget.settle(reserved, spent, how.unit)

    retrying = Retrying(
        retry=retry_if_exception_type(WorkerLost),
        stop=stop_after_attempt(LOST_ATTEMPTS),
        wait=wait_exponential(multiplier=1, max=20),
        reraise=True,
    )
    return retrying(attempt)


@dataclass(frozen=True)
class RegressionJob:
    """Regression discovery for one instance: the files its candidates change, most changed first."""

    instance_id: str
    image: str
    backend: Any  # a SandboxStarter, or an OnNode of one
    changed: tuple[str, ...]
    budget_s: float
    runner: str
    sandbox_env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[], object] | None = None  # on a node: the image there, before the container


def discover_regression(job: RegressionJob) -> list[TestCase]:
    """The repository's passing tests near the changed files, found in one container at the base commit."""
    from patchfleet.selection.regression import discover_regression_tests

    if job.prepare is not None:
        job.prepare()
    labels = {"role": "regression", "task": job.instance_id}
    with job.backend.start(SandboxSpec(image=job.image, labels=labels, env=dict(job.sandbox_env))) as sandbox:
        return discover_regression_tests(
            sandbox, job.changed, instance_id=job.instance_id, budget_s=job.budget_s, runner=job.runner
        )


@dataclass(frozen=True)
class WriterSandboxes:
    """The sandbox factory of test-writing trajectories (`agent.parallel.SandboxFactory`), picklable."""

    instance_id: str
    image: str
    backend: Any
    sandbox_env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[], object] | None = None

    def __call__(self, index: int) -> Sandbox:
        if self.prepare is not None:  # here, so that an image that fails is this trajectory's failure
            self.prepare()
        labels = {"role": "test-writer", "task": self.instance_id, "trajectory": str(index)}
        return self.backend.start(SandboxSpec(image=self.image, labels=labels, env=dict(self.sandbox_env)))


def judge(verifier: Any, task: Task, item: tuple[Candidate, str | None]) -> VerifierScore:
    """One candidate's verifier score (`verifier`: a `Verifier`, or an OnNode of one). The condensed
    trajectory comes as text, read where the trajectory file is (the driver)."""
    candidate, trajectory = item
    return verifier.score(task, candidate, trajectory=trajectory)
