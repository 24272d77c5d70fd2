"""Selection's work that needs a node, as units of an `executor.Executor`: regression discovery (a
container at the base commit), the sandboxes of test-writing trajectories, and one verifier judgement.

With `--executor ray` each runs on a node of the cluster with that node's Docker engine, as the matrix
rows do (`execution._Runner.run_row`); so every field here is picklable there: the backend and the
verifier are `executor.OnNode`s, `prepare` makes sure of the image on the node. With the local executor
they run in this process, exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from patchfleet.data.task import Task
from patchfleet.sandbox.base import Sandbox, SandboxSpec
from patchfleet.selection.model import Candidate, TestCase, VerifierScore


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
