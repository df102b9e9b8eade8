"""Calendar days as people in Iran write them: Gregorian `2026-03-21` or Jalali `1405-01-01`.

A year below 1700 can only be a Jalali (solar hijri) year for this program, so the year alone tells the
calendar apart; jdatetime does the conversion, so no month-length table is written here.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time

import jdatetime

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Python's weekday() order, as config writes the trading days."""

JALALI_YEARS_BELOW = 1700
_DAY = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")


def parse_day(value: str | date) -> date:
    """The Gregorian date of `value`; raises ValueError with a sentence a user can act on."""
    if isinstance(value, datetime):
        raise ValueError(f"{value.isoformat()!r} is a moment, not a day; write YYYY-MM-DD")
    if isinstance(value, date):
        year, month, day, text = value.year, value.month, value.day, value.isoformat()
    elif not isinstance(value, str):  # a number, a list, a mapping: never a day (and not worth printing whole)
        raise ValueError(
            f"a {type(value).__name__} is not a date; write YYYY-MM-DD (Gregorian, 2026-03-21) or a Jalali date (1405-01-01)"
        )
    else:
        text = value.strip()
        match = _DAY.fullmatch(text)
        if not match:
            raise ValueError(
                f"{text!r} is not a date; write YYYY-MM-DD (Gregorian, 2026-03-21) or a Jalali date (1405-01-01)"
            )
        year, month, day = (int(part) for part in match.groups())
    if year < JALALI_YEARS_BELOW:
        try:
            return jdatetime.date(year, month, day).togregorian()
        except ValueError:
            raise ValueError(
                f"{text!r} is not a real Jalali date (a year below {JALALI_YEARS_BELOW} is read as Jalali)"
            ) from None
    try:
        return date(year, month, day)
    except ValueError:
        raise ValueError(f"{text!r} is not a real Gregorian date") from None


def jalali(day: date) -> str:
    """`day` written in the Jalali calendar, as Iranian brokers and traders read it (1405-01-01)."""
    return jdatetime.date.fromgregorian(date=day).isoformat()


def time_of_day(moment: datetime | time) -> str:
    """HH:MM:SS, with milliseconds only when the instant has them (an open at 08:45:00.250)."""
    text = f"{moment:%H:%M:%S}"
    return f"{text}.{moment.microsecond // 1000:03d}" if moment.microsecond else text
