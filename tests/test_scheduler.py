"""The day cycle in fake time: a whole trading week runs in a moment through the production coroutine.

looptime fast-forwards the event loop's clock and `FakeClock.sleep_until` waits on it, so the scheduler,
the recording runner and the test all wait on one fake timeline without any real waiting.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from daemon.clock import FakeClock, SystemClock
from daemon.config import Config, validate_config
from daemon.days import calendar_for, day_plan
from daemon.scheduler import APSchedulerAlarm, ClockAlarm, DayScheduler, describe_next, next_refresh, plan_to_work
from tests.doubles import RecordingRunner

TEHRAN = ZoneInfo("Asia/Tehran")
SATURDAY = date(2026, 11, 21)  # a week with no official holiday
DAY = timedelta(days=1)


def config(tracking: dict[str, object] | None = None, **schedule: object) -> Config:
    """The day as it was before order tracking, unless `tracking` settings are given (tracking's own tests)."""
    return validate_config({"schedule": schedule, "tracking": tracking or {"enabled": False}})


def tehran(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=TEHRAN)


async def run_until(cfg: Config, clock: FakeClock, runner: RecordingRunner, until: datetime) -> DayScheduler:
    """Run the scheduler from the clock's time to `until` (fake), then stop it as the service would."""
    scheduler = DayScheduler(cfg, runner, clock, ClockAlarm(clock))
    scheduler.start()
    await clock.sleep_until(until)
    await scheduler.stop()
    return scheduler


def assert_full_day(cfg: Config, runner: RecordingRunner, day: date) -> None:
    """warmup, arm, fire, report in that order; refreshes only after warmup and before the window's end; tracking
    beats only after the report, until the close."""
    plan = day_plan(cfg, day)
    calls = [call for call in runner.calls if call.day == day]
    assert [call.step for call in calls if call.step not in ("refresh", "track")] == ["warmup", "arm", "fire", "report"]
    tracks = [call.start for call in calls if call.step == "track"]
    assert all(plan.window_end <= moment <= plan.close for moment in tracks)
    assert [c.step for c in calls].index("report") < min(
        (i for i, c in enumerate(calls) if c.step == "track"), default=len(calls)
    )
    warm, arm, fire, report = (
        next(call for call in calls if call.step == step) for step in ("warmup", "arm", "fire", "report")
    )
    assert arm.start == max(plan.arm, warm.start)  # on time, or at once after a start past arm time
    assert warm.start <= arm.start <= fire.start < plan.open
    assert fire.end == plan.window_end
    assert report.start >= plan.window_end
    refreshes = [call.start for call in calls if call.step == "refresh"]
    assert refreshes and all(warm.start < moment < plan.window_end for moment in refreshes)
    if warm.end is not None:
        assert all(moment >= warm.end for moment in refreshes)


@pytest.mark.looptime
async def test_a_trading_week_skips_thursday_friday_and_configured_holidays() -> None:
    cfg = config(holidays=["2026-11-23", "1405-09-04"])  # Monday, Gregorian; Wednesday 2026-11-25, Jalali
    clock = FakeClock(tehran(SATURDAY, 7, 30))
    runner = RecordingRunner(cfg, clock)

    await run_until(cfg, clock, runner, tehran(SATURDAY + 7 * DAY, 7, 0))

    trading = [SATURDAY, SATURDAY + DAY, SATURDAY + 3 * DAY]  # Sat, Sun, Tue
    assert [call.start for call in runner.of("warmup")] == [tehran(day, 8, 20) for day in trading]
    assert {call.day for call in runner.calls} == set(trading)
    for step in ("arm", "fire", "report"):
        assert runner.days(step) == trading
    for day in trading:
        assert_full_day(cfg, runner, day)
        # every 20 s from 08:20:00 while before 08:45:30: 08:20:20 ... 08:45:20
        beats = [call.start for call in runner.of("refresh") if call.day == day]
        assert beats == [tehran(day, 8, 20) + timedelta(seconds=20 * n) for n in range(1, 77)]
    assert runner.of("aclose") == []  # the service closes the runner, not the scheduler


@pytest.mark.looptime
async def test_refresh_follows_the_configured_cadence() -> None:
    cfg = config(refresh_s=300)
    clock = FakeClock(tehran(SATURDAY, 8, 0))
    runner = RecordingRunner(cfg, clock)
    await run_until(cfg, clock, runner, tehran(SATURDAY, 9, 0))
    assert [call.start for call in runner.of("refresh")] == [tehran(SATURDAY, 8, m) for m in (25, 30, 35, 40, 45)]


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("start", "first_warmup"),
    [
        (tehran(SATURDAY, 8, 30), tehran(SATURDAY, 8, 30)),  # late: warms at once, still fires today
        (tehran(SATURDAY, 8, 43, 59), tehran(SATURDAY, 8, 43, 59)),  # a second before arm time: warms at once
        (tehran(SATURDAY, 8, 45, 30), tehran(SATURDAY + DAY, 8, 20)),  # at the window's end: tomorrow
        (tehran(SATURDAY, 10, 0), tehran(SATURDAY + DAY, 8, 20)),  # after the window: tomorrow
        (tehran(SATURDAY + 5 * DAY, 12, 0), tehran(SATURDAY + 7 * DAY, 8, 20)),  # Thursday: Saturday next
        (tehran(SATURDAY, 3, 0), tehran(SATURDAY, 8, 20)),
    ],
)
async def test_a_start_at_any_moment_does_the_right_first_thing(start: datetime, first_warmup: datetime) -> None:
    cfg = config()
    clock = FakeClock(start)
    runner = RecordingRunner(cfg, clock)
    await run_until(cfg, clock, runner, first_warmup.replace(hour=9, minute=0, second=0))
    assert [call.start for call in runner.of("warmup")] == [first_warmup]
    assert runner.calls[0].step == "warmup"
    assert_full_day(cfg, runner, first_warmup.date())


