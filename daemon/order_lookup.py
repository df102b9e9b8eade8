"""Whether the broker holds an order of ours: asked before anything that might send an order twice.

A filled order is no longer open, so both lists are read: the open orders and today's orders. The
answer has three values, because *unknown is not absent*: only when both lists were read and neither
shows the order may it be sent (again). An order of ours is one of the account's orders for the same
ISIN and side created at or after the earliest instant we could have sent it (less `MATCH_SLACK_S` for
the clocks' disagreement); with a serial number from the journal, that number decides.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from enum import Enum
from typing import Any, Protocol

from daemon.errors import BrokerError
from daemon.fire_plan import SIDE_CODES
from daemon.logs import scrub

MATCH_SLACK_S = 2.0


class Presence(Enum):
    FOUND = "found"
    ABSENT = "absent"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Lookup:
    presence: Presence
    serial_number: int | None = None
    tracking_number: str | None = None
    reason: str = ""


class OrderLists(Protocol):
    async def open_orders(self) -> list[dict[str, Any]]: ...

    async def today_orders(self, day: date) -> list[dict[str, Any]]: ...


def find_order(orders: list[dict[str, Any]], isin: str, side: str, since: datetime | None, tz: tzinfo,
               serial_number: int | None = None) -> dict[str, Any] | None:
    """The first order in `orders` that is ours (see the module docstring), or None."""
    wanted = SIDE_CODES[side]
    for order in orders:
        if serial_number is not None and _int(order.get("serialNumber")) == serial_number:
            return order
        if order.get("isin") != isin or _side(order) not in (wanted, None):
            continue
        created = created_at(order, tz)
        if since is None or created is None or created >= since - timedelta(seconds=MATCH_SLACK_S):
            return order  # an order without a readable time is taken as ours: never risk a second one
    return None


async def look_up(lists: OrderLists, day: date, isin: str, side: str, since: datetime | None, tz: tzinfo,
                  serial_number: int | None = None) -> Lookup:
    """Both lists asked together; found in either is found, absent only when both were read."""
    answers = await asyncio.gather(lists.open_orders(), lists.today_orders(day), return_exceptions=True)
    problems: list[str] = []
    for answer in answers:
        if isinstance(answer, BaseException):
            if not isinstance(answer, (BrokerError, OSError, TimeoutError)):
                raise answer
            problems.append(scrub(str(answer)) or type(answer).__name__)
            continue
        order = find_order(answer, isin, side, since, tz, serial_number)
        if order is not None:
            tracking = order.get("trackingNumber")
            return Lookup(Presence.FOUND, _int(order.get("serialNumber")), str(tracking) if tracking is not None else None)
    if problems:
        return Lookup(Presence.UNKNOWN, reason="; ".join(problems))
    return Lookup(Presence.ABSENT)


def created_at(order: dict[str, Any], tz: tzinfo) -> datetime | None:
    """When the broker booked the order; a naive time is the exchange's."""
    for key in ("created", "createdAt", "date"):
        value = order.get(key)
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, str) and len(value) > 10:  # a date alone says nothing of the instant
            try:
                moment = datetime.fromisoformat(value.replace("/", "-"))
            except ValueError:
                continue
        else:
            continue
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
    return None


def _side(order: dict[str, Any]) -> int | None:
    """The side's code; None when it cannot be read (then the order may be ours)."""
    for key in ("side", "orderSide"):
        code = _int(order.get(key))
        if code is not None:
            return code
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
