"""What the executor sends at the open, decided before it: request bytes, send order, answer meaning.

Everything here is pure, so the rules (who goes first, what an answer means, when to resend) are
tested without a network and the hot path only writes bytes built by these functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson

from daemon.order_answer import Answer, Verdict, interpret
from daemon.wire import WireConnection, WireResponse, build_request

NEW_ORDER_PATH = "/api/v2/orders/NewOrder"
SIDE_CODES = {"buy": 1, "sell": 2}

@dataclass(eq=False)
class FirePlan:
    """One order of one account, ready to go: its bytes, its connection, its place in the send order."""

    account: str
    broker: str
    username: str
    isin: str
    side: str
    price: int
    volume: int
    priority: int
    trading_url: str
    request: bytes = field(repr=False, default=b"")
    conn: WireConnection | None = field(repr=False, default=None)
    slot: int = 0  # with spacing per account, an account's n-th order goes n spacings after the open
    open_monotonic_ns: int = 0
    send_at_ns: int = 0
    amount: int = 0  # what the volume was sized on: this order's share of the buying power (buy)
    unsure_since: datetime | None = None
    """Set when an earlier process may have sent this order (a restart) and the broker could not say yet:
    its lists are asked again before it is sent; the earliest broker instant it could have been sent at."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.account, self.isin, self.side)

    def journal_fields(self) -> dict[str, Any]:
        return {"account": self.account, "broker": self.broker, "isin": self.isin, "side": self.side}


def new_order_request(trading_url: str, token: str, isin: str, side: str, price: int, volume: int) -> bytes:
    """The complete NewOrder request, as the broker's web client sends it."""
    body = orjson.dumps({
        "isin": isin, "side": SIDE_CODES[side], "validity": 1, "validityDate": None, "accountType": 1,
        "price": price, "volume": volume, "serialNumber": 0,
    })
    return build_request("POST", trading_url + NEW_ORDER_PATH, {"authorization": f"Bearer {token}"}, body)


def send_order(plans: list[FirePlan], day: date) -> list[FirePlan]:
    """Priority first (lower fires first), then a rotation that moves with the day, so that among equals
    no account is always last (at 1000 accounts the last leaves ~18 ms after the first)."""
    by_name = sorted({p.account for p in plans})
    if not by_name:
        return []
    shift = day.toordinal() % len(by_name)
    rank = {name: (i - shift) % len(by_name) for i, name in enumerate(by_name)}
    return sorted(plans, key=lambda p: (p.slot, p.priority, rank[p.account], p.isin))


def assign_slots(plans: list[FirePlan], scope: str) -> None:
    """With spacing per account, an account's orders take successive slots (one spacing apart)."""
    seen: dict[str, int] = {}
    for plan in sorted(plans, key=lambda p: (p.account, p.isin)):
        if scope == "account":
            plan.slot = seen.get(plan.account, 0)
            seen[plan.account] = plan.slot + 1
        else:
            plan.slot = 0


def classify(response: WireResponse) -> Answer:
    """What a NewOrder answer on a pre-opened connection means."""
    try:
        body = orjson.loads(response.body) if response.body else {}
    except orjson.JSONDecodeError:
        if response.status == 401:
            return interpret(401, None)
        return Answer(Verdict.UNKNOWN, None, f"HTTP {response.status} with a body that is not JSON")
    return interpret(response.status, body)
