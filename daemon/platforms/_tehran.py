"""The exchange's calendar as the Iranian platforms write it: Jalali dates and Tehran wall times (UTC+03:30, no DST
since 2022). Exir, Online+ and easytrader lists show and take these; the instant matching needs comes from here."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import jdatetime

TEHRAN = ZoneInfo("Asia/Tehran")


def jalali(day: date) -> str:
    """`day` as Jalali `YYYY/MM/DD` (2026-06-02 is 1405/03/12)."""
    return jdatetime.date.fromgregorian(date=day).strftime("%Y/%m/%d")


def jalali_wall_time(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0, micro: int = 0) -> datetime:
    """A Jalali date and a Tehran wall-clock time as an aware datetime; ValueError when the date does not exist."""
    day = jdatetime.date(y, m, d).togregorian()
    return datetime(day.year, day.month, day.day, hh, mm, ss, micro, tzinfo=TEHRAN)
