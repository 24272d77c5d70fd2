"""Progress of a long run: a live `rich` dashboard on a terminal (overall progress, cost, ETA, one line per
running task with its stage and step, outcome counts), plain log lines otherwise (CI, `| tee`, files).

The run reports events (`task`, `step`, `trajectory_done`, `task_done`, ...) to a `RunProgress`, which
only updates counters under a lock; the live view renders them a few times a second from its own thread,
so reporting costs the run next to nothing however often it happens.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

REFRESH_PER_SECOND = 2  # a render costs a few ms of CPU (16 running tasks): 2 Hz keeps it near 1% of a core


@dataclass
class TaskLine:
    stage: str
    detail: str = ""
    steps: dict[int, int] = field(default_factory=dict)  # trajectory index -> model calls so far
    started: float = field(default_factory=time.monotonic)


class RunProgress:
    """Thread-safe counters of a run; subclasses decide how they are shown. Also usable as is (silent)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total_tasks = 0
        self.total_trajectories = 0
        self.budget: float | None = None
        self.done_tasks = 0
        self.done_trajectories = 0
        self.skipped_tasks = 0  # finished in an earlier run (resume)
        self.cost = 0.0
        self.running: dict[str, TaskLine] = {}
        self.outcomes: Counter[str] = Counter()  # trajectory exit statuses
        self.infra: Counter[str] = Counter()  # infrastructure failures by class (retried or final)
        self.task_status: Counter[str] = Counter()
        self.started = time.monotonic()
        self._resumed_trajectories = 0

    # -- events -------------------------------------------------------------------------------------
    def start(self, tasks: int, trajectories: int, budget: float | None = None, spent: float = 0.0) -> None:
        with self._lock:
            self.total_tasks, self.total_trajectories = tasks, trajectories
            self.budget, self.cost = budget, spent
            self.started = time.monotonic()

    def task(self, instance_id: str, stage: str, detail: str = "") -> None:
        with self._lock:
            line = self.running.setdefault(instance_id, TaskLine(stage))
            line.stage, line.detail = stage, detail
        self._event(f"{instance_id}: {stage}" + (f" ({detail})" if detail else ""))

    def step(self, instance_id: str, index: int, calls: int, cost: float = 0.0) -> None:
        with self._lock:
            line = self.running.get(instance_id)
            if line is not None:
                line.steps[index] = calls
            self.cost += cost

    def trajectory_done(
        self,
        instance_id: str,
        index: int,
        exit_status: str,
        *,
        resumed: bool = False,
        kind: str | None = None,
    ) -> None:
        with self._lock:
            self.done_trajectories += 1
            self.outcomes[exit_status] += 1
            if kind == "infrastructure":
                self.infra[exit_status] += 1
            if resumed:
                self._resumed_trajectories += 1
            line = self.running.get(instance_id)
            if line is not None:
                line.steps.pop(index, None)
        self._event(
            f"{instance_id}: trajectory {index} {exit_status}" + (" (from an earlier run)" if resumed else "")
        )

    def retry(self, instance_id: str, what: str, error: str) -> None:
        with self._lock:
            self.infra[error] += 1
        self._event(f"{instance_id}: retrying {what} after {error}")

    def phase(self, name: str, detail: str = "") -> None:
        """A run-level stage after the tasks (evaluation): shown as a running line, never counted."""
        with self._lock:
            self.running[name] = TaskLine(detail or name)
        self._event(f"{name}" + (f": {detail}" if detail else ""))

    def phase_done(self, name: str, detail: str = "") -> None:
        with self._lock:
            self.running.pop(name, None)
        self._event(f"{name}: done" + (f" ({detail})" if detail else ""))

    def add_cost(self, usd: float) -> None:
        with self._lock:
            self.cost += usd

    def task_done(self, instance_id: str, status: str, detail: str = "", *, resumed: bool = False) -> None:
        with self._lock:
            self.running.pop(instance_id, None)
            self.done_tasks += 1
            self.skipped_tasks += resumed
            self.task_status[status] += 1
        self._event(f"{instance_id}: {status}" + (f" ({detail})" if detail else ""))

    def close(self) -> None:
        """Stop any live display (the final state stays on screen)."""

    # -- derived ------------------------------------------------------------------------------------
    def eta(self) -> float | None:
        """Seconds left, from the rate of trajectories run in this process (resumed ones cost nothing)."""
        with self._lock:
            ran = self.done_trajectories - self._resumed_trajectories
            left = self.total_trajectories - self.done_trajectories
        elapsed = time.monotonic() - self.started
        if ran <= 0 or elapsed <= 0:
            return None
        return left * elapsed / ran

    def summary_line(self) -> str:
        with self._lock:
            outcomes = ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common())
            budget = f" of ${self.budget:.2f}" if self.budget is not None else ""
            text = (
                f"tasks {self.done_tasks}/{self.total_tasks}, trajectories {self.done_trajectories}/"
                f"{self.total_trajectories}, cost ${self.cost:.4f}{budget}"
            )
        eta = self.eta()
        return (
            text
            + (f", ETA {_duration(eta)}" if eta is not None else "")
            + (f" [{outcomes}]" if outcomes else "")
        )

    def _event(self, line: str) -> None:
        """A notable event; the silent base class ignores it."""


