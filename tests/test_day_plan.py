"""A day's instants and what a daemon started at any moment must do, computed without a clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.config import Config, validate_config
from daemon.days import AgendaDay, Event, agenda, calendar_for, day_plan, next_events, phase_at

TEHRAN = ZoneInfo("Asia/Tehran")
SATURDAY = date(2026, 11, 21)  # a week with no official holiday
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def config(tracking: dict[str, object] | None = None, **schedule: object) -> Config:
    """The day as it was before order tracking, unless `tracking` settings are given (tracking's own tests)."""
    return validate_config({"schedule": schedule, "tracking": tracking or {"enabled": False}})


def tehran(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=TEHRAN)


def test_day_plan_is_in_tehran_at_plus_0330_with_milliseconds() -> None:
    plan = day_plan(config(open="08:45:00.250"), SATURDAY)
    assert plan.open.utcoffset() == timedelta(hours=3, minutes=30)
    assert plan.open.astimezone(UTC) == datetime(2026, 11, 21, 5, 15, 0, 250_000, tzinfo=UTC)
    assert plan.warmup == tehran(SATURDAY, 8, 20)
    assert plan.arm == datetime(2026, 11, 21, 8, 44, 0, 250_000, tzinfo=TEHRAN)
    assert plan.window_end == datetime(2026, 11, 21, 8, 45, 30, 250_000, tzinfo=TEHRAN)
    assert [e.kind for e in plan.events()] == ["warmup", "arm", "open", "window_end"]


def test_day_plan_follows_the_configured_zone_and_its_dst() -> None:
    berlin = validate_config({"timezone": "Europe/Berlin"})
    summer, winter = day_plan(berlin, date(2026, 10, 24)), day_plan(berlin, date(2026, 10, 26))
    assert (summer.open.utcoffset(), winter.open.utcoffset()) == (timedelta(hours=2), timedelta(hours=1))


def test_a_whole_week_has_events_on_saturday_to_wednesday_only() -> None:
    events = next_events(config(), tehran(SATURDAY, 0), 21)
    days = [e.at.date() for e in events]
    assert sorted({WEEKDAY_NAMES[d.weekday()] for d in days[:20]}) == ["mon", "sat", "sun", "tue", "wed"]
    assert days[:20] == [SATURDAY + timedelta(days=n) for n in range(5) for _ in range(4)]
    assert events[20] == Event("warmup", tehran(date(2026, 11, 28), 8, 20))
    assert [e.kind for e in events[:4]] == ["warmup", "arm", "open", "window_end"]
    assert all(a.at < b.at for a, b in zip(events, events[1:]))


def test_every_hour_of_the_week_gets_a_phase_that_never_fires_on_thursday_or_friday() -> None:
    cfg = config()
    cal = calendar_for(cfg)
    for hour in range(7 * 24):
        now = tehran(SATURDAY, 0) + timedelta(hours=hour)
        phase = phase_at(cfg, now, cal)
        assert phase.plan.day.weekday() not in (3, 4)  # never plans a Thursday or Friday
        if now.weekday() in (3, 4):
            assert (phase.name, phase.closed) == ("closed_day", f"{now:%A}")
            assert phase.plan.day == date(2026, 11, 28)
        elif now.hour <= 8:
            assert (phase.name, phase.plan.day) == ("before_warmup", now.date())
        else:
            assert phase.name == "after_window"
            assert phase.plan.day == (now.date() + timedelta(days=1) if now.weekday() != 2 else date(2026, 11, 28))


def test_configured_gregorian_and_jalali_holidays_are_skipped() -> None:
    cfg = config(holidays=["2026-11-23", "1405-09-03"])  # Monday and (Jalali) Tuesday
    days = {e.at.date() for e in next_events(cfg, tehran(SATURDAY, 0), 12)}
    assert days == {SATURDAY, date(2026, 11, 22), date(2026, 11, 25)}


def test_official_holiday_is_skipped_and_open_days_reopens_one() -> None:
    before_nowruz = tehran(date(2027, 3, 19), 12)  # a Friday; Sat 20 and 21-24 March 2027 are holidays
    assert next_events(config(), before_nowruz, 1)[0].at.date() == date(2027, 3, 27)
    reopened = config(open_days=["2027-03-22"])
    assert next_events(reopened, before_nowruz, 1)[0].at.date() == date(2027, 3, 22)
    assert phase_at(config(), tehran(date(2027, 3, 21), 9)).closed == "holiday: Nowruz"


@pytest.mark.parametrize(
    ("clock", "phase", "plan_day"),
    [
        ((7, 0, 0), "before_warmup", SATURDAY),
        ((8, 20, 0), "warm_now", SATURDAY),
        ((8, 30, 0), "warm_now", SATURDAY),
        ((8, 43, 59), "warm_now", SATURDAY),
        ((8, 44, 0), "in_window", SATURDAY),  # from the arm time: arm at once, no warmup
        ((8, 44, 30), "in_window", SATURDAY),
        ((8, 45, 0), "in_window", SATURDAY),
        ((8, 45, 29), "in_window", SATURDAY),
        ((8, 45, 30), "after_window", date(2026, 11, 22)),
        ((10, 0, 0), "after_window", date(2026, 11, 22)),
    ],
)
def test_phase_at_tells_a_daemon_started_then_what_to_do(
    clock: tuple[int, int, int], phase: str, plan_day: date
) -> None:
    result = phase_at(config(), tehran(SATURDAY, *clock))
    assert (result.name, result.plan.day, result.closed) == (phase, plan_day, None)


@pytest.mark.parametrize(
    ("moment", "phase", "plan_day"),
    [
        (timedelta(milliseconds=-50), "in_window", SATURDAY),  # killed just before the open, restarted at once
        (timedelta(microseconds=1), "in_window", SATURDAY),  # just after the open
        (timedelta(seconds=30) - timedelta(microseconds=1), "in_window", SATURDAY),  # the window's last instant
        (timedelta(seconds=30), "after_window", date(2026, 11, 22)),  # the window's end: tomorrow
    ],
)
def test_a_restart_around_the_open_fires_today_until_the_window_ends(
    moment: timedelta, phase: str, plan_day: date
) -> None:
    result = phase_at(config(), tehran(SATURDAY, 8, 45) + moment)
    assert (result.name, result.plan.day) == (phase, plan_day)


def test_the_window_of_a_fractional_open_ends_window_s_after_it() -> None:
    cfg = config(open="08:45:00.250", window_s=10)
    open_at = datetime(2026, 11, 21, 8, 45, 0, 250_000, tzinfo=TEHRAN)
    assert phase_at(cfg, open_at + timedelta(seconds=10) - timedelta(microseconds=1)).name == "in_window"
    assert phase_at(cfg, open_at + timedelta(seconds=10)).name == "after_window"
    assert phase_at(cfg, open_at - timedelta(seconds=60)).name == "in_window"  # the arm time
    assert phase_at(cfg, open_at - timedelta(seconds=60, microseconds=1)).name == "warm_now"


def test_started_at_ten_after_wednesdays_window_waits_for_saturdays_warmup() -> None:
    now = tehran(date(2026, 11, 25), 10)
    assert phase_at(config(), now).name == "after_window"
    assert next_events(config(), now, 1) == [Event("warmup", tehran(date(2026, 11, 28), 8, 20))]


def test_started_at_half_past_eight_warms_now_and_the_next_event_is_arm() -> None:
    now = tehran(SATURDAY, 8, 30)
    assert phase_at(config(), now).name == "warm_now"
    assert next_events(config(), now, 1) == [Event("arm", tehran(SATURDAY, 8, 44))]


def test_next_events_are_strictly_after_now_and_accept_any_zone() -> None:
    open_in_utc = tehran(SATURDAY, 8, 45).astimezone(UTC)
    assert [e.kind for e in next_events(config(), open_in_utc, 2)] == ["window_end", "warmup"]
    assert next_events(config(), open_in_utc, 0) == []


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        phase_at(config(), datetime(2026, 11, 21, 8, 30))


def test_agenda_lists_closed_days_between_the_trading_days_still_ahead() -> None:
    days = agenda(config(), tehran(date(2026, 11, 25), 10), 2)
    assert [(d.day, d.closed, len(d.events)) for d in days] == [
        (date(2026, 11, 26), "Thursday", 0),
        (date(2026, 11, 27), "Friday", 0),
        (date(2026, 11, 28), None, 4),
        (date(2026, 11, 29), None, 4),
    ]
    assert agenda(config(), tehran(SATURDAY, 8, 44, 30), 1) == [
        AgendaDay(SATURDAY, [Event("open", tehran(SATURDAY, 8, 45)), Event("window_end", tehran(SATURDAY, 8, 45, 30))])
    ]


def test_the_holidays_file_is_read_once_per_calendar(tmp_path: Path) -> None:
    path = tmp_path / "closures.txt"
    path.write_text("2026-11-21\n", encoding="utf-8")
    cfg = config(holidays_file=str(path))
    cal = calendar_for(cfg)
    path.unlink()
    assert phase_at(cfg, tehran(SATURDAY, 7), cal).closed == "configured holiday"
