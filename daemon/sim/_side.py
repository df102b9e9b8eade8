"""What each platform module keeps beside the shared market, the same way for all (Exir, Online+, easytrader): its
side of a simulator made on first use and dropped with it, and its seeded random draws. (Fills are the market's,
`_fills`: every platform's rows show them.)"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

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
