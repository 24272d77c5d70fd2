"""`patchfleet inspect RUN [TASK]`: a run's tasks, trajectories, candidates and decisions in the terminal.

Reads the same files as the HTML report (`runs.report.load_run`), so the two never disagree.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from patchfleet.errors import ConfigError
from patchfleet.runs.report import RunView, TaskView, load_run, task_rows


def inspect_run(folder: Path, task_id: str | None, trajectory: int | None, console: Console) -> None:
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a run folder")
    run = load_run(folder)
    if not run.tasks:
        raise ConfigError(f"{folder} holds no task folders (outcomes.json or decision.json)")
    if task_id is None and len(run.tasks) > 1:
        _overview(run, console)
        return
    task = run.tasks[0] if task_id is None else next((t for t in run.tasks if t.id == task_id), None)
    if task is None:
        known = ", ".join(t.id for t in run.tasks[:20])
        raise ConfigError(f"no task {task_id!r} in {folder} (tasks: {known})")
    if trajectory is not None:
        _trajectory(task, trajectory, console)
    else:
        _task(run, task, console)


def _overview(run: RunView, console: Console) -> None:
    meta = run.meta
    console.print(f"[bold]{run.folder}[/]  {meta.get('kind', 'run')}  model {meta.get('model', '?')}")
    table = Table("task", "submitted", "candidates", "chosen", "resolved", "cost")
    for task in run.tasks:
        rows = task_rows(run, task)
        submitted = sum(r["exit_status"] == "Submitted" for r in task.outcomes)
        resolved = rows["resolved"]
        table.add_row(
            task.id,
            f"{submitted}/{len(task.outcomes)}",
            str(len(task.candidates)),
            (task.decision.chosen or "-") if task.decision else "",
            "" if resolved is None else ("[green]yes[/]" if resolved else "[red]no[/]"),
            f"${sum(r['cost'] for r in task.outcomes):.4f}",
        )
    console.print(table)
    console.print("patchfleet inspect RUN TASK shows one task; add --trajectory N for one trajectory's steps")


def _task(run: RunView, task: TaskView, console: Console) -> None:
    rows = task_rows(run, task)
    console.print(Panel(f"[bold]{task.id}[/]", expand=False))
    trajectories = Table("#", "status", "steps", "cost", "temp", "candidate", "error", title="trajectories")
    for t in rows["trajectories"]:
        colour = "green" if t["status"] == "Submitted" else "red"
        trajectories.add_row(
            str(t["index"]),
            f"[{colour}]{t['status']}[/]",
            str(t["steps"]),
            f"${t['cost']:.4f}",
            "" if t["temperature"] is None else f"{t['temperature']:g}",
            t["candidate"] or "",
            t["error"][:60],
        )
    console.print(trajectories)
    candidates = Table(
        "candidate", "rank", "votes", "cluster", "tests", "verifier", "size", "flags", "resolved"
    )
    for c in rows["candidates"]:
        style = "bold green" if c["chosen"] else None
        candidates.add_row(
            c["id"] + (" *" if c["chosen"] else ""),
            str(c["rank"] or ""),
            str(c["votes"]),
            c["cluster"],
            f"{c['passed']}/{c['tests']}",
            "" if c["verifier"] is None else f"{c['verifier']:.2f}",
            str(c["size"]),
            c["flags"],
            "" if c["resolved"] is None else ("yes" if c["resolved"] else "no"),
            style=style,
        )
    console.print(candidates)
    decision = rows["decision"]
    if decision is not None:
        console.print(f"[bold]decision[/] ({decision.policy}): {decision.chosen or 'no patch'}")
        for reason in decision.reasons:
            console.print(f"  - {reason}", markup=False, highlight=False)
    if rows["patch"]:
        console.print(Syntax(rows["patch"], "diff", theme="ansi_dark", word_wrap=True))


def _trajectory(task: TaskView, index: int, console: Console) -> None:
    from patchfleet.agent import read_trajectory

    row = next((r for r in task.outcomes if r["index"] == index), None)
    if row is None or not row.get("trajectory"):
        raise ConfigError(f"{task.id} has no trajectory #{index} file")
    document = read_trajectory(Path(row["trajectory"]))
    info = document.get("info", {})
    console.print(
        f"[bold]{task.id} #{index}[/]: {info.get('exit_status')} after {row['steps']} step(s), "
        f"${row['cost']:.4f}"
    )
    for message in document.get("messages", [])[2:]:  # after the system and instance prompts
        content = str(message.get("content") or "")
        if message.get("role") == "assistant":
            console.print(Panel(Text(content.strip()), title="model", border_style="cyan"))
        else:
            text = content.strip()
            console.print(
                Panel(Text(text[:1500] + (" ..." if len(text) > 1500 else "")), title="observation")
            )
    if row.get("patch"):
        console.print(Syntax(row["patch"], "diff", theme="ansi_dark", word_wrap=True))
