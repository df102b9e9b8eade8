"""The service in-process, in fake time: real signal handlers on the running loop, signals sent with os.kill."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from structlog.testing import capture_logs

from daemon.clock import Clock, FakeClock
from daemon.config import Config
from daemon.days import day_plan
from daemon.errors import ConfigError
from daemon.scheduler import ClockAlarm
from daemon.service import Notifier, ServiceLoop
from tests.doubles import RecordingRunner

TEHRAN = ZoneInfo("Asia/Tehran")
SATURDAY = date(2026, 11, 21)
FRIDAY = SATURDAY + timedelta(days=6)
DAY = timedelta(days=1)


def tehran(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=TEHRAN)


class Harness:
    """A service on a fake clock with recording runners (one per config it loads) and a config file to edit."""

    def __init__(self, tmp_path: Path, start: datetime, notifier: Notifier | None = None) -> None:
        self.path = tmp_path / "config.yaml"
        self.write({})
        self.clock = FakeClock(start)
        self.runners: list[RecordingRunner] = []
        self.service = ServiceLoop(
            self.path,
            self.clock,
            self.make_runner,
            alarm_factory=lambda _: ClockAlarm(self.clock),
            notifier=notifier or Notifier({}),
        )
        self.task: asyncio.Task[int] | None = None

    def write(self, schedule: dict[str, Any] | str) -> None:
        self.path.write_text(schedule if isinstance(schedule, str) else yaml.safe_dump({"schedule": schedule}))

    def make_runner(self, config: Config, clock: Clock) -> RecordingRunner:
        self.runners.append(RecordingRunner(config, clock))
        return self.runners[-1]

    def start(self) -> None:
        self.task = asyncio.create_task(self.service.run())

    async def at(self, moment: datetime) -> None:
        await self.clock.sleep_until(moment)

    @staticmethod
    def send(signum: int) -> None:
        os.kill(os.getpid(), signum)

    async def stop(self) -> int:
        assert self.task is not None
        self.send(signal.SIGTERM)
        return await asyncio.wait_for(self.task, timeout=7 * 86400)  # fake seconds


@pytest.mark.looptime
async def test_sigterm_during_the_fire_window_finishes_it_then_closes_the_runner(tmp_path: Path) -> None:
    h = Harness(tmp_path, tehran(SATURDAY, 8, 40))
    with capture_logs() as logs:
        h.start()
        await h.at(tehran(SATURDAY, 8, 45, 10))
        assert h.service.scheduler is not None and h.service.scheduler.in_window
        assert await h.stop() == 0
    plan = day_plan(h.service.config, SATURDAY)  # type: ignore[arg-type]
    runner = h.runners[0]
    assert [call.step for call in runner.calls if call.step != "refresh"] == [
        "warmup",
        "arm",
        "fire",
        "report",
        "aclose",
    ]
    assert runner.of("fire")[0].end == plan.window_end
    assert runner.of("aclose")[0].start >= runner.of("report")[0].end >= plan.window_end
    events = [e["event"] for e in logs]
    assert events[0] == "service started" and events[-1] == "service stopped"
    stopping = next(e for e in logs if e["event"] == "stopping")
    assert stopping["signal"] == "SIGTERM" and stopping["after_window"] is True
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers removed once stopped


@pytest.mark.looptime
async def test_sigint_outside_the_window_stops_at_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, tehran(FRIDAY, 12, 0))
    h.start()
    await h.at(tehran(FRIDAY, 13, 0))
    h.send(signal.SIGINT)
    assert await asyncio.wait_for(h.task, timeout=1) == 0  # type: ignore[arg-type]
    assert h.clock.now() == tehran(FRIDAY, 13, 0)
    assert [call.step for call in h.runners[0].calls] == ["aclose"]


@pytest.mark.looptime
async def test_sighup_with_an_invalid_config_keeps_the_running_schedule(tmp_path: Path) -> None:
    h = Harness(tmp_path, tehran(FRIDAY, 12, 0))
    with capture_logs() as logs:
        h.start()
        await h.at(tehran(FRIDAY, 13, 0))
        h.write({"warmup": "08:10", "arm_before_s": "soon"})
        h.send(signal.SIGHUP)
        await h.at(tehran(FRIDAY + DAY, 9, 0))
        assert await h.stop() == 0
    assert len(h.runners) == 1
    assert [call.start for call in h.runners[0].of("warmup")] == [tehran(FRIDAY + DAY, 8, 20)]
    refused = [e for e in logs if e["event"] == "config reload refused: the running schedule goes on"]
    assert len(refused) == 1 and refused[0]["signal"] == "SIGHUP"
    assert "schedule.arm_before_s" in refused[0]["reason"] and "\n" not in refused[0]["reason"]


@pytest.mark.looptime
async def test_sighup_with_a_valid_config_reschedules_with_a_new_runner(tmp_path: Path) -> None:
    h = Harness(tmp_path, tehran(FRIDAY, 12, 0))
    h.start()
    await h.at(tehran(FRIDAY, 13, 0))
    h.write({"warmup": "08:10"})
    h.send(signal.SIGHUP)
    await h.at(tehran(FRIDAY + DAY, 9, 0))
    assert await h.stop() == 0
    old, new = h.runners
    assert [call.step for call in old.calls] == ["aclose"] and old.calls[0].start == tehran(FRIDAY, 13, 0)
    assert [call.start for call in new.of("warmup")] == [tehran(FRIDAY + DAY, 8, 10)]
    assert new.days("fire") == [FRIDAY + DAY]


@pytest.mark.looptime
async def test_sighup_during_the_fire_window_reloads_after_it(tmp_path: Path) -> None:
    h = Harness(tmp_path, tehran(SATURDAY, 8, 40))
    h.start()
    await h.at(tehran(SATURDAY, 8, 45, 10))
    h.write({"warmup": "08:10"})
    h.send(signal.SIGHUP)
    await h.at(tehran(SATURDAY + DAY, 9, 0))
    assert await h.stop() == 0
    old, new = h.runners
    window_end = tehran(SATURDAY, 8, 45, 30)
    assert old.of("fire")[0].end == window_end and old.days("report") == [SATURDAY]
    assert old.of("aclose")[0].start >= window_end
    assert [call.start for call in new.of("warmup")] == [tehran(SATURDAY + DAY, 8, 10)]


@pytest.mark.looptime
async def test_systemd_hears_ready_status_watchdog_and_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.setblocking(False)
    messages: list[str] = []
    loop = asyncio.get_running_loop()
    loop.add_reader(receiver, lambda: messages.append(receiver.recv(4096).decode()))  # drained as systemd would
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "60000000"})
    h = Harness(tmp_path, tehran(SATURDAY, 8, 0), notifier=notifier)
    try:
        h.start()
        await h.at(tehran(SATURDAY, 9, 0))
        assert await h.stop() == 0
        loop.remove_reader(receiver)
        while True:  # what was sent after the reader's last turn is still queued on the socket
            try:
                messages.append(receiver.recv(4096).decode())
            except BlockingIOError:
                break
    finally:
        loop.remove_reader(receiver)
        receiver.close()
    assert messages[0] == "READY=1"
    statuses = [m.removeprefix("STATUS=") for m in messages if m.startswith("STATUS=")]
    assert statuses == [
        "waiting for warmup at 2026-11-21 08:20 +0330",
        "warming up",
        "arming for the open at 2026-11-21 08:45 +0330",
        "armed: firing at 2026-11-21 08:45 +0330",
        "reporting",
        "tracking the day's orders until 2026-11-21 12:30 +0330",  # stopped at 09:00, during order tracking
    ]
    # WATCHDOG_USEC=60 s: a ping every 30 s of the loop's (fake) time, from start to stop
    assert messages.count("WATCHDOG=1") == 121
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping"


@pytest.mark.looptime
async def test_an_invalid_config_at_start_is_a_user_error_before_ready(tmp_path: Path) -> None:
    h = Harness(tmp_path, tehran(SATURDAY, 8, 0))
    h.write({"trading_days": []})
    with pytest.raises(ConfigError, match="schedule.trading_days"):
        await h.service.run()
    assert h.runners == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
