"""Fills (issue 17's proof): the simulator executes part of an order some time after the open by a per-instrument
plan, or by hand, and ends one on request; each platform's real session then reads what executed, at what average
price, and whether the broker ended it, from that platform's own order lists. In fake time: the delays cost nothing.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from decimal import Decimal

import pytest

from daemon.platforms import BrokerOrder, Verdict
from daemon.platforms.easytrader import broker_order as easytrader_order
from daemon.platforms.ephoenix import broker_order as ephoenix_order
from daemon.platforms.exir import broker_order as exir_order
from daemon.platforms.onlineplus import broker_order as onlineplus_order
from daemon.sim import (
    BUY,
    SELL,
    Account,
    FillPlan,
    FillStep,
    Instrument,
    Market,
    OrderRequest,
    OrderRules,
    Trade,
    parse_fill,
)
from daemon.testing import LoopClock, SimulatorSolver, daemon_clock, running_simulator, sim_config, sim_settings
from daemon.wiring import Wiring

HOT, OTHER, COLD = "IRO1FOLD0001", "IRO1IKCO0001", "IRO1MSMI0001"  # default instruments: 5,580 / 3,038 / 7,340 rial
PLATFORMS = {"ephoenix": "gs", "exir": "khobregan", "onlineplus": "hafez", "easytrader": "mofid"}
NO_AVERAGE = {"onlineplus"}  # its order list has no traded value or price (onlineplus-api.md)
SEED = 1717


def average(platform: str, value: float) -> float | None:
    return None if platform in NO_AVERAGE else pytest.approx(value)


def ours(orders: list[BrokerOrder], isin: str) -> BrokerOrder:
    [found] = [o for o in orders if o.isin == isin]
    return found


@pytest.mark.looptime
@pytest.mark.parametrize("platform", sorted(PLATFORMS))
async def test_a_planned_partial_fill_then_the_whole_order_and_a_cancel_read_through_the_session(
    platform: str, tmp_path
) -> None:
    code = PLATFORMS[platform]
    async with running_simulator(
        accounts=1, brokers=[(code, platform)], settings=sim_settings(seed=SEED), clock=LoopClock()
    ) as sim:
        open_at = sim.now() + timedelta(seconds=20)
        sim.set_open_at(open_at)
        sim.set_fill(HOT, "0.6@5s:5570", "1@60s")  # 60 % at +5 s for 5,570, the rest at +1 min at the order's price
        config = sim_config(sim, state_dir=str(tmp_path / "state"), cache={"dir": str(tmp_path / "cache")})
        async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
            client = services.client(config.accounts[0])
            await client.token()  # the login before the open, as the warmup does
            await asyncio.sleep((open_at - sim.now()).total_seconds() + 0.5)
            hot = await client.session.new_order(HOT, "buy", 5580, 1000)
            await asyncio.sleep(0.5)
            other = await client.session.new_order(OTHER, "buy", 3038, 2000)
            await asyncio.sleep(0.5)
            cold = await client.session.new_order(COLD, "buy", 7340, 700)  # no plan: it never executes
            assert all(a.verdict is Verdict.ACCEPTED for a in (hot, other, cold))
            day = sim.now().astimezone(config.tz).date()

            before = ours(await client.today_orders(day), HOT)  # +1 s: the first step is at +5 s
            assert (before.volume, before.executed, before.average_price, before.cancelled) == (1000, 0, None, False)

            await asyncio.sleep((open_at + timedelta(seconds=5) - sim.now()).total_seconds())
            partly = ours(await client.today_orders(day), HOT)
            assert (partly.executed, partly.cancelled) == (600, False)
            assert partly.average_price == average(platform, 5570)
            live = sorted((o.isin, o.executed) for o in await client.session.open_orders())
            assert live == [(HOT, 600), (OTHER, 0), (COLD, 0)]

            [booked_other] = [o for o in sim.orders() if o.isin == OTHER]
            sim.fill(booked_other, 500)  # by hand: a quarter, then the broker ends the order
            sim.cancel(booked_other)
            ended = ours(await client.today_orders(day), OTHER)
            assert (ended.executed, ended.cancelled) == (500, True)
            assert ended.average_price == average(platform, 3038)
            assert sorted(o.isin for o in await client.session.open_orders()) == [HOT, COLD]

            await asyncio.sleep((open_at + timedelta(seconds=60) - sim.now()).total_seconds())
            whole = ours(await client.today_orders(day), HOT)
            assert (whole.executed, whole.cancelled) == (1000, False)
            assert whole.average_price == average(platform, (600 * 5570 + 400 * 5580) / 1000)
            # fully executed and cancelled: neither is open
            assert [(o.isin, o.executed, o.cancelled) for o in await client.session.open_orders()] == [(COLD, 0, False)]
            assert not any(o.cancelled for o in await client.today_orders(day) if o.isin != OTHER)


# ---- the plan and the market's executions (pure) --------------------------------------------------------------


def test_a_plan_is_parsed_from_its_text_and_bad_text_is_one_sentence() -> None:
    assert parse_fill("IRO1FOLD0001=0.6@5s") == (HOT, FillPlan((FillStep(5.0, 0.6),)))
    isin, plan = parse_fill(" IRO1FOLD0001=1@1m,0.4@500ms:5570 ")
    assert plan.steps == (FillStep(0.5, 0.4, 5570), FillStep(60.0, 1.0))  # by delay
    assert parse_fill("IRO1FOLD0001=1@2")[1].steps == (FillStep(2.0, 1.0),)  # seconds by default
    for bad, why in (
        ("IRO1FOLD0001", "is not ISIN=RATIO@DELAY"),
        ("fold=0.5@1s", "is not ISIN=RATIO@DELAY"),
        ("IRO1FOLD0001=0.5", "is not RATIO@DELAY"),
        ("IRO1FOLD0001=0.5@1h", "is not RATIO@DELAY"),
        ("IRO1FOLD0001=1.5@1s", "between 0 and 1"),
        ("IRO1FOLD0001=0.5@1s:0", "positive number of rial"),
        ("IRO1FOLD0001=0.8@1s,0.5@2s", "must not decrease"),
    ):
        with pytest.raises(ValueError, match=why) as caught:
            parse_fill(bad)
        assert "\n" not in str(caught.value) and bad in str(caught.value)


def test_the_quantity_is_the_floor_of_volume_times_ratio_exactly() -> None:
    assert [FillStep(0, r).quantity(1000) for r in (0.6, 0.7, 0.333, 0.0, 1.0)] == [600, 700, 333, 0, 1000]
    assert FillStep(0, 0.29).quantity(100) == 29  # 0.29 x 100 is 28.999... in floats


def _market(plans: dict[str, FillPlan]) -> tuple[Market, Account]:
    market = Market(OrderRules(min_order_value=0), random.Random(1), lambda: plans)
    market.add_instrument(Instrument(HOT, "فولاد", "فولاد", last=5420, maxap=5580, minap=5260))
    return market, market.add_account(Account("gs", "u1", "pw", remain=10_000_000))


S = 10**9


def test_executions_follow_the_plan_from_the_open_stop_at_the_cancel_and_free_only_the_rest() -> None:
    plans = {HOT: FillPlan((FillStep(2, 0.4), FillStep(60, 1.0, 5570)))}
    market, account = _market(plans)
    order = market.accept(account, OrderRequest(HOT, BUY, 5580, 1000), created_ns=100 * S)
    assert account.remain == 10_000_000 - market.cost(OrderRequest(HOT, BUY, 5580, 1000))
    assert market.execution(order, 101 * S, open_ns=100 * S).quantity == 0
    at_two = market.execution(order, 102 * S, open_ns=100 * S)
    assert (at_two.quantity, at_two.average_price, at_two.value) == (400, 5580, 400 * 5580)
    whole = market.execution(order, 160 * S, open_ns=100 * S)
    assert (whole.quantity, whole.average_price) == (1000, Decimal(400 * 5580 + 600 * 5570) / 1000)
    assert not market.is_live(order, 160 * S, 100 * S) and market.is_live(order, 159 * S, 100 * S)
    assert market.execution(order, 102 * S, open_ns=None).quantity == 400  # no open set: from its booking
    before = account.remain
    assert market.cancel(account, order.serial_number, 130 * S, 100 * S)  # 400 done, 600 left
    assert account.remain == before + market.cost(OrderRequest(HOT, BUY, 5580, 600))
    assert market.execution(order, 200 * S, open_ns=100 * S).quantity == 400  # nothing after the cancel
    assert not market.cancel(account, order.serial_number, 131 * S, 100 * S)
    with pytest.raises(ValueError, match="cancelled"):
        market.mark_fill(order, 140 * S)


def test_a_fill_marked_by_hand_adds_to_the_plan_and_never_takes_back() -> None:
    market, account = _market({HOT: FillPlan.of(0.5, 10)})
    order = market.accept(account, OrderRequest(HOT, BUY, 5580, 1000), created_ns=0)
    market.mark_fill(order, 1 * S, 200, price=5500)
    assert market.execution(order, 5 * S, 0).trades == (Trade(200, 5500, 1 * S),)
    later = market.execution(order, 10 * S, 0)
    assert later.trades == (Trade(200, 5500, 1 * S), Trade(300, 5580, 10 * S)) and later.quantity == 500
    market.mark_fill(order, 11 * S, 100)  # less than is done: nothing changes
    assert market.execution(order, 12 * S, 0).quantity == 500
    for quantity in (0, 1001, True):
        with pytest.raises(ValueError, match="does not fit"):
            market.mark_fill(order, 12 * S, quantity)
    market.mark_fill(order, 13 * S)  # the whole order
    assert market.execution(order, 13 * S, 0).quantity == 1000 and not market.is_live(order, 13 * S, 0)
    assert not market.cancel(account, order.serial_number, 14 * S, 0)  # nothing left to cancel


def test_a_cancelled_sell_gives_back_only_the_unsold_shares() -> None:
    market, account = _market({})
    account.holdings[HOT] = 100
    order = market.accept(account, OrderRequest(HOT, SELL, 5260, 100), created_ns=0)
    market.mark_fill(order, 1 * S, 30)
    assert market.cancel(account, order.serial_number, 2 * S)
    assert account.holdings[HOT] == 70


# ---- Ephoenix's rows read (garbage never raises) ----------------------------------------------------------------


def test_ephoenix_rows_read_executed_average_and_cancelled_and_garbage_is_none_or_false() -> None:
    row = {"isin": HOT, "orderSide": 1, "serialNumber": 7, "volume": 1000, "executedVolume": 600, "state": 5}
    assert ephoenix_order({**row, "executedAmount": 3_342_000}).average_price == 5570
    assert ephoenix_order(row).average_price is None  # GetOpenOrders has no executedAmount
    assert ephoenix_order({**row, "state": 4}).cancelled and ephoenix_order({**row, "isDone": True}).cancelled
    assert not ephoenix_order({**row, "executedVolume": 1000, "state": 3, "isDone": True}).cancelled
    assert not ephoenix_order(row).cancelled
    for junk in (
        {"executedAmount": "lots"},
        {"executedAmount": float("nan")},
        {"executedVolume": "x"},
        {"isDone": "1"},
    ):
        order = ephoenix_order({**row, **junk, "state": "?"})
        assert order.average_price is None and order.cancelled is False
    assert ephoenix_order({**row, "executedVolume": -5, "executedAmount": 10}).average_price is None


# ---- Exir's, Online+'s and easytrader's rows read (garbage never raises) ----------------------------------------


def test_exir_rows_read_the_average_and_a_cancel_by_its_status_or_by_nothing_left() -> None:
    row = {"insMaxLCode": HOT, "orderSideName": "خريد", "mmtpOrderId": 30_000_001, "quantity": 1000}
    partly = exir_order({**row, "tradedQuantity": 600, "remainingQuantity": 400, "averageTradedPrice": 5574.5})
    assert (partly.executed, partly.average_price, partly.cancelled) == (600, 5574.5, False)
    assert (
        exir_order({**row, "tradedQuantity": 0, "remainingQuantity": 1000, "averageTradedPrice": 0}).average_price
        is None
    )
    assert exir_order({**row, "tradedQuantity": 600, "remainingQuantity": 0}).cancelled  # nothing left, 400 untraded
    assert exir_order(
        {**row, "tradedQuantity": 0, "remainingQuantity": 1000, "mmtpOrderStatusName": "حذف شده"}
    ).cancelled
    done = exir_order({**row, "tradedQuantity": 1000, "remainingQuantity": 0, "mmtpOrderStatusName": "انجام کلي"})
    assert not done.cancelled
    assert not exir_order(
        {**row, "tradedQuantity": 1, "remainingQuantity": 999, "mmtpOrderStatusName": "در صف"}
    ).cancelled
    for junk in (
        {"averageTradedPrice": "x"},
        {"mmtpOrderStatusName": 4},
        {"remainingQuantity": "?"},
        {"quantity": None},
    ):
        order = exir_order({**row, "tradedQuantity": "six", **junk})
        assert (order.executed, order.average_price, order.cancelled) == (None, None, False)


def test_online_plus_rows_have_no_average_and_read_a_cancel_from_the_state_text() -> None:
    row = {"SymbolIsin": HOT, "OrderSide": "خرید", "OrderId": 1, "Quantity": 1000, "ExcutedAmount": 400}
    assert (onlineplus_order(row).executed, onlineplus_order(row).average_price) == (400, None)
    assert onlineplus_order({**row, "OrderState": "لغو شده"}).cancelled
    assert not onlineplus_order({**row, "OrderState": "بخشی اجرا شده"}).cancelled
    assert not onlineplus_order({**row, "ExcutedAmount": 1000, "OrderState": "لغو شده"}).cancelled  # all of it done
    for junk in ({"OrderState": None}, {"OrderState": 7}, {"OrderState": "کاردان"}, {"ExcutedAmount": "x"}):
        assert onlineplus_order({**row, **junk}).cancelled is False


def test_easytrader_rows_average_their_trades_and_read_a_cancel_from_the_state() -> None:
    row = {"id": "Ab3dE5gH9k.XyZ1", "symbolIsin": HOT, "side": 0, "quantity": 1000, "executedQuantity": 600}
    trades = [{"price": 5570, "quantity": 400}, {"price": 5580, "quantity": 200}]
    assert easytrader_order({**row, "trades": trades}).average_price == pytest.approx((400 * 5570 + 200 * 5580) / 600)
    assert easytrader_order({**row, "trades": []}).average_price is None  # as seen live: no trades listed
    assert easytrader_order({**row, "orderStateStr": "Canceled"}).cancelled
    assert easytrader_order({**row, "orderStateStr": "expired"}).cancelled
    assert not easytrader_order({**row, "orderStateStr": "PartiallyExecuted"}).cancelled
    assert not easytrader_order({**row, "executedQuantity": 1000, "orderStateStr": "Executed"}).cancelled
    for junk in (
        {"trades": [{"price": "x", "quantity": 600}]},
        {"trades": [{"price": 5570, "quantity": 500}]},  # not what executedQuantity says
        {"trades": "lots"},
        {"trades": [None]},
        {"orderStateStr": 3},
    ):
        order = easytrader_order({**row, **junk})
        assert order.average_price is None and order.cancelled is False
