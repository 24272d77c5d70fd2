"""The run's progress: plain lines when stdout is not a terminal, a live dashboard when it is."""

from __future__ import annotations

import io

from rich.console import Console

from patchfleet.runs.progress import LiveProgress, LogProgress, make_progress


def drive(progress) -> None:
    progress.start(tasks=2, trajectories=4, budget=10.0)
    progress.task("django__django-1", "image")
    progress.task("django__django-1", "trajectories")
    progress.task("astropy__astropy-2", "trajectories")
    progress.step("django__django-1", 0, 3, cost=0.25)
    progress.step("django__django-1", 1, 5, cost=0.5)
    progress.trajectory_done("django__django-1", 0, "Submitted")
    progress.trajectory_done("astropy__astropy-2", 0, "Submitted", resumed=True)
    progress.retry("astropy__astropy-2", "trajectory 1", "SandboxStartError")


def test_plain_lines_off_a_terminal():
    stream = io.StringIO()
    console = Console(file=stream, width=200)
    progress = make_progress(console)
    assert isinstance(progress, LogProgress)
    drive(progress)
    progress.task_done("django__django-1", "done")
    text = stream.getvalue()
    assert "django__django-1: trajectories" in text
    assert "astropy__astropy-2: trajectory 0 Submitted (from an earlier run)" in text
    assert "retrying trajectory 1 after SandboxStartError" in text
    assert "tasks 1/2, trajectories 2/4, cost $0.7500 of $10.00" in text
    assert "\x1b[" not in text  # no escape codes in a log file


def test_the_dashboard_shows_progress_cost_and_one_line_per_running_task():
    console = Console(file=io.StringIO(), width=160, force_terminal=True, record=True)
    progress = make_progress(console, live=True)
    assert isinstance(progress, LiveProgress)
    try:
        drive(progress)
        screen = Console(width=160, record=True, file=io.StringIO())
        screen.print(progress.render())
        text = screen.export_text()
    finally:
        progress.close()
    assert "trajectories 2/4" in text and "tasks 0/2" in text
    assert "cost $0.7500 / $10.00" in text
    assert "ETA" in text
    running = [line for line in text.splitlines() if line.startswith(("django", "astropy"))]
    assert len(running) == 2
    assert "trajectories" in running[1] and "#1:5" in running[1]  # django: trajectory 1 at call 5
    assert "outcomes: Submitted 2" in text and "infrastructure failures: 1" in text
