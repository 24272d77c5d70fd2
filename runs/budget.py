"""The global budget of a run: a trajectory starts only when what was spent, plus what running trajectories
may still spend (each reserves its `cost_limit`), plus its own reservation stays within the budget.

A reservation that does not fit waits for running trajectories to settle (they usually spend less than
they reserved); when nothing is running and it still does not fit, the budget is exhausted. Selection's
units that call a model (test writers, judgements) reserve and book the same way, through a task's
`TaskSpending`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path


class Budget:
    def __init__(self, limit: float | None, spent: float = 0.0) -> None:
        self.limit = limit
        self._spent = spent
        self._reserved = 0.0
        self._changed = threading.Condition()

    @property
    def spent(self) -> float:
        with self._changed:
            return self._spent

    @property
    def reserved(self) -> float:
        with self._changed:
            return self._reserved

    def reserve(self, amount: float) -> bool:
        """Hold `amount` for one trajectory; False when it can never fit (the budget is exhausted)."""
        with self._changed:
            if self.limit is None:
                self._reserved += amount
                return True
            while self._spent + self._reserved + amount > self.limit + 1e-12:
                if self._reserved <= 0:
                    return False
                self._changed.wait()
            self._reserved += amount
            return True

    def settle(self, reserved: float, spent: float) -> None:
        """Release a reservation and book what was actually spent."""
        with self._changed:
            self._reserved = max(0.0, self._reserved - reserved)
            self._spent += spent
            self._changed.notify_all()

    def add(self, spent: float) -> None:
        """Book a cost that had no reservation (selection, verifier)."""
        self.settle(0.0, spent)


SPEND_LOG = "spend.jsonl"  # <out>/<instance>/: what the task's selection booked, one unit a line


class TaskSpending:
    """One task's selection within the run's budget (`selection.units.Spending`): reservations and bookings
    go to the run's `Budget`; every booking is also appended to the task's spend log, the record of
    money spent that has no trajectory file of its own (judgements; test writers' files are replaced when
    selection runs again), which a resumed run starts from."""

    def __init__(
        self, budget: Budget, log: Path, on_spent: Callable[[float], None] = lambda usd: None
    ) -> None:
        self.budget, self.log, self.on_spent = budget, log, on_spent  # on_spent: the live display's cost
        self.refused = 0  # units the budget did not allow to start
        self._lock = threading.Lock()

    def reserve(self, amount: float) -> bool:
        if self.budget.reserve(amount):
            return True
        with self._lock:
            self.refused += 1
        return False

    def settle(self, reserved: float, spent: float, unit: str) -> None:
        self.budget.settle(reserved, spent)
        if spent:
            self.on_spent(spent)
            line = json.dumps({"unit": unit, "usd": spent, "at": datetime.now(UTC).isoformat()})
            with self._lock:
                self.log.parent.mkdir(parents=True, exist_ok=True)
                with self.log.open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")


def logged_spending(log: Path) -> dict[str, float]:
    """What a spend log books, by kind of unit ("test_writer", "judge"); a torn last line is skipped."""
    totals: dict[str, float] = {}
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return totals
    for text in lines:
        try:
            entry = json.loads(text)
            kind = str(entry["unit"]).split(" ")[0]
            totals[kind] = totals.get(kind, 0.0) + float(entry["usd"])
        except (ValueError, KeyError, TypeError):
            continue
    return totals
