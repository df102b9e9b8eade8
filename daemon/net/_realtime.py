"""Real-time priority for the instant: SCHED_FIFO with the memory locked, from the final check to the end of the
first-send loop, so the wake at the instant is not late because the process was descheduled or page-faulted.

It lives in net beside what it serves, the last spin of `wait_until_monotonic` and `fire_all`'s write loop; the
executor only says when the window starts and ends. Only the calling thread is raised (Linux schedules threads):
the event loop's. `SCHED_RESET_ON_FORK` keeps a worker thread started inside the window (the journal's writes)
at normal priority. Not being permitted (no RLIMIT_RTPRIO / RLIMIT_MEMLOCK, no CAP_SYS_NICE / CAP_IPC_LOCK,
systemd's RestrictRealtime=) is one log line and the open goes on at normal priority.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from daemon.clock import Clock
from daemon.logs import get_logger

log = get_logger("realtime")
RealtimeMode = Literal["auto", "on", "off"]
MCL_CURRENT, MCL_FUTURE = 1, 2  # <sys/mman.h> on Linux


@dataclass(frozen=True)
class OsCalls:
    """The calls a window makes on the OS, injectable so tests see them without privileges."""

    get_scheduler: Callable[[], int]
    get_priority: Callable[[], int]
    set_scheduler: Callable[[int, int], None]
    lock_memory: Callable[[], None]
    unlock_memory: Callable[[], None]


def _libc_call(name: str, *args: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def system_calls() -> OsCalls:
    """The real calls: os.sched_* on this thread, mlockall/munlockall from libc (Python has no binding)."""
    return OsCalls(
        get_scheduler=lambda: os.sched_getscheduler(0),
        get_priority=lambda: os.sched_getparam(0).sched_priority,
        set_scheduler=lambda policy, priority: os.sched_setscheduler(0, policy, os.sched_param(priority)),
        lock_memory=lambda: _libc_call("mlockall", MCL_CURRENT | MCL_FUTURE),
        unlock_memory=lambda: _libc_call("munlockall"),
    )


class RealtimeWindow:
    """`with window:` runs the body at SCHED_FIFO `priority` with memory locked, then restores the policy it found.

    Held from the first `__enter__` to the first `__exit__`: the executor enters it before the final check and
    again around the first-send loop (when `fire` runs alone); the loop's end leaves it, and the outer exit has
    nothing left to undo. auto: used when permitted; on: not getting it is an error, and the open goes on; off:
    no call is made.
    """

    def __init__(self, mode: RealtimeMode, priority: int, clock: Clock, calls: OsCalls | None = None) -> None:
        self.mode, self.priority, self.clock = mode, priority, clock
        self.calls = calls or system_calls()
        self._old: tuple[int, int] | None = None  # the policy and priority to restore
        self._locked = False
        self._since_ns = 0
        self.held = False

    def __enter__(self) -> RealtimeWindow:
        if self.mode != "off" and not self.held:
            self._take()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.leave(keep_memory=True)

    def _take(self) -> None:
        calls, failed = self.calls, []
        self.held, self._since_ns = True, self.clock.monotonic_ns()
        try:
            old = (calls.get_scheduler(), calls.get_priority())
            calls.set_scheduler(os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, self.priority)
            self._old = old
        except OSError as exc:
            failed.append(f"SCHED_FIFO {self.priority}: {exc.strerror or exc}")
        try:
            calls.lock_memory()
            self._locked = True
        except OSError as exc:
            failed.append(f"mlockall: {exc.strerror or exc}")
            try:
                calls.unlock_memory()  # nothing half-locked (MCL_FUTURE) is left behind
            except OSError:
                pass
        if failed:  # one line for the window, whatever failed
            (log.error if self.mode == "on" else log.info)(
                "realtime.not_permitted",
                mode=self.mode,
                failed="; ".join(failed),
                consequence="the open goes on" + (" without real-time priority" if self._old is None else ""),
                fix="README: Real-time priority",
            )

    def leave(self, keep_memory: bool = False) -> None:
        """Back to the policy found at the start, memory unlocked unless `keep_memory`; nothing when not held.

        The first-send loop's end keeps the memory locked: munlockall costs milliseconds (3.8 ms measured at
        80 MB), which right after the loop would delay reading the first answers. `release_memory` unlocks it
        when the window has closed."""
        if not self.held:
            if not keep_memory:
                self.release_memory()
            return
        self.held = False
        restored = self._old is not None
        if self._old is not None:
            policy, priority = self._old
            self._old = None
            try:
                self.calls.set_scheduler(policy, priority)
            except OSError as exc:  # lowering one's own policy is always allowed: this is unexpected
                log.error("realtime.restore_failed", reason=str(exc))
        if not keep_memory:
            self.release_memory()
        if restored:
            log.info("realtime.left", held_ms=round((self.clock.monotonic_ns() - self._since_ns) / 1e6, 3))

    def release_memory(self) -> None:
        """munlockall, once, if the window locked memory (idempotent)."""
        if self._locked:
            self._locked = False
            try:
                self.calls.unlock_memory()
            except OSError as exc:
                log.error("realtime.unlock_failed", reason=str(exc))
