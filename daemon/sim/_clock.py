"""The simulator's view of time: any object with `time_ns` and `monotonic_ns`, so it needs none of the daemon's.

The daemon's clocks (`daemon.clock.SystemClock`, `FakeClock`) fit this shape, so a test can hand the
simulator and the daemon one fake clock; `HostClock` is what the simulator uses when given none.
"""

from __future__ import annotations

import time
from typing import Protocol


class SimClock(Protocol):
    def time_ns(self) -> int:
        """Wall time in nanoseconds since the epoch."""

    def monotonic_ns(self) -> int:
        """A clock that never steps, for spacing and windows."""


class HostClock:
    """This machine's clocks: the one place in the simulator that reads them."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()