@pytest.mark.looptime
@pytest.mark.parametrize(
    "start",
    [
        tehran(SATURDAY, 8, 44),  # the arm time itself
        tehran(SATURDAY, 8, 45) - timedelta(milliseconds=50),  # killed 50 ms before the open, restarted at once
        tehran(SATURDAY, 8, 45, 10),  # inside the window
        tehran(SATURDAY, 8, 45, 30) - timedelta(microseconds=1),  # the window's last instant
    ],
)
async def test_a_start_inside_the_fire_window_arms_at_once_fires_and_reports_today(start: datetime) -> None:
    cfg = config()
    clock = FakeClock(start)
    runner = RecordingRunner(cfg, clock)
    with capture_logs() as logs:
        scheduler = DayScheduler(cfg, runner, clock, ClockAlarm(clock))
        scheduler.start()
        await clock.sleep_until(start + timedelta(microseconds=1))
        assert scheduler.in_window  # a stop now would wait for the window, as after a normal arm
        await clock.sleep_until(tehran(SATURDAY + DAY, 9, 0))
        await scheduler.stop()
    plan = day_plan(cfg, SATURDAY)
    today = [call for call in runner.calls if call.day == SATURDAY]
    assert [call.step for call in today] == ["arm", "fire", "report"]  # no warmup, no refresh
    arm, fire, report = today
    assert arm.start == fire.start == start  # at once
    assert fire.end == plan.window_end and report.start == plan.window_end
    started = [e for e in logs if e["event"] == "started inside the fire window: arming now"]
    assert len(started) == 1 and started[0]["log_level"] == "warning" and started[0]["day"] == "2026-11-21"
    assert not any(e["event"].startswith(("arm ended", "started after the warmup")) for e in logs)
    assert_full_day(cfg, runner, SATURDAY + DAY)  # and the next day as usual


@pytest.mark.looptime
async def test_a_start_just_before_the_open_whose_arm_ends_after_it_says_it_fires_late() -> None:
    cfg = config()
    start = tehran(SATURDAY, 8, 45) - timedelta(milliseconds=50)
    clock = FakeClock(start)
    runner = RecordingRunner(cfg, clock, takes={"arm": 1})  # the arm ends at 08:45:00.950
    with capture_logs() as logs:
        await run_until(cfg, clock, runner, tehran(SATURDAY, 9, 0))
    assert [call.step for call in runner.calls] == ["arm", "fire", "report"]
    assert runner.of("fire")[0].start == start + timedelta(seconds=1)
    assert [e["log_level"] for e in logs if e["event"] == "arm ended after the open: firing late"] == ["error"]


