"""A clock for tests that moves only when told to: pass it as ``start(clock=...)``.

Everything in the double that waits (TTL timers, the reaper, deferred output sync, blocking
``wait``) reads this clock, so a test can let five minutes pass at once::

    clock = ManualClock()
    with start(clock=clock) as double:
        clock.attach(double.state)
        ...
        clock.advance(300)  # every waiter re-reads the clock at once
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .state import AgentState


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._state: Optional["AgentState"] = None

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def attach(self, state: "AgentState") -> None:
        """Wake ``state``'s waiters whenever the clock moves."""
        self._state = state

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
        if self._state is not None:
            self._state.tick()
