"""`--executor ray`: each task of a batch runs as a Ray task, on whichever node Ray picks, with that node's
Docker engine; the files (a shared folder) and the ledger (a shared database, e.g. PostgreSQL, when the
nodes are several machines) are what the nodes have in common.

Two small actors keep the run whole: the budget (one for the cluster, so reservations from every node
add up) and a queue of progress events that the driver drains into its dashboard. Evaluation runs on the
driver afterwards. Ray is an optional extra: `pip install 'patchfleet[ray]'`.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from patchfleet.agent.loop import ErrorInfo
from patchfleet.agent.parallel import plan
from patchfleet.data.task import Task
from patchfleet.errors import ConfigError
from patchfleet.runs.batch import TaskResult, TaskRunner
from patchfleet.runs.budget import Budget
from patchfleet.runs.config import RunConfig
from patchfleet.runs.layout import RunLayout
from patchfleet.runs.ledger import Ledger
from patchfleet.runs.progress import RunProgress
from patchfleet.selection.model import Candidate

POLL_S = 0.5
# what workers on other machines need from the driver's environment (keys: the provider's usual variable)
FORWARDED_PREFIXES = ("LITELLM_", "PATCHFLEET_", "HF_")
FORWARDED_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
PROGRESS_EVENTS = ("task", "step", "trajectory_done", "retry", "add_cost", "task_done")


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray: pip install 'patchfleet[ray]'") from exc
    return ray


def forwarded_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name.startswith(FORWARDED_PREFIXES) or name in FORWARDED_NAMES or name.endswith("_API_KEY")
    }


def connect(address: str | None) -> None:
    """Join the cluster at `address` (host:port of a `ray start --head`), or start one on this machine."""
    ray = _ray()
    if ray.is_initialized():
        return
    if address and address != "auto":
        _check_reachable(address)
    try:
        ray.init(
            address=address or "local",
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": forwarded_env()},
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address or 'a new local one'}: {exc}") from exc


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's minute of connection retries, when nothing listens there."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


def run_tasks_on_ray(
    config: RunConfig,
    run_id: str,
    tasks: list[Task],
    budget: Budget,
    progress: RunProgress,
    others: dict[str, list[Candidate]],
) -> list[TaskResult]:
    """Every task as a Ray task, at most `config.workers` at once; results in task order. What the
    cluster spent is booked on `budget` at the end."""
    ray = _ray()
    connect(config.ray_address)
    budget_actor = ray.remote(max_concurrency=1024)(_BudgetActor).remote(budget.limit, budget.spent)
    events = ray.remote(_EventQueue).remote()
    remote = ray.remote(num_cpus=0, max_retries=0)(_run_task)
    before = budget.spent
    results: dict[str, TaskResult] = {}
    pending: dict[Any, Task] = {}
    queue = list(tasks)
    while queue or pending:
        while queue and len(pending) < config.workers:
            task = queue.pop(0)
            ref = remote.remote(config, run_id, task, others.get(task.id, []), budget_actor, events)
            pending[ref] = task
        done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        _replay(ray.get(events.drain.remote()), progress)
        for ref in done:
            task = pending.pop(ref)
            try:
                results[task.id] = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a worker that died, or a bug: this task only
                cause = getattr(exc, "cause", None) or exc
                results[task.id] = TaskResult(task.id, "error", error=ErrorInfo.of(cause).to_json())
                progress.task_done(task.id, "error", str(cause)[:120])
    _replay(ray.get(events.drain.remote()), progress)
    budget.add(ray.get(budget_actor.spent.remote()) - before)
    return [results[task.id] for task in tasks]


def _replay(items: list[tuple[str, tuple, dict]], progress: RunProgress) -> None:
    for name, args, kwargs in items:
        getattr(progress, name)(*args, **kwargs)


def _run_task(
    config: RunConfig, run_id: str, task: Task, others: list[Candidate], budget_actor: Any, events: Any
) -> TaskResult:
    """On a worker: this node's Docker, the shared ledger and folder, the cluster's budget."""
    from patchfleet.runs.wiring import build_services

    services = build_services(config, progress=_ForwardingProgress(events))
    ledger = Ledger(config.ledger_url())
    try:
        runner = TaskRunner(
            config,
            RunLayout(config.outputs.dir),
            run_id,
            ledger,
            _RemoteBudget(budget_actor),  # type: ignore[arg-type]
            services,
            plan(config.agent, config.parallel),
            {task.id: others},
        )
        return runner.run_task(task)
    finally:
        ledger.close()


class _BudgetActor:
    """The cluster's one budget (a threaded actor: a waiting reservation does not block the others)."""

    def __init__(self, limit: float | None, spent: float) -> None:
        self.budget = Budget(limit, spent)

    def reserve(self, amount: float) -> bool:
        return self.budget.reserve(amount)

    def settle(self, reserved: float, spent: float) -> None:
        self.budget.settle(reserved, spent)

    def spent(self) -> float:
        return self.budget.spent


class _RemoteBudget:
    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def reserve(self, amount: float) -> bool:
        return _ray().get(self.actor.reserve.remote(amount))

    def settle(self, reserved: float, spent: float) -> None:
        _ray().get(self.actor.settle.remote(reserved, spent))

    def add(self, spent: float) -> None:
        self.settle(0.0, spent)


class _EventQueue:
    def __init__(self) -> None:
        self.items: list[tuple[str, tuple, dict]] = []

    def put(self, name: str, args: tuple, kwargs: dict) -> None:
        self.items.append((name, args, kwargs))

    def drain(self) -> list[tuple[str, tuple, dict]]:
        items, self.items = self.items, []
        return items


class _ForwardingProgress(RunProgress):
    """A worker's progress: every event goes to the driver's queue (fire and forget)."""

    def __init__(self, events: Any) -> None:
        super().__init__()
        self.events = events


def _forward(name: str):
    def forward(self: _ForwardingProgress, *args: Any, **kwargs: Any) -> None:
        self.events.put.remote(name, args, kwargs)

    forward.__name__ = name
    return forward


for _name in PROGRESS_EVENTS:
    setattr(_ForwardingProgress, _name, _forward(_name))
