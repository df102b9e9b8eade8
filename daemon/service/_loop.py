"""The long-running service behind `python -m daemon run`: one `DayScheduler` at a time, steered by signals.

- SIGTERM / SIGINT: stop. A fire window under way (arm, fire, report) is finished first, then the runner
  is closed and `run` returns 0.
- SIGHUP: read the config again. An invalid one is refused with its one-sentence error and the running
  schedule goes on; a valid one gets a new runner and a new schedule (after a fire window under way).

It tells systemd what it is doing (`daemon.service._sdnotify`): READY=1 once the schedule is running, STATUS= for
every phase, WATCHDOG=1 from the event loop at half the watchdog interval (so a blocked loop is
restarted), STOPPING=1 when it stops. The scheduler dying of a bug ends `run` with 1, so
`Restart=on-failure` brings the service back.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

from daemon.clock import Clock
from daemon.config import Config, load_config
from daemon.days import TradingCalendar, calendar_for, next_events
from daemon.errors import UserError
from daemon.logs import get_logger, scrub
from daemon.preflight import preflight
from daemon.scheduler import Alarm, APSchedulerAlarm, DayRunner, DayScheduler, describe_next, one_line
from daemon.service._sdnotify import Notifier

RunnerFactory = Callable[[Config, Clock], DayRunner]
AlarmFactory = Callable[[Config], Alarm]
SIGNALS = {signal.SIGTERM: "stop", signal.SIGINT: "stop", signal.SIGHUP: "reload"}


def apscheduler_alarm(config: Config) -> Alarm:
    return APSchedulerAlarm(config.tz)


class ServiceLoop:
    """Runs until a stop signal; `run` installs its signal handlers on the running loop and removes them after."""

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None,
        clock: Clock,
        runner_factory: RunnerFactory,
        *,
        alarm_factory: AlarmFactory = apscheduler_alarm,
        notifier: Notifier | None = None,
    ) -> None:
        self._config_path = config_path
        self._clock = clock
        self._runner_factory = runner_factory
        self._alarm_factory = alarm_factory
        self._notifier = notifier or Notifier()
        self._commands: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._status_text = "starting"
        self._log = get_logger("service")
        self.config: Config | None = None
        self.runner: DayRunner | None = None
        self.scheduler: DayScheduler | None = None

    async def run(self) -> int:
        """Serve until stopped; 0 after a stop signal, 1 if the scheduler died. Bad config: `UserError` before READY."""
        config, calendar = self._load()
        await preflight(config)
        self.runner = self._runner_factory(config, self._clock)
        loop = asyncio.get_running_loop()
        for signum, command in SIGNALS.items():
            loop.add_signal_handler(signum, self._commands.put_nowait, (command, signal.Signals(signum).name))
        watchdog: asyncio.Task[None] | None = None
        try:
            await _join(self.runner)
            self._start(config, self.runner, calendar)
            self._log.info(
                "service started",
                config=str(self._config_path or "config.yaml"),
                pid=os.getpid(),
                next=describe_next(config, self._clock.now(), calendar),
            )
            self._notifier.ready()
            interval = self._notifier.watchdog_interval_s
            if interval is not None:
                watchdog = asyncio.create_task(self._watchdog(interval), name="watchdog")
            return await self._serve()
        finally:
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)
            if watchdog is not None:
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
            if self.scheduler is not None:
                await self.scheduler.stop()
            await self._close(self.runner)
            self._log.info("service stopped")
            self._notifier.close()

    def _load(self) -> tuple[Config, TradingCalendar]:
        """The config and its calendar, checked as far as a schedule needs (holidays file, a trading day ahead)."""
        config = load_config(self._config_path)
        calendar = calendar_for(config)
        next_events(config, self._clock.now(), 1, calendar)
        return config, calendar

    def _start(self, config: Config, runner: DayRunner, calendar: TradingCalendar) -> DayScheduler:
        self.config = config
        self.scheduler = DayScheduler(
            config, runner, self._clock, self._alarm_factory(config), calendar=calendar, status=self._status
        )
        self.scheduler.start()
        return self.scheduler

    async def _serve(self) -> int:
        assert self.scheduler is not None
        while True:
            scheduler_task = self.scheduler.start()
            command = asyncio.create_task(self._commands.get())
            done, _ = await asyncio.wait({command, scheduler_task}, return_when=asyncio.FIRST_COMPLETED)
            if command not in done:
                command.cancel()
                reason = scheduler_task.exception() if not scheduler_task.cancelled() else None
                self._log.error(
                    "the scheduler stopped: exiting so that systemd restarts the service",
                    reason=one_line(reason) if reason else "cancelled",
                )
                self._notifier.status("failed: the scheduler stopped")
                return 1
            name, signame = command.result()
            if name == "reload":
                await self._reload(signame)
                continue
            self._log.info("stopping", signal=signame, after_window=self.scheduler.in_window)
            self._notifier.stopping("stopping after the fire window" if self.scheduler.in_window else "stopping")
            await self.scheduler.stop()
            return 0

    async def _reload(self, signame: str) -> None:
        assert self.scheduler is not None
        self._notifier.reloading()
        try:
            config, calendar = self._load()
            await preflight(config)
            runner = self._runner_factory(config, self._clock)
        except Exception as exc:  # noqa: BLE001 (a reload must never take the running schedule down)
            reason = scrub(str(exc)) if isinstance(exc, UserError) else one_line(exc)
            self._log.error("config reload refused: the running schedule goes on", signal=signame, reason=reason)
            self._notifier.ready(self._status_text)
            return
        if self.scheduler.in_window:
            self._log.info("config reload waits for the fire window to end", signal=signame)
        await self.scheduler.stop()
        await self._close(self.runner)
        self.runner = runner
        await _join(runner)
        self._start(config, runner, calendar)
        self._log.info("config reloaded", signal=signame, next=describe_next(config, self._clock.now(), calendar))
        self._notifier.ready()

    def _status(self, text: str) -> None:
        self._status_text = text
        self._notifier.status(text)

    async def _watchdog(self, interval_s: float) -> None:
        """WATCHDOG=1 from the event loop itself: if the loop blocks, the pings stop and systemd restarts us."""
        while True:
            self._notifier.watchdog()
            await asyncio.sleep(interval_s)

    async def _close(self, runner: DayRunner | None) -> None:
        if runner is None:
            return
        try:
            await runner.aclose()
        except Exception as exc:  # noqa: BLE001 (closing must not turn a clean stop into a crash)
            self._log.error("closing the runner failed", reason=one_line(exc))


async def _join(runner: DayRunner) -> None:
    """A runner with a `start` (the real one in a group: it takes its leases) starts before the schedule does."""
    start = getattr(runner, "start", None)
    if start is not None:
        await start()