@pytest.mark.looptime
async def test_a_stop_right_after_a_start_inside_the_window_still_fires_and_reports() -> None:
    cfg = config()
    clock = FakeClock(tehran(SATURDAY, 8, 45, 5))
    runner = RecordingRunner(cfg, clock, takes={"arm": 2})
    scheduler = DayScheduler(cfg, runner, clock, ClockAlarm(clock))
    scheduler.start()
    await clock.sleep_until(tehran(SATURDAY, 8, 45, 6))  # mid-arm
    await scheduler.stop()
    assert [call.step for call in runner.calls] == ["arm", "fire", "report"]
    assert runner.of("fire")[0].start == tehran(SATURDAY, 8, 45, 7)
    assert clock.now() == day_plan(cfg, SATURDAY).window_end


@pytest.mark.looptime
async def test_an_arm_that_runs_past_the_window_is_still_followed_by_fire_then_the_report() -> None:
    """Nothing here cuts a window short: the executor, not the scheduler, keeps to the window."""
    cfg = config()
    clock = FakeClock(tehran(SATURDAY, 8, 45, 20))
    runner = RecordingRunner(cfg, clock, takes={"arm": 15})  # a cold cache and slow logins: done at 08:45:35
    await run_until(cfg, clock, runner, tehran(SATURDAY, 9, 0))
    assert [call.step for call in runner.calls] == ["arm", "fire", "report"]
    assert runner.of("fire")[0].start == runner.of("report")[0].start == tehran(SATURDAY, 8, 45, 35)


@pytest.mark.looptime
async def test_a_warmup_still_running_at_arm_time_is_loud_and_arm_and_fire_go_on() -> None:
    cfg = config()
    clock = FakeClock(tehran(SATURDAY, 8, 0))
    runner = RecordingRunner(cfg, clock, takes={"warmup": 24 * 60 + 30})  # 08:20 to 08:44:30
    with capture_logs() as logs:
        await run_until(cfg, clock, runner, tehran(SATURDAY, 9, 0))
    plan = day_plan(cfg, SATURDAY)
    assert runner.of("arm")[0].start == plan.arm  # not held up by the warmup
    assert runner.of("warmup")[0].end == tehran(SATURDAY, 8, 44, 30)
    assert [call.start for call in runner.of("refresh")] == [
        tehran(SATURDAY, 8, 44, 40),
        tehran(SATURDAY, 8, 45),
        tehran(SATURDAY, 8, 45, 20),
    ]
    assert_full_day(cfg, runner, SATURDAY)
    loud = [e for e in logs if e["event"].startswith("warmup still running at arm time")]
    assert len(loud) == 1 and loud[0]["log_level"] == "error"


@pytest.mark.looptime
async def test_a_warmup_that_outlasts_the_window_is_cancelled_before_the_report() -> None:
    cfg = config()
    clock = FakeClock(tehran(SATURDAY, 8, 0))
    runner = RecordingRunner(cfg, clock, takes={"warmup": 3600})
    with capture_logs() as logs:
        await run_until(cfg, clock, runner, tehran(SATURDAY, 10, 0))
    assert runner.of("warmup")[0].end is None
    assert runner.of("refresh") == []
    assert runner.days("fire") == [SATURDAY] and runner.days("report") == [SATURDAY]
    assert any(e["event"] == "warmup still running after the window: cancelled" for e in logs)


@pytest.mark.looptime
async def test_runner_failures_are_one_log_line_each_and_the_days_go_on() -> None:
    cfg = config()
    clock = FakeClock(tehran(SATURDAY, 8, 0))
    runner = RecordingRunner(cfg, clock, fails={"warmup", "refresh", "arm", "fire", "report"})
    with capture_logs() as logs:
        await run_until(cfg, clock, runner, tehran(SATURDAY + DAY, 9, 0))
    for step in ("warmup", "arm", "fire", "report"):
        assert runner.days(step) == [SATURDAY, SATURDAY + DAY]
    failures = [e for e in logs if e["event"].endswith(" failed")]
    assert {e["event"] for e in failures} == {
        "warmup failed",
        "refresh failed",
        "arm failed",
        "fire failed",
        "report failed",
    }
    warm = next(e for e in failures if e["event"] == "warmup failed")
    assert warm["reason"] == "RuntimeError: warmup broke on purpose" and warm["log_level"] == "error"
    # a failed fire returns at once; the report still waits for the window's end
    assert runner.of("report")[0].start == day_plan(cfg, SATURDAY).window_end


