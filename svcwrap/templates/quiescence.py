"""consul-template's wait MIN:MAX: coalesce a burst of changes into one render.

After a change, render once MIN has passed without another one, but never
later than MAX after the first change of the burst (so a service that keeps
flapping still gets rendered). One window for all templates: changes to
several templates within it become one render pass and one reload.
The clock is the caller's (monotonic seconds), so tests need not sleep.
"""


class Quiescence:
    def __init__(self, low: float, high: float) -> None:
        self.low = low
        self.high = max(high, low)
        self.first: float | None = None   # when the burst began
        self.due_at: float | None = None

    def changed(self, now: float) -> None:
        if self.first is None:
            self.first = now
        assert self.first is not None
        self.due_at = min(now + self.low, self.first + self.high)

    @property
    def pending(self) -> bool:
        return self.due_at is not None

    def due(self, now: float) -> bool:
        return self.due_at is not None and now >= self.due_at

    def clear(self) -> None:
        """The pass ran (on time, or early for `svcwrap reload`)."""
        self.first = None
        self.due_at = None
