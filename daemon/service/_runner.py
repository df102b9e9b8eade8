"""The trading day's work, called by the scheduler: warmup, keeping fresh, arm, fire, report, track.

The scheduler decides when; this decides how, by wiring warmup, the client and the executor. After the
arm, refreshing stops: the executor's final check does the last reads itself, and after it nothing but
NewOrder may reach the broker until the window closes.

In a group (`group.enabled`, several processes on one Redis, see `daemon.service._group`) this process works only
the accounts it holds the lease of, and follows the leases as they move: an account gained after the
warmup is warmed at once, one gained after the arm (its owner died) is warmed and armed on its own
executor, up to `LATE_ARM_CUTOFF_S` before the final check; an account lost is dropped at the final check.

After the report each `track` beat follows the day's accepted orders of the accounts this process works (in a
group those it holds then) through the broker's lists (`daemon.tracking.Tracker`), from the journal, so a restarted
process resumes where the last one stopped.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from daemon import metrics
from daemon.account import CaptchaSolver
from daemon.client import EphoenixClient
from daemon.clock import Clock
from daemon.config import AccountSettings, Config
from daemon.days import DayPlan
from daemon.errors import BrokerError, ConfigError
from daemon.executor import Executor
from daemon.firing import Journal, read_journal, summarize
from daemon.logs import get_logger, scrub
from daemon.notify import Notifications
from daemon.service._group import Change, Group, group_from_services
from daemon.tracking import Tracker
from daemon.warmup import warmup
from daemon.wiring import Wiring

log = get_logger("runner")
REFRESH_FLOOR = 10
"""A capped account (easytrader) is not refreshed when fewer requests than this are left in its hour (a cold login
and a read): the budget's reserve for the open is never touched anyway, this keeps refreshes from failing at it."""
LATE_ARM_CUTOFF_S = 3.0
"""Accounts taken over later than this before the final check are not armed that day: an arm (plans,
connections, the broker's clock) must be done before the last reads."""
LATE_ARM_S = 5.0
"""An arm this long after its time is a (re)start inside the window: the user is told (service_stopped_in_window)."""


