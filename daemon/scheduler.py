"""When the daemon's day happens: warm up, keep fresh, arm, fire, report, on trading days only.

The scheduler decides *when* and calls a `DayRunner` for *what*; it knows nothing of logins, caches or
sockets, and nothing calls back into it.

Why the deciding is apart from the waking. APScheduler 3.11 reads the wall clock itself
(the wall time in `BaseScheduler._process_jobs` and `_real_add_job`, and again in the executors'
misfire check) and has no hook for another clock, so a trading week cannot run through it in
fake time without patching its module globals. So every decision is made here, from the pure day
arithmetic of `daemon.days._day_plan` and `clock.now()`, in one coroutine per day (`DayScheduler.run`), and
the only thing it asks of the outside is an `Alarm`: "return at this wall time". In production that is
`APSchedulerAlarm`, one APScheduler date job per wait on an `AsyncIOScheduler` in the config's zone
with the in-memory job store (so nothing outlives the process: the jobs are rebuilt from the config at
every start and reload). In tests it is `ClockAlarm` over `FakeClock.sleep_until` under looptime, so a
whole week runs in a moment through exactly the code that runs in production; `APSchedulerAlarm` has
its own short real-time test.

APScheduler can wake tens of milliseconds late, so it never decides the instant of the open: `fire` is
called right after `arm`, about a minute early, and the runner waits for the open with its own precise
wait. Warmup and arm never hold each other up: a warmup still running at arm time is logged loudly and
arm and fire go on for the accounts that are ready. A runner method that raises is one log line.

After the report, the day's accepted orders are followed (`track`) on the `tracking` cadence
(`daemon.tracking.Cadence`) until every one has ended or the market closes (`plan.close`); a daemon (re)started
then goes straight to tracking. A stop during tracking cancels it at once: every change is already in the
journal, which is where a restart takes it up.

A daemon (re)started inside the fire window (from the arm time to the window's end: systemd restarting
it after a crash at 08:44:59.950, say) arms at once, with no warmup (the arm works from the cache and
logs in only where a token is missing), fires what is left of the window and reports; the executor reads
the day's journal at arm, so an order already sent is not sent again. Nothing here cuts a window short:
`fire` follows every `arm`, however late it ends, and the executor keeps to its own window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal, Protocol

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from daemon.clock import Clock
from daemon.config import Config
from daemon.days import DayPlan, Phase, TradingCalendar, calendar_for, next_events, phase_at, time_of_day
from daemon.logs import get_logger
from daemon.tracking import Cadence

Step = Literal["warmup", "refresh", "arm", "fire", "report", "track"]


class DayRunner(Protocol):
    """What a trading day does; the scheduler only says when. The real one wires warmup, client and executor."""

    async def warmup(self, plan: DayPlan) -> None:
        """Log in, fetch, compute, fill the cache."""

    async def refresh(self, plan: DayPlan) -> None:
        """Keep fresh: called on a `schedule.refresh_s` beat from warmup until the window ends.

        Never while warmup runs and never two at once, but it may overlap arm and fire: a runner that
        must not refresh once armed returns at once then.
        """

    async def arm(self, plan: DayPlan) -> None:
        """Build the firing plans and open the connections."""

    async def fire(self, plan: DayPlan) -> None:
        """Wait for `plan.open` with a precise wait of its own, run the window, return after it."""

    async def report(self, plan: DayPlan) -> None:
        """Write the day's report to the log."""

    async def track(self, plan: DayPlan, final: bool) -> bool:
        """One beat of order tracking (after the report, until `plan.close`, on the `tracking` cadence): read the
        broker's lists once per account and journal what changed; True once nothing is left to follow. `final`
        is the close's beat, after which the day's tracking is over whatever it returns."""

    async def aclose(self) -> None: ...


class Alarm(Protocol):
    async def until(self, when: datetime) -> None:
        """Return once the wall clock has reached `when` (at once if it has)."""

    def close(self) -> None: ...


