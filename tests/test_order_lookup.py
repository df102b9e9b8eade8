"""Whether the broker holds an order of ours: the matching rule and the three answers (found, absent, unknown)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.errors import BrokerUnavailable
from daemon.firing import MATCH_SLACK_S, Presence, find_order, look_up

TEHRAN = ZoneInfo("Asia/Tehran")
OPEN = datetime(2026, 12, 1, 8, 45, tzinfo=TEHRAN)
ISIN = "IRO1FOLD0001"


def order(created: datetime | str | None = OPEN, isin: str = ISIN, side: int | str | None = 1, **more):
    row = {"isin": isin, "side": side, "serialNumber": 1000001, "trackingNumber": "555", **more}
    if created is not None:
        row["createdAt"] = created.isoformat() if isinstance(created, datetime) else created
    return row


def test_an_order_of_the_same_isin_and_side_after_the_planned_instant_is_ours():
    assert find_order([order(OPEN + timedelta(seconds=3))], ISIN, "buy", OPEN, TEHRAN) is not None


@pytest.mark.parametrize(
    "other",
    [
        {"isin": "IRO1IKCO0001"},
        {"side": 2},
        {"created": OPEN - timedelta(seconds=MATCH_SLACK_S + 1)},  # an earlier order (a manual one, yesterday's run)
    ],
)
def test_another_isin_side_or_an_earlier_order_is_not_ours(other):
    row = (
        order(**{k: v for k, v in other.items() if k != "created"})
        if "created" not in other
        else order(other["created"])
    )
    assert find_order([row], ISIN, "buy", OPEN, TEHRAN) is None


def test_a_small_clock_disagreement_still_matches():
    assert find_order([order(OPEN - timedelta(seconds=MATCH_SLACK_S / 2))], ISIN, "buy", OPEN, TEHRAN) is not None


@pytest.mark.parametrize("created", [None, "not a time", "2026/12/01"])
def test_an_order_without_a_readable_time_is_taken_as_ours(created):
    row = order(None)
    if created is not None:
        row["createdAt"] = created
    assert find_order([row], ISIN, "buy", OPEN, TEHRAN) is not None


def test_a_naive_time_is_the_exchanges_and_the_orderside_field_is_read():
    naive = order((OPEN + timedelta(seconds=1)).replace(tzinfo=None).isoformat(), side=None, orderSide=1)
    assert find_order([naive], ISIN, "buy", OPEN, TEHRAN) is not None
    assert find_order([naive], ISIN, "sell", OPEN, TEHRAN) is None


def test_a_serial_number_from_the_journal_decides():
    row = order(OPEN - timedelta(hours=1), isin="OTHER")
    assert find_order([row], ISIN, "buy", OPEN, TEHRAN, serial_number=1000001) is row


class Lists:
    def __init__(self, open_orders, today):
        self._open, self._today = open_orders, today

    async def open_orders(self):
        if isinstance(self._open, Exception):
            raise self._open
        return self._open

    async def today_orders(self, day):
        assert day == date(2026, 12, 1)
        if isinstance(self._today, Exception):
            raise self._today
        return self._today


DOWN = BrokerUnavailable("gs: GetOrders answered HTTP 503.")


@pytest.mark.parametrize(
    ("open_orders", "today", "presence"),
    [
        ([order()], [], Presence.FOUND),
        ([], [order()], Presence.FOUND),  # filled: no longer open, still in today's orders
        ([order()], DOWN, Presence.FOUND),
        (DOWN, [order()], Presence.FOUND),
        ([], [], Presence.ABSENT),
        ([], DOWN, Presence.UNKNOWN),  # unknown is not absent
        (DOWN, [], Presence.UNKNOWN),
        (DOWN, DOWN, Presence.UNKNOWN),
        (TimeoutError(), [], Presence.UNKNOWN),
    ],
)
async def test_absent_only_when_both_lists_were_read(open_orders, today, presence):
    result = await look_up(Lists(open_orders, today), date(2026, 12, 1), ISIN, "buy", OPEN, TEHRAN)
    assert result.presence is presence
    if presence is Presence.FOUND:
        assert (result.serial_number, result.tracking_number) == (1000001, "555")
    if presence is Presence.UNKNOWN:
        assert result.reason


async def test_a_bug_is_not_taken_for_an_unavailable_broker():
    with pytest.raises(KeyError):
        await look_up(Lists(KeyError("bug"), []), date(2026, 12, 1), ISIN, "buy", OPEN, TEHRAN)
