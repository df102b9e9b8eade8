"""What the executor sends at the open, decided before it: the plans and their send order.

Everything here is pure, so the rules (who goes first) are tested without a network. A plan's request bytes
and the meaning of its answers are its platform codec's (`plan.codec`); `new_order_request` and `classify`
here are Ephoenix's, kept for existing callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from daemon.net import WireConnection, WireResponse
from daemon.platforms import Codec, OrderAnswer, SignedRequest, Verdict
from daemon.platforms.ephoenix import NEW_ORDER_PATH, SIDE_CODES, new_order_request
from daemon.platforms.ephoenix import classify as _classify

Answer = OrderAnswer
__all__ = [
    "NEW_ORDER_PATH",
    "SIDE_CODES",
    "Answer",
    "FirePlan",
    "Verdict",
    "assign_slots",
    "classify",
    "new_order_request",
    "firing_order",
]


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
    codec: Codec | None = field(repr=False, default=None)
    """The broker's platform codec: the plan's bytes are built and its answers read only through it."""
    signed: SignedRequest | None = field(repr=False, default=None)
    """Set when the platform signs each request for its UTC second: `request` then holds the bytes for
    `signed_second`, and the executor asks `signed.at(...)` when the second it sends in is another."""
    signed_second: int = -1
    spacing_ns: int = 0
    """The least gap between this account's sends when its platform asks more than the executor's spacing
    (Exir's sendOrderDelay, margin included); 0: the executor's spacing."""
    prepared: str | None = None
    """The draft its platform made for it before the open (easytrader), which `request` sends; None: no draft."""

    def prepare(self, made: bytes | SignedRequest) -> None:
        """The codec's request: bytes as they are, or a signed request whose bytes are made per second."""
        if isinstance(made, bytes):
            self.request, self.signed, self.signed_second = made, None, -1
        else:
            self.signed, self.signed_second = made, -1

    def sign_for(self, utc_second: int) -> bool:
        """The bytes for `utc_second`; True when they had to be made anew."""
        if self.signed is not None and utc_second != self.signed_second:
            self.request, self.signed_second = self.signed.at(utc_second), utc_second
            return True
        return False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.account, self.isin, self.side)

    def journal_fields(self) -> dict[str, Any]:
        return {"account": self.account, "broker": self.broker, "isin": self.isin, "side": self.side}


def firing_order(plans: list[FirePlan], day: date) -> list[FirePlan]:
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
    """What an Ephoenix NewOrder answer on a pre-opened connection means."""
    return _classify(response.status, response.body)
