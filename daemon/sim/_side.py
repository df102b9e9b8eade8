"""What each platform module keeps beside the shared market, the same way for all (Exir, Online+, easytrader): its
side of a simulator made on first use and dropped with it, its seeded random draws, and the fills a test marks.
Fills live here rather than on the market because only these platforms' order rows show them."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from daemon.sim._market import Order
from daemon.sim._state import SimState

S = TypeVar("S")


class Sides(Generic[S]):
    """One platform's side of every simulator (a Simulator or its SimState), made by `make` on first use; kept as
    long as the simulator's state is, so its settings stay live between requests."""

    def __init__(self, make: Callable[[SimState], S]) -> None:
        self._make = make
        self._found: WeakKeyDictionary[SimState, S] = WeakKeyDictionary()

    def of(self, sim: Any) -> S:
        state: SimState = getattr(sim, "state", sim)
        found = self._found.get(state)
        if found is None:
            found = self._found[state] = self._make(state)
        return found


def side_rng(state: SimState, platform: str) -> random.Random:
    """The platform's own random draws: from the simulator's seed when it has one, so a seeded run repeats."""
    seed = state.settings.seed
    return random.Random(f"{seed}/{platform}") if seed is not None else random.Random()


@dataclass(frozen=True)
class Fill:
    quantity: int
    price: int


def record_fill(
    fills: dict[tuple[str, int], Fill], order: Order, quantity: int | None = None, price: int | None = None
) -> Fill:
    """Mark `order` (partly) traded at `price` (its own by default); the whole order when no quantity is given."""
    qty = order.volume if quantity is None else quantity
    if not 0 < qty <= order.volume:
        raise ValueError(f"a fill of {qty} does not fit an order of {order.volume}")
    done = fills[(order.broker, order.serial_number)] = Fill(qty, order.price if price is None else price)
    return done
