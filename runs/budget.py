"""The global budget of a run: a trajectory starts only when what was spent, plus what running trajectories
may still spend (each reserves its `cost_limit`), plus its own reservation stays within the budget.

A reservation that does not fit waits for running trajectories to settle (they usually spend less than
they reserved); when nothing is running and it still does not fit, the budget is exhausted.
"""

from __future__ import annotations

import threading


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