class LogProgress(RunProgress):
    """One plain line per event, each followed by the overall counters every few events."""

    def __init__(self, console: Console | None = None, every: int = 1) -> None:
        super().__init__()
        self.console = console or Console()
        self.every = every
        self._events = 0

    def _event(self, line: str) -> None:
        self._events += 1
        stamp = time.strftime("%H:%M:%S")
        self.console.print(f"{stamp} {line}", markup=False, highlight=False, soft_wrap=True)
        if self._events % self.every == 0 and ("trajectory" in line or line.endswith(("done", "error"))):
            self.console.print(
                f"{stamp}   {self.summary_line()}", markup=False, highlight=False, soft_wrap=True
            )


class LiveProgress(RunProgress):
    """The live dashboard; rendered by rich's refresh thread from the counters."""

    def __init__(self, console: Console | None = None, title: str = "patchfleet batch") -> None:
        super().__init__()
        self.console = console or Console()
        self.title = title
        self._live = Live(_Renderable(self), console=self.console, refresh_per_second=REFRESH_PER_SECOND)
        self._live.start()

    def close(self) -> None:
        self._live.refresh()
        self._live.stop()

    def render(self) -> Group:
        with self._lock:
            total, done = max(self.total_trajectories, 1), self.done_trajectories
            running = sorted(self.running.items())
            outcomes = self.outcomes.most_common()
            infra = sum(self.infra.values())
            tasks = (self.done_tasks, self.total_tasks, self.skipped_tasks)
            cost, budget = self.cost, self.budget
        eta = self.eta()
        width = 30
        filled = int(width * done / total)
        header = Text()
        header.append(f"{self.title}  ", style="bold")
        header.append("█" * filled + "░" * (width - filled), style="green")
        header.append(f"  trajectories {done}/{self.total_trajectories}  tasks {tasks[0]}/{tasks[1]}")
        if tasks[2]:
            header.append(f" ({tasks[2]} from an earlier run)")
        header.append(f"  cost ${cost:.4f}" + (f" / ${budget:.2f}" if budget is not None else ""))
        header.append(f"  ETA {_duration(eta)}" if eta is not None else "  ETA -")
        table = Table(box=None, show_header=True, header_style="bold", expand=False, pad_edge=False)
        for column in ("task", "stage", "trajectories (calls)", "for"):
            table.add_column(column, no_wrap=True, overflow="ellipsis")
        now = time.monotonic()
        for instance_id, line in running[:20]:
            steps = " ".join(f"#{i}:{n}" for i, n in sorted(line.steps.items()))
            stage = line.stage + (f" {line.detail}" if line.detail else "")
            table.add_row(instance_id, stage, steps, _duration(now - line.started))
        if len(running) > 20:
            table.add_row(f"... {len(running) - 20} more", "", "", "")
        counts = Text("outcomes: " + (", ".join(f"{k} {v}" for k, v in outcomes) or "-"))
        if infra:
            counts.append(f"   infrastructure failures: {infra}", style="yellow")
        return Group(header, table, counts)


class _Renderable:
    def __init__(self, progress: LiveProgress) -> None:
        self.progress = progress

    def __rich__(self) -> Any:
        return self.progress.render()


def make_progress(console: Console | None = None, *, live: bool | None = None) -> RunProgress:
    """The live dashboard on a terminal, plain lines otherwise (`live` forces one or the other)."""
    console = console or Console()
    if live is None:
        live = console.is_terminal and not console.is_dumb_terminal
    return LiveProgress(console) if live else LogProgress(console)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