class DaemonRunner:
    def __init__(self, config: Config, clock: Clock, solver: CaptchaSolver | None = None) -> None:
        self.config = config
        self.clock = clock
        self.notify = Notifications.from_config(config, clock)  # before the wiring: a bad notify config opens nothing
        self.services = Wiring(config, clock, solver=solver)
        metrics.watch_cache(self.services.cache)
        self.group: Group | None = None
        if config.group.enabled:
            self.group = group_from_services(self.services, config.select_accounts(), self._leases_changed)
        self.executors: list[Executor] = []
        self._journal: Journal | None = None
        self._day: DayPlan | None = None
        self._armed_day = None
        self._runs: list[asyncio.Task[None]] | None = None  # set while firing
        self._late_arms: set[asyncio.Task[None]] = set()
        self._tracker: Tracker | None = None

    @property
    def executor(self) -> Executor | None:
        return self.executors[0] if self.executors else None

    @property
    def accounts(self) -> list[AccountSettings]:
        """The accounts this process works: every enabled one, or in a group those it holds the lease of."""
        selected = self.config.select_accounts()
        if self.group is None:
            return selected
        return [a for a in selected if self.group.holds(a.name)]

    async def start(self) -> None:
        """Join the group (a first lease round, then the heartbeat); every step calls it, the service may earlier."""
        if self.group is not None:
            await self.group.start()

    async def warmup(self, plan: DayPlan) -> None:
        await self.start()
        self._day = plan
        await self._warm(self.accounts, plan)
        await self.services.rest_solver()  # the morning's logins are done: the OCR worker goes

    async def _warm(self, accounts: list[AccountSettings], plan: DayPlan) -> None:
        results = await warmup(self.services.clients(accounts), self.services.clock)
        failed = [r for r in results if not r.ok]
        for result in failed:
            reason = result.error or "; ".join(o.status for o in result.orders if o.status != "ok")
            log.warning("warmup.not_ready", account=result.account, reason=reason)
            if self.notify is not None:
                self.notify.warmup_failed(plan.day, result.account, result.broker, scrub(reason))
        log.info("day.warmed", day=plan.day.isoformat(), ready=len(results) - len(failed), failed=len(failed))

    async def refresh(self, plan: DayPlan) -> None:
        """Whatever has expired is fetched again: tokens (their cache entry ends before the token does),
        buying power, instruments; order parameters are recomputed from them."""
        await self.start()
        if self._armed_day == plan.day:
            return
        await asyncio.gather(*(self._refresh_account(self.services.client(a)) for a in self.accounts))

    async def _refresh_account(self, client: EphoenixClient) -> None:
        account = client.account
        budget = client.requests
        if budget is not None and (budget.left() or 0) < REFRESH_FLOOR:
            log.warning("refresh.skipped", account=account.name, reason="the hourly request cap", **budget.summary())
            return
        renewing = True  # a failure before the token is a login that could not be renewed
        try:
            await client.token()
            renewing = False
            for order, amount in zip(account.orders, await client.order_amounts(use_cache=True)):
                await client.get_instrument(order.isin, use_cache=True)
                await client.order_params(order, amount=amount, use_cache=False)
        except (BrokerError, ConfigError) as exc:
            log.warning("refresh.failed", account=account.name, reason=scrub(str(exc)))
            if renewing and self.notify is not None and self._day is not None:
                self.notify.token_renewal_failed(self._day.day, account.name, scrub(str(exc)))

    async def arm(self, plan: DayPlan) -> None:
        await self.start()
        if self.group is not None:
            self.group.freeze()
        await self._close_executors()
        self._day = plan
        self._armed_day = plan.day
        self._journal = Journal(self.config.state_dir, plan.day)
        if self.notify is not None:
            self.notify.hold(until=plan.window_end)  # nothing is sent from here until the report
            if self.clock.now() > plan.arm + timedelta(seconds=LATE_ARM_S):
                self.notify.restarted_in_window(plan.day, self.clock.now().astimezone(self.config.tz))
        await self._arm(self.accounts, plan)
        await self.services.rest_solver()  # a login the arm needed is done: the armed service holds no OCR worker

    async def _arm(self, accounts: list[AccountSettings], plan: DayPlan) -> Executor:
        assert self._journal is not None
        executor = Executor.from_wiring(self.services, self._journal, day=plan.day)
        if self.group is not None:
            executor.keep = self.group.holds
            executor.exclusive = False  # the leases keep the group's processes apart (and late arms share the journal)
        self.executors.append(executor)
        await executor.arm(accounts, plan.open)
        return executor

    async def fire(self, plan: DayPlan) -> None:
        if not self.executors or self._armed_day != plan.day:
            log.error("fire.not_armed", day=plan.day.isoformat(), consequence="arming now, late")
            await self.arm(plan)
        self._runs = [asyncio.create_task(e.run_after_arm()) for e in self.executors]
        try:
            if self.group is not None:
                await self._take_over_until_cutoff(plan)
            await asyncio.gather(*self._runs)
        finally:
            self._runs = None

    async def _take_over_until_cutoff(self, plan: DayPlan) -> None:
        """Late takeovers may join this fire until the cutoff; then the group takes nothing new today."""
        assert self.group is not None
        cutoff = plan.open - timedelta(seconds=self.config.executor.final_check_s + LATE_ARM_CUTOFF_S)
        await self.clock.sleep_until(cutoff)
        self.group.stop_gaining()
        if self._late_arms:
            left = max(0.0, (plan.open - self.clock.now()).total_seconds() - self.config.executor.final_check_s)
            _done, late = await asyncio.wait(set(self._late_arms), timeout=left)
            for task in late:
                task.cancel()
                log.error("group.takeover_too_late", consequence="accounts taken over this late are not fired today")

    async def _leases_changed(self, change: Change) -> None:
        """The group's heartbeat says accounts came or went (see the module docstring)."""
        if change.lost:
            log.warning(
                "group.accounts_lost",
                accounts=list(change.lost),
                consequence="dropped at the final check if armed" if self._armed_day else "no longer worked here",
            )
        gained = [a for a in self.config.select_accounts() if a.name in change.gained]
        plan = self._day
        if not gained or plan is None:
            return  # before the day's warmup (or after its report): the warmup will take them
        if self._armed_day == plan.day:
            task = asyncio.create_task(self._arm_late(gained, plan))
            self._late_arms.add(task)
            task.add_done_callback(self._late_arms.discard)
            await asyncio.gather(task, return_exceptions=True)
        else:  # the day's warmup has started (and may still run over the accounts it began with)
            await self._warm(gained, plan)

    async def _arm_late(self, accounts: list[AccountSettings], plan: DayPlan) -> None:
        log.warning("group.takeover_after_arm", accounts=[a.name for a in accounts])
        await self._warm(accounts, plan)
        executor = await self._arm(accounts, plan)
        if self._runs is not None:
            self._runs.append(asyncio.create_task(executor.run_after_arm()))

    async def report(self, plan: DayPlan) -> None:
        rows = summarize(read_journal(self.config.state_dir, plan.day))
        for row in rows:
            log.info("report.order", **row.to_dict())
        log.info("report.day", day=plan.day.isoformat(), orders=len(rows), accepted=sum(r.accepted for r in rows))
        if self.notify is not None:
            self.notify.fire_summary(plan.day, rows)
            self.notify.release()
        self.services.log_requests(self.accounts, "report.requests")  # what capped accounts spent this morning
        await self._close_executors()
        self._day = self._armed_day = None  # accounts gained from now on wait for the next warmup
        if self.group is not None:
            self.group.thaw()

    async def track(self, plan: DayPlan, final: bool = False) -> bool:
        """One tracking beat (see `daemon.tracking`); a capped account below REFRESH_FLOOR is not read this beat."""
        await self.start()
        if self._tracker is None or self._tracker.day != plan.day:
            self._tracker = Tracker(
                self.config.state_dir,
                plan.day,
                self.config.tz,
                self.clock,
                lambda: [self.services.client(a) for a in self.accounts],
                notify=self.notify,
                budget_floor=REFRESH_FLOOR,
            )
        return await self._tracker.beat(final)

    async def _close_executors(self) -> None:
        executors, self.executors = self.executors, []
        for executor in executors:
            await executor.aclose()

    async def aclose(self) -> None:
        if self.group is not None:
            await self.group.stop(release=True)
        await self._close_executors()
        await self.services.aclose()
        if self.notify is not None:
            await self.notify.aclose()


def make_runner(config: Config, clock: Clock, solver: CaptchaSolver | None = None) -> DaemonRunner:
    """The service's runner; `solver` replaces the configured captcha solver (a test's in-process one)."""
    return DaemonRunner(config, clock, solver)
