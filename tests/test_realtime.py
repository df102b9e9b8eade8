"""The real-time window: SCHED_FIFO and locked memory set and given back, never an error that stops the open."""

from __future__ import annotations

import os

import pytest
from structlog.testing import capture_logs

from daemon.clock import FakeClock
from daemon.net import OsCalls, RealtimeWindow

FIFO = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK


class FakeOs:
    """Records every call; `refuse` names the calls that fail with EPERM (and ENOMEM for mlockall, as Linux does
    past a small RLIMIT_MEMLOCK)."""

    def __init__(self, refuse: tuple[str, ...] = (), policy: int = os.SCHED_OTHER, priority: int = 0) -> None:
        self.calls: list[tuple] = []
        self.refuse, self.policy, self.priority = refuse, policy, priority

    def _maybe_refuse(self, name: str, code: int) -> None:
        if name in self.refuse:
            raise OSError(code, os.strerror(code))

    def set_scheduler(self, policy: int, priority: int) -> None:
        self.calls.append(("set_scheduler", policy, priority))
        self._maybe_refuse("set_scheduler", 1)
        self.policy, self.priority = policy, priority

    def lock(self) -> None:
        self.calls.append(("mlockall",))
        self._maybe_refuse("mlockall", 12)

    def unlock(self) -> None:
        self.calls.append(("munlockall",))

    def os_calls(self) -> OsCalls:
        return OsCalls(lambda: self.policy, lambda: self.priority, self.set_scheduler, self.lock, self.unlock)


def window(fake: FakeOs, mode: str = "auto", priority: int = 20, clock: FakeClock | None = None) -> RealtimeWindow:
    return RealtimeWindow(mode, priority, clock or FakeClock(), fake.os_calls())  # type: ignore[arg-type]


def test_the_policy_is_set_and_restored_and_memory_locked_and_unlocked():
    fake, clock = FakeOs(policy=os.SCHED_BATCH, priority=0), FakeClock()
    with capture_logs() as logs, window(fake, priority=33, clock=clock) as w:
        assert w.held and fake.calls == [("set_scheduler", FIFO, 33), ("mlockall",)]
        clock.advance(1.5)
    assert fake.calls[2:] == [("set_scheduler", os.SCHED_BATCH, 0)]  # memory stays locked past the loop's end
    assert (fake.policy, w.held) == (os.SCHED_BATCH, False)
    assert [(e["event"], e["held_ms"]) for e in logs] == [("realtime.left", 1500.0)]
    w.release_memory()  # when the window has closed
    w.release_memory()
    assert fake.calls[3:] == [("munlockall",)]


def test_held_from_the_first_enter_to_the_first_exit():
    fake = FakeOs()
    outer = window(fake)
    with outer:
        with outer:  # fire's loop inside run_after_arm's final check: no second set
            assert fake.calls == [("set_scheduler", FIFO, 20), ("mlockall",)]
        assert not outer.held and fake.calls[2:] == [("set_scheduler", os.SCHED_OTHER, 0)]
    assert len(fake.calls) == 3  # the outer exit has nothing left to undo
    outer.leave()  # the executor's close: the memory too
    assert fake.calls[3:] == [("munlockall",)]


@pytest.mark.parametrize(("mode", "level"), [("auto", "info"), ("on", "error")])
def test_not_permitted_is_one_line_and_never_raised(mode, level):
    fake = FakeOs(refuse=("set_scheduler", "mlockall"))
    with capture_logs() as logs, window(fake, mode=mode):
        pass
    assert [(e["event"], e["log_level"]) for e in logs] == [("realtime.not_permitted", level)]
    assert "SCHED_FIFO 20: Operation not permitted" in logs[0]["failed"] and "mlockall" in logs[0]["failed"]
    # nothing restored that was never set; a failed mlockall leaves nothing half-locked
    assert fake.calls == [("set_scheduler", FIFO, 20), ("mlockall",), ("munlockall",)]


def test_the_priority_alone_is_kept_when_memory_cannot_be_locked():
    fake = FakeOs(refuse=("mlockall",))
    with capture_logs() as logs, window(fake):
        assert fake.policy == FIFO
    assert fake.policy == os.SCHED_OTHER
    assert [e["event"] for e in logs] == ["realtime.not_permitted", "realtime.left"]
    assert logs[0]["failed"] == "mlockall: Cannot allocate memory"


def test_off_makes_no_call():
    fake = FakeOs()
    with capture_logs() as logs, window(fake, mode="off") as w:
        assert not w.held
    assert fake.calls == [] and logs == []


def test_the_real_calls_when_permitted():
    """As root (or with RLIMIT_RTPRIO and RLIMIT_MEMLOCK) the thread really runs SCHED_FIFO inside, then as before."""
    before = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    window = RealtimeWindow("auto", 20, FakeClock())
    with capture_logs() as logs, window:
        inside = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
        locked = _status("VmLck")
    window.release_memory()
    if any(e["event"] == "realtime.not_permitted" for e in logs):
        pytest.skip(f"real-time priority is not permitted here: {logs[0]['failed']}")
    assert inside == (FIFO, 20) and locked > 0
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before
    assert _status("VmLck") == 0


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))
