"""Order sizing as pure arithmetic: the same formula as the broker's CalculateOrderParam, computed locally
so the last network call leaves the critical path. Decimal, never float: a one-share disagreement with the
broker is a rejected order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Literal

Side = Literal["buy", "sell"]


@dataclass(frozen=True, slots=True)
class Limits:
    """What of an instrument decides an order's size and price."""

    mineq: int
    maxeq: int
    minap: int
    maxap: int


def resolve_price(spec: str | int, limits: Limits) -> int:
    """`max` is today's upper limit (where hot queues form), `min` the lower one, a number is itself."""
    if spec == "max":
        return limits.maxap
    if spec == "min":
        return limits.minap
    return int(spec)


def buy_volume(amount: int | float, price: int, fee: float | Decimal, limits: Limits) -> int:
    """Shares that `amount` rial buys at `price` with the fee on top, capped at maxeq; 0 below mineq."""
    if price <= 0 or amount <= 0:
        return 0
    rate = Decimal(str(fee))
    volume = int((Decimal(str(amount)) / (Decimal(price) * (1 + rate))).to_integral_value(ROUND_FLOOR))
    volume = min(volume, limits.maxeq)
    return volume if volume >= limits.mineq else 0


def sell_volume(sellable: int | float, limits: Limits) -> int:
    """A sell is sized by the shares held, never by buying power."""
    volume = min(int(sellable), limits.maxeq)
    return volume if volume >= limits.mineq else 0


def order_fee(volume: int, price: int, fee: float | Decimal) -> int:
    return int((Decimal(volume) * Decimal(price) * Decimal(str(fee))).to_integral_value(ROUND_HALF_UP))


def split_amounts(total: int | float, shares: list[float | None]) -> list[int]:
    """Each order's part of the account's buying power: explicit shares first, the rest split evenly.

    An account's buying power funds all its orders, so sizing each from the whole sends all but the
    first into 1011 (insufficient balance).
    """
    total_dec = Decimal(str(max(total, 0)))
    explicit = sum((Decimal(str(s)) for s in shares if s is not None), Decimal(0))
    unassigned = [i for i, s in enumerate(shares) if s is None]
    rest_each = (1 - explicit) / len(unassigned) if unassigned else Decimal(0)
    parts = []
    for share in shares:
        fraction = Decimal(str(share)) if share is not None else max(rest_each, Decimal(0))
        parts.append(int((total_dec * fraction).to_integral_value(ROUND_FLOOR)))
    return parts
