"""Time as an injected object, so a whole trading day can be tested in a second.

Nothing outside this module reads the wall clock or the monotonic clock directly.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current wall time, timezone-aware (UTC)."""

    def time_ns(self) -> int:
        """Wall time in nanoseconds since the epoch."""

    def monotonic_ns(self) -> int:
        """A clock that never steps, for measuring and waiting."""


class SystemClock:
    """The real clocks of this machine."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


class FakeClock:
    """A clock tests move by hand; `step_wall` moves the wall clock alone, as an NTP step would."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 11, 21, 4, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._wall_ns = int(start.timestamp() * 1_000_000_000)
        self._mono_ns = 1_000_000_000_000

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall_ns / 1e9, UTC)

    def time_ns(self) -> int:
        return self._wall_ns

    def monotonic_ns(self) -> int:
        return self._mono_ns

    def advance(self, seconds: float | timedelta) -> None:
        delta = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        step = int(delta * 1_000_000_000)
        self._wall_ns += step
        self._mono_ns += step

    def set(self, when: datetime) -> None:
        """Move both clocks forward to `when` (never backward: the monotonic clock cannot go back)."""
        target = int(when.timestamp() * 1_000_000_000)
        if target < self._wall_ns:
            raise ValueError("FakeClock.set cannot move time backward; use step_wall for wall-clock steps")
        self.advance((target - self._wall_ns) / 1e9)

    def step_wall(self, seconds: float) -> None:
        self._wall_ns += int(seconds * 1_000_000_000)
