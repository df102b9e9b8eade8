"""A clock read from the event loop's own time, for whole opens in fake time under looptime."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.clock import EPOCH, Clock, SystemClock, epoch_ns

NS = 1_000_000_000


class LoopClock:
    """Wall and monotonic time both read from the running loop's `time()`.

    Under looptime (`@pytest.mark.looptime`) the loop's time moves only by sleeps and timeouts, and I/O takes
    none of it: a simulator and a daemon sharing this clock see one timeline, the open comes the moment
    everything waits for it, and a test of a whole window takes as long as its work. `virtual` tells
    waits that spin on the clock to sleep to the instant instead: a spin never sees fake time move.
    """

    virtual = True

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 11, 21, 4, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("LoopClock needs a timezone-aware start time")
        self._start_wall_ns = epoch_ns(start)
        self._start_loop_ns: int | None = None

    def _elapsed_ns(self) -> int:
        loop_ns = int(asyncio.get_event_loop().time() * NS)
        if self._start_loop_ns is None:
            self._start_loop_ns = loop_ns
        return loop_ns - self._start_loop_ns

    def now(self) -> datetime:
        return EPOCH + timedelta(microseconds=self.time_ns() // 1000)

    def time_ns(self) -> int:
        return self._start_wall_ns + self._elapsed_ns()

    def monotonic_ns(self) -> int:
        return 1_000_000_000_000 + self._elapsed_ns()

    async def sleep_until(self, when: datetime) -> None:
        while (left := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(left)


def daemon_clock(sim: Any) -> Clock:
    """The daemon's clock for a test against `sim`: the simulator's own LoopClock (one fake timeline for both),
    else the system clock."""
    return sim.clock if isinstance(sim.clock, LoopClock) else SystemClock()
