"""The `track` step through the real scheduler in fake time: after the report, on the tracking cadence, until the
close or until the runner says every order has ended; a start inside tracking hours goes straight to it; a stop
during tracking ends it at once."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from daemon.clock import FakeClock
from daemon.config import Config, validate_config
from daemon.days import day_plan, phase_at
from daemon.scheduler import ClockAlarm, DayScheduler
from tests.doubles import RecordingRunner

TEHRAN = ZoneInfo("Asia/Tehran")
SATURDAY = date(2026, 11, 21)
DAY = timedelta(days=1)


def config(**tracking: object) -> Config:
    return validate_config({"tracking": tracking})


def tehran(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=TEHRAN)


async def run_until(cfg: Config, clock: FakeClock, runner: RecordingRunner, until: datetime) -> DayScheduler:
    scheduler = DayScheduler(cfg, runner, clock, ClockAlarm(clock))
    scheduler.start()
    await clock.sleep_until(until)
    await scheduler.stop()
    return scheduler


def tracks(runner: RecordingRunner, day: date) -> list[datetime]:
    return [call.start for call in runner.of("track") if call.day == day]


@pytest.mark.looptime
async def test_tracking_follows_the_report_on_its_cadence_to_the_close_then_the_next_day_goes_on() -> None:
    cfg = config()
    clock = FakeClock(tehran(SATURDAY, 8, 0))
    runner = RecordingRunner(cfg, clock)
    await run_until(cfg, clock, runner, tehran(SATURDAY + DAY, 8, 50))
    beats = tracks(runner, SATURDAY)
    report = runner.of("report")[0]
    assert beats[0] == report.start == tehran(SATURDAY, 8, 45, 30)  # at once after the report
    assert beats[1:3] == [tehran(SATURDAY, 8, 46), tehran(SATURDAY, 8, 46, 30)]
    assert beats[-3:] == [tehran(SATURDAY, 12, 20), tehran(SATURDAY, 12, 25), tehran(SATURDAY, 12, 30)]
    assert len(beats) == 29 + 42 + 1 == len(runner.finals[: len(beats)])
    assert runner.finals[: len(beats)] == [False] * (len(beats) - 1) + [True]  # only the close's beat is final
    steps = [c.step for c in runner.calls if c.day == SATURDAY + DAY and c.step not in ("refresh", "track")]
    assert steps == ["warmup", "arm", "fire", "report"]  # Sunday as usual


@pytest.mark.looptime
async def test_the_configured_cadence_and_close_are_kept() -> None:
    cfg = validate_config(
        {"schedule": {"close": "10:00"}, "tracking": {"every_s": 60, "until": "08:50", "then_every_s": 1800}}
    )
    clock = FakeClock(tehran(SATURDAY, 8, 0))
    runner = RecordingRunner(cfg, clock)
    await run_until(cfg, clock, runner, tehran(SATURDAY, 11, 0))
    assert tracks(runner, SATURDAY) == [
        tehran(SATURDAY, 8, 45, 30),
        *(tehran(SATURDAY, 8, 46, 30) + timedelta(minutes=n) for n in range(4)),  # 08:46:30 ... 08:49:30
        tehran(SATURDAY, 8, 50),
        tehran(SATURDAY, 9, 20),
        tehran(SATURDAY, 9, 50),
        tehran(SATURDAY, 10, 0),
    ]


@pytest.mark.looptime
async def test_tracking_ends_early_once_every_order_has_ended_and_the_day_is_not_tracked_again() -> None:
    cfg = config()
    clock = FakeClock(tehran(SATURDAY, 8, 0))
    runner = RecordingRunner(cfg, clock, track_beats=3)
    with capture_logs() as logs:
        await run_until(cfg, clock, runner, tehran(SATURDAY + DAY, 8, 0))
    assert tracks(runner, SATURDAY) == [
        tehran(SATURDAY, 8, 45, 30),
        tehran(SATURDAY, 8, 46),
        tehran(SATURDAY, 8, 46, 30),
    ]
    assert runner.finals == [False, False, False]
    done = [e for e in logs if e["event"] == "track done"]
    assert len(done) == 1 and done[0]["ended_early"] is True
    assert [e for e in logs if e["event"] == "waiting for warmup"][-1]["warmup"] == tehran(
        SATURDAY + DAY, 8, 20
    ).isoformat()


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("start", "first"),
    [
        (tehran(SATURDAY, 8, 45, 30), tehran(SATURDAY, 8, 45, 30)),  # the window's end itself
        (tehran(SATURDAY, 8, 50, 10), tehran(SATURDAY, 8, 50, 30)),
        (tehran(SATURDAY, 10, 2), tehran(SATURDAY, 10, 5)),
        (tehran(SATURDAY, 12, 29, 59), tehran(SATURDAY, 12, 30)),
    ],
)
async def test_a_start_inside_tracking_hours_goes_straight_to_tracking(start: datetime, first: datetime) -> None:
    cfg = config()
    clock = FakeClock(start)
    runner = RecordingRunner(cfg, clock)
    with capture_logs() as logs:
        await run_until(cfg, clock, runner, tehran(SATURDAY, 13, 0))
    assert [c.step for c in runner.calls if c.day == SATURDAY] == ["track"] * len(tracks(runner, SATURDAY))
    assert tracks(runner, SATURDAY)[0] == first and tracks(runner, SATURDAY)[-1] == tehran(SATURDAY, 12, 30)
    assert runner.finals[-1] is True
    assert any(e["event"] == "started after the fire window: tracking the day's orders" for e in logs)


@pytest.mark.looptime
async def test_after_the_close_or_with_tracking_off_a_start_waits_for_the_next_day() -> None:
    for cfg, start in ((config(), tehran(SATURDAY, 12, 30)), (config(enabled=False), tehran(SATURDAY, 10, 0))):
        clock = FakeClock(start)
        runner = RecordingRunner(cfg, clock)
        await run_until(cfg, clock, runner, tehran(SATURDAY + DAY, 8, 30))
        assert runner.of("track") == [] and runner.days("warmup") == [SATURDAY + DAY]
        assert phase_at(cfg, start).name == "after_window"


@pytest.mark.looptime
async def test_a_stop_during_tracking_ends_it_at_once() -> None:
    cfg = config()
    clock = FakeClock(tehran(SATURDAY, 9, 0))
    runner = RecordingRunner(cfg, clock, takes={"track": 20})  # a slow read: the stop comes in the middle of one
    scheduler = DayScheduler(cfg, runner, clock, ClockAlarm(clock))
    scheduler.start()
    await clock.sleep_until(tehran(SATURDAY, 9, 5, 10))
    assert not scheduler.in_window  # tracking is not the window: a stop does not wait for it
    await scheduler.stop()
    assert clock.now() == tehran(SATURDAY, 9, 5, 10)
    assert tracks(runner, SATURDAY) == [tehran(SATURDAY, 9, 0), tehran(SATURDAY, 9, 5)]
    assert runner.of("track")[-1].end is None  # cut short; the journal already has every change before it
    await clock.sleep_until(tehran(SATURDAY, 10, 0))
    assert len(runner.of("track")) == 2


@pytest.mark.looptime
async def test_a_failing_beat_is_one_log_line_and_the_next_beat_comes() -> None:
    cfg = config()
    clock = FakeClock(tehran(SATURDAY, 12, 10))
    runner = RecordingRunner(cfg, clock, fails={"track"})
    with capture_logs() as logs:
        await run_until(cfg, clock, runner, tehran(SATURDAY, 13, 0))
    assert tracks(runner, SATURDAY) == [tehran(SATURDAY, 12, m) for m in (10, 15, 20, 25, 30)]
    failed = [e for e in logs if e["event"] == "track failed"]
    assert len(failed) == 5 and failed[0]["reason"] == "RuntimeError: track broke on purpose"


def test_the_plan_carries_the_close_and_the_phase_between_window_and_close_is_tracking() -> None:
    plan = day_plan(config(), SATURDAY)
    assert plan.close == tehran(SATURDAY, 12, 30) and plan.tracks
    assert phase_at(config(), plan.window_end - timedelta(microseconds=1)).name == "in_window"
    assert phase_at(config(), plan.window_end).name == "tracking"
    assert phase_at(config(), tehran(SATURDAY, 12, 29, 59)).plan.day == SATURDAY
    assert day_plan(config(enabled=False), SATURDAY).close is None
    late = validate_config({"schedule": {"warmup": "12:00", "open": "13:00"}})  # an open after the close: no tracking
    assert not day_plan(late, SATURDAY).tracks and phase_at(late, tehran(SATURDAY, 13, 1)).name == "after_window"
