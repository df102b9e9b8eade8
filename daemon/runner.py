"""The trading day's work, called by the scheduler: warmup, keeping fresh, arm, fire, report.

The scheduler decides when; this decides how, by wiring warmup, the client and the executor. After the
arm, refreshing stops: the executor's final check does the last reads itself, and after it nothing but
NewOrder may reach the broker until the window closes.
"""

from __future__ import annotations

import asyncio

from daemon.client import EphoenixClient
from daemon.clock import Clock
from daemon.config import Config
from daemon.day_plan import DayPlan
from daemon.errors import BrokerError, ConfigError
from daemon.executor import Executor
from daemon.journal import Journal, read_journal
from daemon.logs import get_logger, scrub
from daemon.report import summarize
from daemon.services import Services
from daemon.sizing import split_amounts
from daemon.warmup import warmup

log = get_logger("runner")


class DaemonRunner:
    def __init__(self, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.services = Services(config, clock)
        self.executor: Executor | None = None
        self._armed_day = None

    @property
    def accounts(self):
        return self.config.select_accounts()

    async def warmup(self, plan: DayPlan) -> None:
        results = await warmup(self.services, self.accounts)
        failed = [r for r in results if not r.ok]
        for result in failed:
            log.warning("warmup.not_ready", account=result.account,
                        reason=result.error or "; ".join(o.status for o in result.orders if o.status != "ok"))
        log.info("day.warmed", day=plan.day.isoformat(), ready=len(results) - len(failed), failed=len(failed))

    async def refresh(self, plan: DayPlan) -> None:
        """Whatever has expired is fetched again: tokens (their cache entry ends before the token does),
        buying power, instruments; order parameters are recomputed from them."""
        if self._armed_day == plan.day:
            return
        await asyncio.gather(*(self._refresh_account(self.services.client(a)) for a in self.accounts))

    async def _refresh_account(self, client: EphoenixClient) -> None:
        account = client.account
        try:
            await client.token()
            amounts = [0] * len(account.orders)
            if any(o.side == "buy" for o in account.orders):
                power = await client.get_buying_power(use_cache=True)
                amounts = split_amounts(float(power.get("buyingPower") or 0), [o.share for o in account.orders])
            for order, amount in zip(account.orders, amounts):
                await client.get_instrument(order.isin, use_cache=True)
                await client.order_params(order, amount=amount, use_cache=False)
        except (BrokerError, ConfigError) as exc:
            log.warning("refresh.failed", account=account.name, reason=scrub(str(exc)))

    async def arm(self, plan: DayPlan) -> None:
        await self._close_executor()
        self._armed_day = plan.day
        self.executor = Executor(self.services, Journal(self.config.state_dir, plan.day), day=plan.day)
        await self.executor.arm(self.accounts, plan.open)

    async def fire(self, plan: DayPlan) -> None:
        if self.executor is None or self._armed_day != plan.day:
            log.error("fire.not_armed", day=plan.day.isoformat(), consequence="arming now, late")
            await self.arm(plan)
        assert self.executor is not None
        await self.executor.run_after_arm()

    async def report(self, plan: DayPlan) -> None:
        rows = summarize(read_journal(self.config.state_dir, plan.day))
        for row in rows:
            log.info("report.order", **row.to_dict())
        log.info("report.day", day=plan.day.isoformat(), orders=len(rows), accepted=sum(r.accepted for r in rows))
        await self._close_executor()
        self._armed_day = None

    async def _close_executor(self) -> None:
        if self.executor is not None:
            await self.executor.aclose()
            self.executor = None

    async def aclose(self) -> None:
        await self._close_executor()
        await self.services.aclose()


def make_runner(config: Config, clock: Clock) -> DaemonRunner:
    return DaemonRunner(config, clock)
