"""What a session answers for the seam's optional parts when its platform has none of them (Ephoenix, Exir):
no drafts, no clock of the broker's own, no request budget. A session class inherits these and overrides what
its platform has (easytrader: all three)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.net import OffsetEstimate
    from daemon.platforms._budget import RequestBudget


class SessionDefaults:
    requests: RequestBudget | None = None
    """The account's request budget at this broker, for platforms with a cap (None: nothing counted)."""

    async def prepare_order(self, isin: str, side: str, price: int, volume: int) -> str | None:
        """Create the order's draft at the broker before the open; its id, or None: this platform has no drafts
        (the codec's order_request then builds the whole order)."""
        return None

    async def discard_prepared(self, prepared: str) -> bool:
        """Forget a draft made by `prepare_order` (the order was resized); True when the broker deleted it."""
        return False

    async def broker_clock(self) -> OffsetEstimate | None:
        """The broker's clock against ours from an endpoint of its own, or None: measure it from the probe."""
        return None