class ClockAlarm:
    """Waits on the injected clock: `FakeClock` in tests; with `SystemClock` it works in production too."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def until(self, when: datetime) -> None:
        await self._clock.sleep_until(when)

    def close(self) -> None:
        pass


class APSchedulerAlarm:
    """Each wait is an APScheduler date job that resolves a future; a job whose time has passed runs at once."""

    def __init__(self, timezone: Any) -> None:
        self._scheduler = AsyncIOScheduler(
            timezone=timezone, job_defaults={"misfire_grace_time": None, "coalesce": True}
        )
        self._closed = False

    async def until(self, when: datetime) -> None:
        if not self._scheduler.running:
            self._scheduler.start()  # binds to the running loop
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        job = self._scheduler.add_job(_wake, DateTrigger(run_date=when), args=[woken])
        try:
            await woken
        finally:
            if woken.cancelled() or not woken.done():  # the wait was cancelled: drop its job
                try:
                    job.remove()
                except JobLookupError:
                    pass

    def close(self) -> None:
        if self._scheduler.running and not self._closed:  # shutdown is deferred to the loop: once only
            self._closed = True
            self._scheduler.shutdown(wait=False)


async def _wake(woken: asyncio.Future[None]) -> None:
    """The job APScheduler runs (a coroutine, so it runs on the loop rather than in a thread)."""
    if not woken.done():
        woken.set_result(None)


def plan_to_work(config: Config, now: datetime, calendar: TradingCalendar) -> DayPlan:
    """The trading day a scheduler started (or done with a day) at `now` works next.

    Today's until its window ends, warmup or arm time passed or not (a late start warms at once, one
    inside the fire window arms at once); else the next trading day's. The rule is `phase_at`'s.
    """
    return phase_at(config, now, calendar).plan


def next_refresh(previous: datetime, now: datetime, every: timedelta) -> datetime:
    """The first beat of the `every` cadence from `previous` that is later than `now` (slow refreshes skip beats)."""
    if now < previous:
        return previous + every
    return previous + every * ((now - previous) // every + 1)


def describe_next(config: Config, now: datetime, calendar: TradingCalendar) -> str:
    """One line for the start-up log: the next trading day's coming events, in the exchange's zone."""
    events = next_events(config, now, 4, calendar)
    parts = []
    for index, event in enumerate(events):
        at = event.at.astimezone(config.tz)
        new_day = index == 0 or at.date() != events[index - 1].at.astimezone(config.tz).date()
        parts.append(
            f"{event.kind} {at:%a %Y-%m-%d} {time_of_day(at)} {at:%z}" if new_day else f"{event.kind} {time_of_day(at)}"
        )
    return ", ".join(parts)


def when_text(moment: datetime) -> str:
    """ "2026-11-28 08:20 +0330" (seconds and milliseconds only when there are some), for STATUS lines."""
    clock = time_of_day(moment)
    return f"{moment:%Y-%m-%d} {clock.removesuffix(':00') if not moment.microsecond else clock} {moment:%z}"


class DayScheduler:
    """Works trading days one after another until stopped; see the module docstring for the rules."""

    def __init__(
        self,
        config: Config,
        runner: DayRunner,
        clock: Clock,
        alarm: Alarm,
        *,
        calendar: TradingCalendar | None = None,
        status: Callable[[str], object] | None = None,
    ) -> None:
        self.config = config
        self.runner = runner
        self.clock = clock
        self.alarm = alarm
        self.calendar = calendar or calendar_for(config)
        self._status = status or (lambda text: None)
        self._refresh_every = timedelta(seconds=config.schedule.refresh_s)
        self._task: asyncio.Task[None] | None = None
        self._window: asyncio.Task[None] | None = None
        self._window_end: datetime | None = None
        self._tracked: date | None = None  # the day whose tracking ended early (every order final)
        self._log = get_logger("scheduler")

    def start(self) -> asyncio.Task[None]:
        """Run the days in a task of the running loop; it ends only by `stop` (or a bug, which it raises)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="day-scheduler")
        return self._task

    @property
    def in_window(self) -> bool:
        """True from arm until the day's report is written: the part a stop or a reload waits for."""
        return self._window is not None and not self._window.done()

    async def stop(self) -> None:
        """Stop, after the fire window if one is under way (arm, fire, report); other work is cancelled."""
        if self.in_window:
            self._log.info(
                "stopping after the fire window", window_end=self._window_end.isoformat() if self._window_end else None
            )
            await asyncio.wait([self._window])  # type: ignore[list-item]
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.alarm.close()

    async def run(self) -> None:
        while True:
            phase = phase_at(self.config, self.clock.now(), self.calendar)
            if phase.name == "tracking" and phase.plan.day == self._tracked:  # ended early: on to the next day
                phase = phase_at(self.config, phase.plan.close or phase.plan.window_end, self.calendar)
            await self._day(phase)

    async def _day(self, phase: Phase) -> None:
        plan = phase.plan
        log = self._log.bind(day=plan.day.isoformat())
        if phase.name == "tracking":
            log.warning("started after the fire window: tracking the day's orders", close=str(plan.close))
            await self._track(plan)
            return
        if phase.name == "in_window":
            log.warning(
                "started inside the fire window: arming now",
                arm=plan.arm.isoformat(),
                open=plan.open.isoformat(),
                window_end=plan.window_end.isoformat(),
            )
            await self._run_window(plan, None, None, started_at=self.clock.now())
            await self._track(plan)
            return
        now = self.clock.now()
        if now < plan.warmup:
            if plan.day == now.astimezone(self.config.tz).date():
                self._status(f"waiting for warmup at {when_text(plan.warmup)}")
            else:
                self._status(f"idle until {when_text(plan.warmup)}")
            log.info("waiting for warmup", warmup=plan.warmup.isoformat())
            await self.alarm.until(plan.warmup)
        else:
            log.warning(
                "started after the warmup time: warming up now",
                warmup=plan.warmup.isoformat(),
                open=plan.open.isoformat(),
            )
        self._status("warming up")
        warm = asyncio.create_task(self._call("warmup", plan), name="warmup")
        refresher = asyncio.create_task(self._refresh(plan, warm), name="refresh")
        try:
            await self.alarm.until(plan.arm)
            if not warm.done():
                log.error(
                    "warmup still running at arm time: arming and firing the accounts that are ready",
                    open=plan.open.isoformat(),
                )
            await self._run_window(plan, warm, refresher)
        finally:
            for task in (warm, refresher):
                task.cancel()
            await asyncio.gather(warm, refresher, return_exceptions=True)
        await self._track(plan)

    async def _track(self, plan: DayPlan) -> None:
        """Beats of `track` from the window's end to the close; it ends early once the runner says nothing is left.
        A beat that raises is one log line and the next beat comes as planned."""
        if not plan.tracks or plan.close is None:
            return
        settings = self.config.tracking
        cadence = Cadence.of_day(
            plan.day,
            self.config.tz,
            plan.window_end,
            plan.close,
            settings.every_s,
            settings.until,
            settings.then_every_s,
        )
        log = self._log.bind(day=plan.day.isoformat(), step="track")
        beat = cadence.first_from(self.clock.now())
        if beat is None:
            return
        self._status(f"tracking the day's orders until {when_text(plan.close)}")
        log.info("track started", close=plan.close.isoformat())
        while beat is not None:
            await self.alarm.until(beat)
            final = beat >= plan.close
            try:
                done = await self.runner.track(plan, final)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (a tracking failure must leave the service running)
                log.error("track failed", reason=one_line(exc))
                done = False
            if done or final:
                log.info("track done", at_close=final, ended_early=not final)
                if not final:
                    self._tracked = plan.day
                return
            beat = cadence.next_after(self.clock.now())

    async def _run_window(
        self,
        plan: DayPlan,
        warm: asyncio.Task[bool] | None,
        refresher: asyncio.Task[None] | None,
        started_at: datetime | None = None,
    ) -> None:
        """The fire window as a task of its own, shielded: a stop waits for it (see `stop`)."""
        self._window_end = plan.window_end
        self._window = asyncio.create_task(self._fire_window(plan, warm, refresher, started_at), name="fire-window")
        await asyncio.shield(self._window)

    async def _fire_window(
        self,
        plan: DayPlan,
        warm: asyncio.Task[bool] | None,
        refresher: asyncio.Task[None] | None,
        started_at: datetime | None,
    ) -> None:
        """Arm, fire, and once the window is over, report: this part is never cut short by a stop.

        A scheduler started inside the window (at `started_at`) has no warmup or refresh task.
        """
        log = self._log.bind(day=plan.day.isoformat())
        arming = "started inside the fire window: arming now" if started_at is not None else "arming"
        self._status(f"{arming} for the open at {when_text(plan.open)}")
        await self._call("arm", plan)
        now = self.clock.now()
        if now >= plan.open and (started_at is None or started_at < plan.open):  # a start after it said so
            log.error("arm ended after the open: firing late", open=plan.open.isoformat())
        late = "late, the open was " if now >= plan.open else ""
        self._status(f"armed: firing {late}at {when_text(plan.open)}")
        await self._call("fire", plan)
        await self.alarm.until(plan.window_end)
        if refresher is not None:
            refresher.cancel()  # its beats end with the window; a refresh still running is cut short
            await asyncio.gather(refresher, return_exceptions=True)
        if warm is not None and not warm.done():
            log.error("warmup still running after the window: cancelled")
            warm.cancel()
        self._status("reporting")
        await self._call("report", plan)

    async def _refresh(self, plan: DayPlan, warm: asyncio.Task[bool]) -> None:
        """Beats every `refresh_s` from the warmup's start until the window ends; none while warmup runs."""
        beat = next_refresh(max(plan.warmup, self.clock.now()), self.clock.now(), self._refresh_every)
        while beat < plan.window_end:
            await self.alarm.until(beat)
            if warm.done():
                await self._call("refresh", plan, quiet=True)
            else:
                self._log.debug("refresh skipped: warmup still running", day=plan.day.isoformat())
            beat = next_refresh(beat, self.clock.now(), self._refresh_every)

    async def _call(self, step: Step, plan: DayPlan, quiet: bool = False) -> bool:
        """Run one runner method; its failure is one log line and never ends the day or the service."""
        log = self._log.bind(day=plan.day.isoformat(), step=step)
        started = self.clock.monotonic_ns()
        if not quiet:
            log.info(f"{step} started")
        try:
            await getattr(self.runner, step)(plan)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 (any runner failure must leave the service running)
            log.error(f"{step} failed", reason=one_line(exc))
            return False
        took = round((self.clock.monotonic_ns() - started) / 1e9, 3)
        (log.debug if quiet else log.info)(f"{step} done", took_s=took)
        return True


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
