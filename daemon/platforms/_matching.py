"""Which row of an account's normalised order list is the order we sent, for platforms whose rows carry `isin`,
`side` (1 buy, 2 sell, None unreadable) and `created` (a datetime, or anything else when unreadable): Exir,
Online+, easytrader. Every doubt counts as ours, because missing our own order means sending a second one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any


def first_since(
    orders: list[Mapping[str, Any]], isin: str, side: str, since: datetime | None, tz: tzinfo, slack_s: float
) -> Mapping[str, Any] | None:
    """The first row of the same ISIN and side (an unreadable side may be ours) entered at or after `since` less
    `slack_s` (the clocks' disagreement, whole-second times), a naive time read in `tz`; a row without a readable
    time is taken as ours. None: no row is ours."""
    wanted = 1 if side == "buy" else 2
    for order in orders:
        if order.get("isin") != isin or order.get("side") not in (wanted, None):
            continue
        created = order.get("created")
        if not isinstance(created, datetime):
            return order
        created = created if created.tzinfo is not None else created.replace(tzinfo=tz)
        if since is None or created >= since - timedelta(seconds=slack_s):
            return order
    return None
