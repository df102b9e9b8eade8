"""Whether the broker holds an order of ours: asked before anything that might send an order twice.

A filled order is no longer open, so both lists are read: the open orders and today's orders. The
answer has three values, because *unknown is not absent*: only when both lists were read and neither
shows the order may it be sent (again). An order of ours is one of the account's orders for the same
ISIN and side created at or after the earliest instant we could have sent it (less `MATCH_SLACK_S` for
the clocks' disagreement); with a serial number from the journal, that number decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from enum import Enum
from typing import Any, Protocol

from daemon.errors import BrokerError
from daemon.logs import scrub
from daemon.platforms.ephoenix import MATCH_SLACK_S, created_at, find_order

__all__ = ["MATCH_SLACK_S", "Lookup", "OrderLists", "Presence", "created_at", "find_order", "look_up"]
Match = Callable[..., Mapping[str, Any] | None]
"""A codec's `find_order`: which order in a broker's list is a plan's."""


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
    async def open_orders(self) -> list[Any]: ...

    async def today_orders(self, day: date) -> list[Any]: ...


async def look_up(
    lists: OrderLists,
    day: date,
    isin: str,
    side: str,
    since: datetime | None,
    tz: tzinfo,
    serial_number: int | None = None,
    match: Match = find_order,
) -> Lookup:
    """Both lists asked together; found in either is found, absent only when both were read. `match` is the
    platform codec's `find_order` (Ephoenix's by default)."""
    answers = await asyncio.gather(lists.open_orders(), lists.today_orders(day), return_exceptions=True)
    problems: list[str] = []
    for answer in answers:
        if isinstance(answer, BaseException):
            if not isinstance(answer, (BrokerError, OSError, TimeoutError)):
                raise answer
            problems.append(scrub(str(answer)) or type(answer).__name__)
            continue
        order = match(answer, isin, side, since, tz, serial_number)
        if order is not None:
            tracking = order.get("trackingNumber")
            return Lookup(
                Presence.FOUND, _int(order.get("serialNumber")), str(tracking) if tracking is not None else None
            )
    if problems:
        return Lookup(Presence.UNKNOWN, reason="; ".join(problems))
    return Lookup(Presence.ABSENT)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
