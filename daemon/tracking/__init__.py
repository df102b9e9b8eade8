"""Order tracking after the fire window: the cadence of the broker reads (pure), what a broker's row says of one
of our orders (pure), and the tracker that follows the day's accepted orders into the journal's `fill` records.
It only reads the broker's lists; it never places, edits or cancels an order.
"""

from __future__ import annotations

from daemon.tracking._cadence import Cadence
from daemon.tracking._reading import FINAL, Reading, changed, find_ours, read_fill
from daemon.tracking._tracker import NOT_LISTED, OrderLists, Told, Tracker

__all__ = [
    "FINAL",
    "NOT_LISTED",
    "Cadence",
    "OrderLists",
    "Reading",
    "Told",
    "Tracker",
    "changed",
    "find_ours",
    "read_fill",
]