@pytest.mark.looptime
async def test_stop_during_the_fire_window_lets_it_finish_and_report() -> None:
    cfg = config()
    clock = FakeClock(tehran(SATURDAY, 8, 40))
    runner = RecordingRunner(cfg, clock)
    scheduler = DayScheduler(cfg, runner, clock, ClockAlarm(clock))
    scheduler.start()
    await clock.sleep_until(tehran(SATURDAY, 8, 45, 10))
    assert scheduler.in_window
    await scheduler.stop()
    plan = day_plan(cfg, SATURDAY)
    assert runner.of("fire")[0].end == plan.window_end
    assert runner.days("report") == [SATURDAY]
    assert clock.now() >= plan.window_end and not scheduler.in_window


@pytest.mark.looptime
async def test_stop_before_the_window_cancels_warmup_and_never_arms() -> None:
    cfg = config()
    clock = FakeClock(tehran(SATURDAY, 8, 0))
    runner = RecordingRunner(cfg, clock, takes={"warmup": 600})
    scheduler = DayScheduler(cfg, runner, clock, ClockAlarm(clock))
    scheduler.start()
    await clock.sleep_until(tehran(SATURDAY, 8, 25))
    await scheduler.stop()
    assert clock.now() == tehran(SATURDAY, 8, 25)
    assert [call.step for call in runner.calls] == ["warmup"] and runner.calls[0].end is None
    await clock.sleep_until(tehran(SATURDAY, 9, 0))
    assert [call.step for call in runner.calls] == ["warmup"]


def test_plan_to_work_is_today_until_the_window_ends_then_the_next_trading_day() -> None:
    cfg = config()
    cal = calendar_for(cfg)
    open_at = tehran(SATURDAY, 8, 45)
    assert plan_to_work(cfg, open_at - timedelta(milliseconds=50), cal).day == SATURDAY  # just before the open
    assert plan_to_work(cfg, open_at + timedelta(milliseconds=1), cal).day == SATURDAY  # just after it
    assert plan_to_work(cfg, tehran(SATURDAY, 8, 45, 30) - timedelta(microseconds=1), cal).day == SATURDAY
    assert plan_to_work(cfg, tehran(SATURDAY, 8, 45, 30), cal).day == SATURDAY + DAY  # the window's end
    wednesday = SATURDAY + 4 * DAY
    assert plan_to_work(cfg, tehran(wednesday, 8, 45, 29), cal).day == wednesday
    assert plan_to_work(cfg, tehran(wednesday, 8, 45, 30), cal).day == SATURDAY + 7 * DAY  # over Thursday and Friday
    assert plan_to_work(cfg, tehran(wednesday, 23, 0), cal).day == SATURDAY + 7 * DAY  # Wednesday night
    # a UTC `now` is read in the exchange's zone: 22:00 UTC Friday is 01:30 Saturday in Tehran
    assert plan_to_work(cfg, datetime(2026, 11, 27, 22, 0, tzinfo=UTC), cal).day == SATURDAY + 7 * DAY


def test_next_refresh_keeps_the_beat_and_skips_missed_ones() -> None:
    start, every = tehran(SATURDAY, 8, 20), timedelta(seconds=20)
    assert next_refresh(start, start, every) == start + every
    assert next_refresh(start, start + timedelta(seconds=19), every) == start + every
    assert next_refresh(start, start + timedelta(seconds=20), every) == start + 2 * every
    assert next_refresh(start, start + timedelta(seconds=75), every) == start + 4 * every


def test_describe_next_is_one_line_in_the_exchange_zone() -> None:
    cfg = config()
    line = describe_next(cfg, datetime(2026, 11, 26, 12, 0, tzinfo=UTC), calendar_for(cfg))
    assert line == "warmup Sat 2026-11-28 08:20:00 +0330, arm 08:44:00, open 08:45:00, window_end 08:45:30"


async def test_apscheduler_alarm_wakes_at_the_wall_time_and_forgets_cancelled_waits() -> None:
    """The production alarm, in real time: a wait 50 ms ahead, one in the past, one cancelled."""
    clock = SystemClock()
    alarm = APSchedulerAlarm(TEHRAN)
    try:
        when = clock.now() + timedelta(milliseconds=50)
        await asyncio.wait_for(alarm.until(when), timeout=10)
        assert clock.now() >= when
        await asyncio.wait_for(alarm.until(clock.now() - timedelta(hours=1)), timeout=10)
        pending = asyncio.create_task(alarm.until(clock.now() + timedelta(hours=1)))
        while not alarm._scheduler.get_jobs():
            await asyncio.sleep(0)
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        assert alarm._scheduler.get_jobs() == []
    finally:
        alarm.close()
