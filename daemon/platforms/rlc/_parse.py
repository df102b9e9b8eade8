"""RLC's answers (rlc-market-data.md), pure: the odd URL, the rows of getstockprice2, an Instrument from a row."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from daemon.platforms._models import Instrument
from daemon.sizing import Limits

DEFAULT_RLC_URL = "https://core.tadbirrlc.com"
STOCK_PRICE_HANDLER = "StockInformationHandler"
NO_CAP = 2_147_483_647
"""maxeq when `mxqo` is 0 or missing: "unknown, do not cap", as the bot does [from code only]."""


def blob(fields: dict[str, str]) -> str:
    """The query: a single-quoted pseudo-JSON object, percent-encoded as a whole; every value a string
    [confirmed live]."""
    raw = "{" + ",".join(f"'{key}':'{value}'" for key, value in fields.items()) + "}"
    return quote(raw, safe="")


def handler_url(base_url: str, handler: str, fields: dict[str, str]) -> str:
    """`{base}//{Handler}?{blob}&jsoncallback=`: the doubled slash and the empty callback as the official client
    sends them (whether both are needed is open question 5), which makes the answer plain JSON."""
    return f"{base_url.rstrip('/')}//{handler}?{blob(fields)}&jsoncallback="


def stock_price_url(base_url: str, isins: list[str]) -> str:
    """One batched getstockprice2 for every ISIN (comma-separated `arr`)."""
    return handler_url(base_url, STOCK_PRICE_HANDLER, {"Type": "getstockprice2", "la": "Fa", "arr": ",".join(isins)})


@dataclass(frozen=True, slots=True)
class Quote:
    """One instrument's row: the day's band (hap ceiling, lap floor), order-size bounds, prices, best level."""

    isin: str
    symbol: str
    title: str
    hap: int
    lap: int
    mxqo: int | None  # None: 0 or missing, unknown
    mnqo: int | None
    last_price: int | None = None
    best_bid_volume: int | None = None

    def instrument(self) -> Instrument:
        """The project's model: buy at hap, sell at lap; mxqo caps the volume (none when unknown)."""
        limits = Limits(self.mnqo or 1, self.mxqo or NO_CAP, self.lap, self.hap)
        return Instrument(self.isin, self.symbol, self.title, limits, self.last_price)


def rial(value: Any) -> int | None:
    """A price or quantity that comes as "9930.0000000000000" or 9930.0 as whole rial, rounded to the nearest
    (never truncated: "19729.9999999999" is 19730); None when missing or not a number."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return int(number.to_integral_value(ROUND_HALF_UP))


def parse_stock_prices(body: Any) -> dict[str, Quote]:
    """getstockprice2's array, keyed by `nc` (the ISIN), never by order. A row with zero or unparseable `hap`
    has no band and is dropped: never fire at price 0. Non-list JSON is no data."""
    quotes: dict[str, Quote] = {}
    for row in body if isinstance(body, list) else []:
        if not isinstance(row, dict) or not isinstance(row.get("nc"), str):
            continue
        hap, lap = rial(row.get("hap")), rial(row.get("lap"))
        if not hap or hap <= 0 or lap is None or lap <= 0 or lap > hap:
            continue
        mxqo, mnqo = rial(row.get("mxqo")), rial(row.get("mnqo"))
        quotes[row["nc"]] = Quote(
            isin=row["nc"],
            symbol=str(row.get("sf") or ""),
            title=str(row.get("cn") or ""),
            hap=hap,
            lap=lap,
            mxqo=mxqo if mxqo and mxqo > 0 else None,
            mnqo=mnqo if mnqo and mnqo > 0 else None,
            last_price=rial(row.get("ltp")) or None,
            best_bid_volume=rial(row.get("bbq")),
        )
    return quotes
