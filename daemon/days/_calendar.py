"""Which days the market opens: trading weekdays, minus Iran's official holidays and configured closures.

The `holidays` package knows the official list (lunar days included, marked "estimated" for future
years), so no holiday table is written here. Config adds closures (`holidays`, `holidays_file`) and
reopens official days that are in fact open (`open_days`); a moved holiday is one of each. Only the
holidays file is read, once, when the calendar is built; every question after that is arithmetic.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

import holidays

from daemon.days._dates import WEEKDAYS, parse_day
from daemon.errors import ConfigError

if TYPE_CHECKING:
    from daemon.config import ScheduleSettings

SEARCH_DAYS = 400
CONFIGURED_HOLIDAY = "configured holiday"


class NoTradingDayError(ConfigError):
    """Every day of the search span is closed: the trading days or the holiday lists are wrong."""


class TradingCalendar:
    """Answers "is the market open on this day, and if not, why?" for one schedule."""

    def __init__(self, settings: ScheduleSettings, tz: tzinfo) -> None:
        self.tz = tz
        self._weekdays = frozenset(WEEKDAYS.index(name) for name in settings.trading_days)
        self._closed = frozenset(settings.holidays) | frozenset(
            read_holidays_file(settings.holidays_file) if settings.holidays_file else ()
        )
        self._reopened = frozenset(settings.open_days)
        self._official = holidays.country_holidays("IR", language="en_US") if settings.official_holidays else None

    def why_closed(self, day: date | datetime) -> str | None:
        """None on a trading day; else the reason: "Thursday", "holiday: Nowruz", "configured holiday"."""
        day = self._day(day)
        if day.weekday() not in self._weekdays:
            return f"{day:%A}"
        if day in self._closed:
            return CONFIGURED_HOLIDAY
        if self._official is not None and day not in self._reopened:
            name = self._official.get(day)
            if name:
                return f"holiday: {name}"
        return None

    def is_trading_day(self, day: date | datetime) -> bool:
        return self.why_closed(day) is None

    def next_trading_day(self, day: date | datetime, include_today: bool = True) -> date:
        """The first trading day from `day` on (or after it); searching more than a year means a broken config."""
        start = self._day(day)
        first = start if include_today else start + timedelta(days=1)
        for offset in range(SEARCH_DAYS):
            candidate = first + timedelta(days=offset)
            if self.is_trading_day(candidate):
                return candidate
        raise NoTradingDayError(
            f"no trading day in the {SEARCH_DAYS} days from {first}; check schedule.trading_days, holidays and holidays_file."
        )

    def trading_days(self, start: date | datetime, count: int) -> list[date]:
        """The first `count` trading days from `start` on, `start` included if it is one."""
        days: list[date] = []
        day = self._day(start)
        while len(days) < count:
            day = self.next_trading_day(day)
            days.append(day)
            day += timedelta(days=1)
        return days

    def _day(self, value: date | datetime) -> date:
        """A date as given, or an aware moment's date in the exchange's time zone."""
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("TradingCalendar needs a timezone-aware datetime or a date")
            return value.astimezone(self.tz).date()
        return value


def read_holidays_file(path: Path) -> list[date]:
    """One date a line (Gregorian or Jalali); `#` starts a comment; a bad line names the file and its number."""
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"schedule.holidays_file {path} cannot be read ({exc.strerror or exc}).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"schedule.holidays_file {path} is not UTF-8 text.") from None
    days = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            days.append(parse_day(entry))
        except ValueError as exc:
            raise ConfigError(f"schedule.holidays_file {path}, line {number}: {exc}.") from None
    return days
