"""Time as an injected object, so a whole trading day can be tested in a second.

Nothing outside this module reads the wall clock or the monotonic clock directly. Waiting for a wall
time goes through `sleep_until` too: the system clock naps on the event loop and re-reads the wall
clock, the fake clock waits on the event loop for the fake interval and then moves itself, so under
looptime (the tests' fast-forwarded event loop) a week of waiting passes in a moment.
"""

from __future__ import annotations

import asyncio
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

    async def sleep_until(self, when: datetime) -> None:
        """Return once `now()` has reached `when` (at once if it already has); coarse, for schedules."""


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_NAP_S = 60.0


def epoch_ns(moment: datetime) -> int:
    """An aware moment as nanoseconds since the epoch, exactly (float timestamps lose microseconds)."""
    if moment.tzinfo is None:
        raise ValueError("clocks need timezone-aware datetimes")
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


class SystemClock:
    """The real clocks of this machine."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep_until(self, when: datetime) -> None:
        """Naps of at most a minute on the loop's monotonic timer, so a wall-clock step is noticed soon."""
        while (left := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(left, MAX_NAP_S))


class FakeClock:
    """A clock tests move by hand; `step_wall` moves the wall clock alone, as an NTP step would."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 11, 21, 4, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._wall_ns = epoch_ns(start)
        self._mono_ns = 1_000_000_000_000

    def now(self) -> datetime:
        return EPOCH + timedelta(microseconds=self._wall_ns // 1000)

    def time_ns(self) -> int:
        return self._wall_ns

    def monotonic_ns(self) -> int:
        return self._mono_ns

    def advance(self, seconds: float | timedelta) -> None:
        if isinstance(seconds, timedelta):
            self._move_ns(seconds // timedelta(microseconds=1) * 1000)
        else:
            self._move_ns(int(seconds * 1_000_000_000))

    def _move_ns(self, step: int) -> None:
        self._wall_ns += step
        self._mono_ns += step

    def set(self, when: datetime) -> None:
        """Move both clocks forward to `when` (never backward: the monotonic clock cannot go back)."""
        target = epoch_ns(when)
        if target < self._wall_ns:
            raise ValueError("FakeClock.set cannot move time backward; use step_wall for wall-clock steps")
        self._move_ns(target - self._wall_ns)

    def step_wall(self, seconds: float) -> None:
        self._wall_ns += int(seconds * 1_000_000_000)

    async def sleep_until(self, when: datetime) -> None:
        """Wait on the event loop for the fake interval, then move this clock (never back) to `when`.

        Concurrent sleepers wake in the order of their deadlines, because the loop orders its timers;
        a test that moves the clock by hand meanwhile just makes the sleeper return sooner in fake time.
        """
        while (left := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(left)
            self._move_ns(max(0, epoch_ns(when) - self._wall_ns))
