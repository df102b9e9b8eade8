"""When a trading day's events happen, as pure arithmetic on dates and aware datetimes.

Nothing here reads a clock: the caller passes `now`. The scheduler service runs these answers; tests
walk a whole week without sleeping (arq keeps its cron arithmetic apart from its I/O the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Literal

from daemon.days._calendar import TradingCalendar

if TYPE_CHECKING:
    from daemon.config import Config, ScheduleSettings

MARKET_CLOSE = time(12, 30)
"""Tehran's continuous trading ends here: the tracker's last read when `schedule.close` is not given."""

EventKind = Literal["warmup", "arm", "open", "window_end"]
PhaseName = Literal["before_warmup", "warm_now", "in_window", "tracking", "after_window", "closed_day"]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    at: datetime


@dataclass(frozen=True)
class DayPlan:
    """One day's instants, aware, in the exchange's time zone. `close` ends the day's order tracking (the market's
    close); None: no tracking that day (a plan a test builds by hand)."""

    day: date
    warmup: datetime
    arm: datetime
    open: datetime
    window_end: datetime
    close: datetime | None = None

    @property
    def tracks(self) -> bool:
        """Whether there is time between the window's end and the close to follow the orders."""
        return self.close is not None and self.close > self.window_end

    def events(self) -> list[Event]:
        return [
            Event("warmup", self.warmup),
            Event("arm", self.arm),
            Event("open", self.open),
            Event("window_end", self.window_end),
        ]


@dataclass(frozen=True)
class Phase:
    """What a daemon started at some moment must do first.

    before_warmup / warm_now / in_window / tracking: `plan` is today's. in_window runs from the arm time to the
    window's end: a daemon (re)started then arms at once and fires what is left of the window, since a
    restart at 08:44:59.950 must still send today. tracking runs from the window's end to the close when
    `tracking.enabled`: a daemon (re)started then goes straight to following the day's orders. after_window / closed_day: `plan` is the next trading
    day's, whose warmup is the thing to wait for; `closed` says why today is closed.
    """

    name: PhaseName
    plan: DayPlan
    closed: str | None = None


@dataclass(frozen=True)
class AgendaDay:
    """A day of the coming schedule: a trading day's events still ahead, or why the day is closed."""

    day: date
    events: list[Event]
    closed: str | None = None


def day_plan(config: Config, day: date) -> DayPlan:
    """The instants of `day`, whether or not it is a trading day (ask the calendar for that)."""
    schedule, tz = config.schedule, config.tz
    open_at = datetime.combine(day, schedule.open, tzinfo=tz)
    return DayPlan(
        day=day,
        warmup=datetime.combine(day, schedule.warmup, tzinfo=tz),
        arm=open_at - timedelta(seconds=schedule.arm_before_s),
        open=open_at,
        window_end=open_at + timedelta(seconds=schedule.window_s),
        close=close_of(schedule, day, tz) if config.tracking.enabled else None,
    )


def close_of(schedule: ScheduleSettings, day: date, tz: tzinfo) -> datetime:
    """When order tracking ends on `day`: `schedule.close`, or 12:30; never before the fire window's end (an open
    set after 12:30, as a simulator's or a test's day is, has no tracking unless it names its own close)."""
    window_end = datetime.combine(day, schedule.open, tzinfo=tz) + timedelta(seconds=schedule.window_s)
    return max(datetime.combine(day, schedule.close or MARKET_CLOSE, tzinfo=tz), window_end)


def calendar_for(config: Config) -> TradingCalendar:
    """The config's trading calendar (reads the holidays file: build it once and pass it along)."""
    return TradingCalendar(config.schedule, config.tz)


def next_events(config: Config, now: datetime, count: int, calendar: TradingCalendar | None = None) -> list[Event]:
    """The next `count` events strictly after `now`, on trading days only."""
    calendar = calendar or calendar_for(config)
    events: list[Event] = []
    day = _local_day(config, now)
    while len(events) < count:
        day = calendar.next_trading_day(day)
        events += [event for event in day_plan(config, day).events() if event.at > now]
        day += timedelta(days=1)
    return events[:count]


def phase_at(config: Config, now: datetime, calendar: TradingCalendar | None = None) -> Phase:
    """Where in the day `now` falls, as what to do about it (see `Phase`)."""
    calendar = calendar or calendar_for(config)
    today = _local_day(config, now)
    closed = calendar.why_closed(today)
    if closed is not None:
        return Phase("closed_day", day_plan(config, calendar.next_trading_day(today)), closed)
    plan = day_plan(config, today)
    if now < plan.warmup:
        return Phase("before_warmup", plan)
    if now < plan.arm:
        return Phase("warm_now", plan)
    if now < plan.window_end:
        return Phase("in_window", plan)
    if plan.tracks and plan.close is not None and now < plan.close:
        return Phase("tracking", plan)
    return Phase("after_window", day_plan(config, calendar.next_trading_day(today, include_today=False)))


def agenda(
    config: Config, now: datetime, trading_days: int, calendar: TradingCalendar | None = None
) -> list[AgendaDay]:
    """The next `trading_days` days that still have events after `now`, and every closed day among them."""
    calendar = calendar or calendar_for(config)
    days: list[AgendaDay] = []
    day = _local_day(config, now)
    while sum(1 for entry in days if entry.events) < trading_days:
        opens = calendar.next_trading_day(day)
        days += [AgendaDay(closed, [], calendar.why_closed(closed)) for closed in _span(day, opens)]
        ahead = [event for event in day_plan(config, opens).events() if event.at > now]
        if ahead:
            days.append(AgendaDay(opens, ahead))
        day = opens + timedelta(days=1)
    return days


def _span(start: date, stop: date) -> list[date]:
    return [start + timedelta(days=offset) for offset in range((stop - start).days)]


def _local_day(config: Config, now: datetime) -> date:
    if now.tzinfo is None:
        raise ValueError("the schedule needs a timezone-aware `now`")
    return now.astimezone(config.tz).date()
