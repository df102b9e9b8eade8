"""Warmup: everything an order needs, fetched and computed before the open and put in the cache.

Accounts run concurrently; captcha fetches are spaced per identity host by the shared limiter, so one
broker's throttling or one account's bad password never holds up another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from daemon import metrics
from daemon.client import BrokerClient, OrderParams
from daemon.clock import Clock
from daemon.errors import BrokerError, ConfigError, OrderRejected
from daemon.logs import get_logger, scrub
from daemon.sizing import split_amounts

log = get_logger("warmup")


@dataclass
class OrderReady:
    isin: str
    symbol: str
    side: str
    price: int | None = None
    volume: int | None = None
    status: str = "ok"


@dataclass
class AccountWarmup:
    account: str
    broker: str
    token_valid_until: str | None = None
    buying_power: float | None = None
    orders: list[OrderReady] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(o.status == "ok" for o in self.orders)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


async def warmup(clients: Sequence[BrokerClient], clock: Clock) -> list[AccountWarmup]:
    """Every account's client warmed at once (`Wiring.clients(accounts)` gives them); the clock times the whole."""
    started = clock.monotonic_ns()
    results = await asyncio.gather(*(warm_account(client) for client in clients))
    seconds = (clock.monotonic_ns() - started) / 1e9
    log.info("warmup.done", accounts=len(results), failed=sum(not r.ok for r in results), seconds=round(seconds, 3))
    metrics.warmup_done(seconds)
    return list(results)


async def warm_account(client: BrokerClient) -> AccountWarmup:
    account = client.account
    result = AccountWarmup(account.name, client.broker)
    try:
        token = await client.current_token()
        result.token_valid_until = token.valid_until.isoformat()
        result.buying_power = (await client.buying_power(use_cache=False)).amount
        amounts = split_amounts(result.buying_power or 0, [o.share for o in account.orders])
        for order, amount in zip(account.orders, amounts):
            result.orders.append(await _warm_order(client, order, amount))
    except (BrokerError, ConfigError) as exc:
        result.error = scrub(str(exc))
        log.warning("warmup.account_failed", account=account.name, reason=result.error)
    return result


async def _warm_order(client: BrokerClient, order: Any, amount: int) -> OrderReady:
    ready = OrderReady(order.isin, "", order.side)
    try:
        instrument = await client.get_instrument(order.isin)
        ready.symbol = instrument.symbol
        params = await client.order_params(order, amount=amount, use_cache=False)
        ready.price, ready.volume = params.price, params.volume
        if params.volume <= 0:
            ready.status = "nothing to " + ("buy with" if order.side == "buy" else "sell")
        elif order.side == "buy" and order.volume == "auto" and client.cross_check:
            await _cross_check(client, params)
    except BrokerError as exc:
        ready.status = scrub(str(exc))
    return ready


async def _cross_check(client: BrokerClient, params: OrderParams) -> None:
    """The broker's CalculateOrderParam should agree with the local formula; a disagreement is logged, not fatal."""
    try:
        theirs = await client.broker_volume(params.isin, params.side, params.price, params.amount)
    except (BrokerError, OrderRejected) as exc:
        client.log.info("crosscheck.unavailable", isin=params.isin, reason=str(exc))
        return
    if theirs is not None and theirs != params.volume:
        client.log.warning("crosscheck.disagree", isin=params.isin, local=params.volume, broker=theirs)
