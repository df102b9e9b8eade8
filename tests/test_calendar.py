"""Trading days: weekdays, official holidays, configured closures and reopenings, and how dates are written."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.config import ScheduleSettings, load_config, validate_config
from daemon.days import NoTradingDayError, TradingCalendar, jalali, parse_day
from daemon.errors import ConfigError

TEHRAN = ZoneInfo("Asia/Tehran")
SATURDAY = date(2026, 11, 21)  # a week with no official holiday


def week(start: date = SATURDAY) -> list[date]:
    return [start + timedelta(days=n) for n in range(7)]


def calendar(**schedule: object) -> TradingCalendar:
    return TradingCalendar(ScheduleSettings(**schedule), TEHRAN)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-21", date(2026, 3, 21)),
        ("1405-01-01", date(2026, 3, 21)),  # Nowruz 1405
        ("1404-06-31", date(2025, 9, 22)),  # Shahrivar has 31 days; June has not
        ("1405/09/07", date(2026, 11, 28)),
        (" 1405-9-7 ", date(2026, 11, 28)),
        (date(1405, 1, 1), date(2026, 3, 21)),  # a YAML date object with a Jalali year
        (date(2026, 3, 21), date(2026, 3, 21)),
    ],
)
def test_parse_day_reads_gregorian_and_jalali(text: str | date, expected: date) -> None:
    assert parse_day(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("1405-12-30", "not a real Jalali date"),  # 1405 is not a leap year
        ("1405-13-01", "not a real Jalali date"),
        ("2026-02-30", "not a real Gregorian date"),
        ("tomorrow", "is not a date"),
        ("2026-03-21T08:00", "is not a date"),
        (datetime(2026, 3, 21, 8, 0), "a moment, not a day"),
    ],
)
def test_parse_day_refuses_what_is_not_a_day(text: str | datetime, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_day(text)


def test_jalali_writes_a_day_the_iranian_way() -> None:
    assert jalali(date(2026, 3, 21)) == "1405-01-01"


def test_a_week_trades_saturday_to_wednesday() -> None:
    cal = calendar()
    assert [cal.is_trading_day(d) for d in week()] == [True, True, True, True, True, False, False]
    assert [cal.why_closed(d) for d in week()[5:]] == ["Thursday", "Friday"]


def test_trading_days_come_from_config() -> None:
    cal = calendar(trading_days=["sun", "thu"])
    assert [d for d in week() if cal.is_trading_day(d)] == [date(2026, 11, 22), date(2026, 11, 26)]
    assert cal.why_closed(SATURDAY) == "Saturday"


def test_configured_gregorian_and_jalali_holidays_are_closed() -> None:
    cal = calendar(holidays=["2026-11-23", "1405-09-03"])  # Monday, and Tuesday in Jalali
    assert cal.why_closed(date(2026, 11, 23)) == "configured holiday"
    assert cal.why_closed(date(2026, 11, 24)) == "configured holiday"
    assert cal.is_trading_day(date(2026, 11, 22))


def test_official_holidays_come_from_the_holidays_package() -> None:
    cal = calendar()
    assert cal.why_closed(date(2027, 3, 21)) == "holiday: Nowruz"
    assert cal.why_closed(date(2027, 3, 10)) == "holiday: Eid al-Fitr (estimated)"
    assert calendar(official_holidays=False).is_trading_day(date(2027, 3, 21))


def test_open_days_reopen_an_official_holiday_and_with_holidays_move_it() -> None:
    # The estimated Eid al-Fitr (Wed 2027-03-10) falls a day early in the official calendar: move it to Tuesday.
    cal = calendar(open_days=["2027-03-10"], holidays=["1405-12-18"])
    assert parse_day("1405-12-18") == date(2027, 3, 9)
    assert cal.is_trading_day(date(2027, 3, 10))
    assert cal.why_closed(date(2027, 3, 9)) == "configured holiday"
    assert cal.why_closed(date(2027, 3, 11)) == "Thursday"  # open_days never opens a weekend


def test_next_trading_day_skips_weekends_and_nowruz() -> None:
    cal = calendar()
    assert cal.next_trading_day(date(2026, 11, 26)) == date(2026, 11, 28)
    assert cal.next_trading_day(SATURDAY) == SATURDAY
    assert cal.next_trading_day(SATURDAY, include_today=False) == date(2026, 11, 22)
    # Sat 20 March 2027 (oil nationalization), 21-24 Nowruz, then the weekend.
    assert cal.next_trading_day(date(2027, 3, 19)) == date(2027, 3, 27)


def test_trading_days_lists_the_next_ones() -> None:
    cal = calendar(holidays=["2026-11-29"])
    assert cal.trading_days(date(2026, 11, 25), 3) == [date(2026, 11, 25), date(2026, 11, 28), date(2026, 11, 30)]
    assert cal.trading_days(SATURDAY, 0) == []


def test_a_moment_is_read_as_its_day_in_tehran() -> None:
    cal = calendar()
    late_wednesday_utc = datetime(2026, 11, 25, 20, 40, tzinfo=UTC)  # 00:10 Thursday in Tehran
    assert cal.why_closed(late_wednesday_utc) == "Thursday"
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.is_trading_day(datetime(2026, 11, 25, 20, 40))


def test_a_calendar_with_no_trading_day_is_a_config_error() -> None:
    mondays = [str(date(2026, 11, 23) + timedelta(weeks=n)) for n in range(60)]
    cal = calendar(trading_days=["mon"], holidays=mondays)
    with pytest.raises(NoTradingDayError, match="no trading day in the 400 days from 2026-11-21") as caught:
        cal.next_trading_day(SATURDAY)
    assert isinstance(caught.value, ConfigError)


def test_holidays_file_takes_one_date_a_line_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "closures.txt"
    path.write_text("# exchange closures\n\n2026-11-23   # maintenance\n1405-09-03\n", encoding="utf-8")
    cal = calendar(holidays_file=path)
    assert cal.why_closed(date(2026, 11, 23)) == "configured holiday"
    assert cal.why_closed(date(2026, 11, 24)) == "configured holiday"
    path.write_text("2026-11-22\n", encoding="utf-8")
    assert cal.is_trading_day(date(2026, 11, 22))  # read once, when the calendar was built


def test_holidays_file_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "closures.txt"
    path.write_text("2026-11-23\n# fine\n1405-12-30\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"closures.txt, line 3: '1405-12-30' is not a real Jalali date"):
        calendar(holidays_file=path)


def test_missing_holidays_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"schedule.holidays_file .*absent.txt cannot be read"):
        calendar(holidays_file=tmp_path / "absent.txt")


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"holidays": ["2026-11-23", "1405-13-01"]}, "schedule.holidays[1]: '1405-13-01' is not a real Jalali date"),
        ({"open_days": ["2026-02-30"]}, "schedule.open_days[0]: '2026-02-30' is not a real Gregorian date"),
        ({"open_days": ["2026-11-26"]}, "open_days: 2026-11-26 is a Thursday, which is not in trading_days"),
        ({"open_days": ["2027-03-21"], "holidays": ["1406-01-01"]}, "open_days: 2027-03-21 is also in holidays"),
        ({"arm_before_s": 1800}, "arm_before_s: arming 1800 s before the open would come before warmup"),
        ({"open": "23:59:50", "window_s": 30}, "window_s: a window of 30 s after the open would run past midnight"),
        ({"trading_days": []}, "schedule.trading_days: List should have at least 1 item"),
        ({"open": "08:45+03:30"}, "schedule.open: give a plain time of day like 08:45:00"),
    ],
)
def test_schedule_config_errors_name_the_field(schedule: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config({"schedule": schedule}, source="config.yaml")
    assert message in str(caught.value)


def test_yaml_leaves_times_and_dates_for_the_schedule_to_read(tmp_path: Path) -> None:
    """Unquoted, YAML 1.1 would read 9:30 as 570 (base 60) and 1404-06-31 as a broken Gregorian date."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "schedule:\n  warmup: 9:30\n  open: 09:45:00.250\n  holidays: [2026-11-23, 1404-06-31]\n", encoding="utf-8"
    )
    schedule = load_config(path).schedule
    assert (schedule.warmup.isoformat(), schedule.open.isoformat()) == ("09:30:00", "09:45:00.250000")
    assert schedule.holidays == [date(2026, 11, 23), date(2025, 9, 22)]


def test_environment_override_of_a_time_is_read_as_a_time() -> None:
    config = load_config(
        None, environ={"OPENING_BELL__SCHEDULE__WARMUP": "7:30", "OPENING_BELL__SCHEDULE__OPEN": "08:45:00.5"}
    )
    assert (config.schedule.warmup.isoformat(), config.schedule.open.isoformat()) == ("07:30:00", "08:45:00.500000")
