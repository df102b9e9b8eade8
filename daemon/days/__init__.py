"""Trading days, pure: the calendar (Sat-Wed minus holidays), date parsing, and what each day does
at which instant. The scheduler (`daemon.scheduler`) runs it with APScheduler.
"""

from __future__ import annotations

from daemon.days._calendar import (
    NoTradingDayError,
    TradingCalendar,
)
from daemon.days._dates import (
    WEEKDAYS,
    jalali,
    parse_day,
    time_of_day,
)
from daemon.days._day_plan import (
    MARKET_CLOSE,
    AgendaDay,
    DayPlan,
    Event,
    Phase,
    agenda,
    calendar_for,
    close_of,
    day_plan,
    next_events,
    phase_at,
)

__all__ = [
    "MARKET_CLOSE",
    "WEEKDAYS",
    "AgendaDay",
    "DayPlan",
    "Event",
    "NoTradingDayError",
    "Phase",
    "TradingCalendar",
    "agenda",
    "calendar_for",
    "close_of",
    "day_plan",
    "jalali",
    "next_events",
    "parse_day",
    "phase_at",
    "time_of_day",
]
