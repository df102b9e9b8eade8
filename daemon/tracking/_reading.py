"""What the broker's list of the day's orders says of one of ours, pure: which row it is, and what it became.

A row is ours by the broker's serial number, else its tracking number (both from the order's answer in the
journal), else by the platform codec's `find_order` (same ISIN and side, entered since we could have sent it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from daemon.firing import FillState, ReportRow
from daemon.platforms import BrokerOrder, finite, whole

Match = Callable[..., Mapping[str, Any] | None]
"""A codec's `find_order(orders, isin, side, since, tz, serial_number)`."""
FINAL: frozenset[FillState] = frozenset({"filled", "cancelled", "unknown"})
"""Fill states the tracker stops at (unknown is written only at the close)."""


@dataclass(frozen=True)
class Reading:
    state: FillState
    executed: int
    average_price: float | None
    fill_value: float | None


def find_ours(
    orders: Sequence[Mapping[str, Any]], row: ReportRow, match: Match, tz: tzinfo
) -> Mapping[str, Any] | None:
    """The row of `orders` that is the order `row` reports, or None when the list does not show it."""
    if row.serial_number is not None:
        for order in orders:
            if _serial(order) == row.serial_number:
                return order
    if row.tracking_number:
        for order in orders:
            if _tracking(order) == str(row.tracking_number):
                return order
    since = datetime.fromtimestamp(row.planned_wall_ns / 1e9, UTC) if row.planned_wall_ns is not None else None
    return match(list(orders), row.isin, row.side, since, tz, row.serial_number)


def read_fill(order: Mapping[str, Any], ordered: int | None) -> Reading:
    """What `order` (a row of the broker's list) became. With no average price from the broker the value is
    executed x the order's own price (an upper bound for a buy: what a fill at its limit costs)."""
    typed = order if isinstance(order, BrokerOrder) else None
    executed = whole(typed.executed if typed else order.get("executedVolume")) or 0
    volume = whole(typed.volume if typed else order.get("volume")) or ordered
    average = typed.average_price if typed else None
    price = average if average is not None else finite(typed.price if typed else order.get("price"))
    if typed is not None and typed.cancelled:
        state: FillState = "cancelled"
    elif volume and executed >= volume:
        state = "filled"
    elif executed > 0:
        state = "partly filled"
    else:
        state = "queued"
    value = round(executed * price, 2) if price is not None else None
    return Reading(state, executed, average, value)


def changed(row: ReportRow, reading: Reading) -> bool:
    """A new fill record is due: the state or the executed quantity moved since the journal's last one."""
    return row.fill_state != reading.state or row.executed != reading.executed


def _serial(order: Mapping[str, Any]) -> int | None:
    return order.serial if isinstance(order, BrokerOrder) else whole(order.get("serialNumber"))


def _tracking(order: Mapping[str, Any]) -> str | None:
    value = order.tracking if isinstance(order, BrokerOrder) else order.get("trackingNumber")
    return str(value) if value not in (None, "") else None
