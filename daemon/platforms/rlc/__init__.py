"""Tadbir RLC market data (rlc-market-data.md): the day's price band and order-size caps, keyed by ISIN, for
the platforms without a price endpoint of their own (Exir now, Online+ and easytrader later). Not a platform
itself: a platform's session asks it for its `Instrument`."""

from __future__ import annotations

from daemon.platforms.rlc._client import RlcClient
from daemon.platforms.rlc._parse import (
    DEFAULT_RLC_URL,
    NO_CAP,
    Quote,
    blob,
    handler_url,
    parse_stock_prices,
    rial,
    stock_price_url,
)

__all__ = [
    "DEFAULT_RLC_URL",
    "NO_CAP",
    "Quote",
    "RlcClient",
    "blob",
    "handler_url",
    "parse_stock_prices",
    "rial",
    "stock_price_url",
]
