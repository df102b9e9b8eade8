"""Tadbir's RLC market data on the simulator (rlc-market-data.md), serving the shared market's instruments.

A module of its own rather than part of exir.py because RLC is not one broker's: Exir, OnlinePlus and Mofid all
price from it, and it has no tenant and no login. The platform that needs it adds its routes (`add_routes`);
today that is Exir. Its URL shape is copied from the official client, as the real service accepts it:

    /rlc//StockInformationHandler?%7B%27Type%27%3A%27getstockprice2%27%2C...%7D&jsoncallback=   rlc_prices
    /rlc//StocksHandler.ashx?%7B%27Type%27%3A%27ALL21%27%7D&jsoncallback=                     rlc_all

the doubled slash after the base, then a percent-encoded single-quoted pseudo-JSON blob directly after `?`,
then a literal empty `&jsoncallback=` (so the answer is plain JSON). Every number is a decimal string with a
long fractional tail, as the RLC client's notes say. The band is the instrument's [minap, maxap], `mxqo` /
`mnqo` its quantity bounds, and the best level its book's first row: the same facts Ephoenix's market data gives.

`rlc_settings(sim)` holds the unknowns: `strict_url` (rlc-market-data.md open question 5: whether the doubled
slash and `&jsoncallback=` are required; True refuses a single slash with 404 and a missing suffix with 400)
and `numbers` ("string" as documented, or "number" as the test fixtures have them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote
from weakref import WeakKeyDictionary

import orjson
from aiohttp import web

from daemon.sim._http import add_route
from daemon.sim._http import state_of as _state
from daemon.sim._market import Instrument
from daemon.sim._state import SimState

PREFIX = "/rlc"
ROUTES = ("rlc_prices", "rlc_all")
CALLBACK = "&jsoncallback="
# Handler path -> (route name, the blob's `Type`)
HANDLERS = {
    "StockInformationHandler": ("rlc_prices", "getstockprice2"),
    "StocksHandler.ashx": ("rlc_all", "ALL21"),
}
_PAIR = r"'([^']*)'\s*:\s*'([^']*)'"
_BLOB = re.compile(rf"^\{{\s*{_PAIR}(\s*,\s*{_PAIR})*\s*\}}$")
_PAIRS = re.compile(_PAIR)
_TAIL = ".0000000000000"  # "9930.0000000000000" [rlc-market-data.md: numbers arrive as strings]


@dataclass
class RlcSettings:
    strict_url: bool = True
    numbers: Literal["string", "number"] = "string"
    browser_agent_only: bool = True  # "some RLC edges reject bare clients" [from code only]: 403 without "Mozilla/"


_SETTINGS: WeakKeyDictionary[SimState, RlcSettings] = WeakKeyDictionary()


def rlc_settings(sim: Any) -> RlcSettings:
    """The RLC knobs of a simulator (a Simulator or its SimState); live, made on first use."""
    state: SimState = getattr(sim, "state", sim)
    found = _SETTINGS.get(state)
    if found is None:
        found = _SETTINGS[state] = RlcSettings()
    return found


def encode_blob(fields: dict[str, str]) -> str:
    """The query as the official client builds it: `{'k':'v',...}` percent-encoded whole (for tests and docs)."""
    text = "{" + ",".join(f"'{k}':'{v}'" for k, v in fields.items()) + "}"
    return "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in text)


def parse_blob(raw_query: str, strict: bool) -> tuple[dict[str, str], str] | None:
    """(the blob's fields, the jsoncallback value) from the raw query; None when it is not that shape."""
    blob, sep, callback = raw_query.partition(CALLBACK)
    if not sep:
        if strict:
            return None
        blob, callback = raw_query, ""
    text = unquote(blob)
    if not _BLOB.match(text):
        return None
    return dict(_PAIRS.findall(text)), callback


def number(value: int, as_text: bool) -> str | float:
    return f"{value}{_TAIL}" if as_text else float(value)


def row(instrument: Instrument, as_text: bool) -> dict[str, Any]:
    """One instrument's row, the same shape for getstockprice2 and ALL21 (nc is the ISIN itself)."""
    i = instrument
    best = i.book[0] if i.book else None

    def n(value: int) -> str | float:
        return number(value, as_text)

    return {
        "nc": i.isin,
        "sf": i.symbol,
        "cn": i.title,
        "sn": None,
        "hap": n(i.maxap),
        "lap": n(i.minap),
        "mxqo": n(i.maxeq),
        "mnqo": n(i.mineq),
        "ltp": n(i.last),
        "cp": n(i.last),
        "pcp": n(i.last),
        "bbq": n(best.buy_volume if best else 0),
        "bsq": n(best.sell_volume if best else 0),
        "nbb": n(best.buy_count if best else 0),
        "nbs": n(best.sell_count if best else 0),
        "bbp": n(best.buy_price if best else 0),
        "bsp": n(best.sell_price if best else 0),
    }


def _handler(expected_type: str) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        settings = rlc_settings(_state(request))
        if settings.browser_agent_only and not request.headers.get("User-Agent", "").startswith("Mozilla/"):
            return web.Response(status=403, text="Forbidden")
        if not request.match_info["slash"] and settings.strict_url:
            return web.Response(status=404, text="Not Found")
        parsed = parse_blob(request.rel_url.raw_query_string, settings.strict_url)
        if parsed is None:
            return web.Response(status=400, text="Bad Request")
        fields, callback = parsed
        if fields.get("Type") != expected_type:
            return web.Response(status=400, text="Bad Request")
        instruments = _state(request).market.instruments
        as_text = settings.numbers == "string"
        if expected_type == "getstockprice2":
            asked = set(fields.get("arr", "").split(","))
            # in the market's order, not the request's: the client must match rows on nc
            rows = [row(i, as_text) for isin, i in instruments.items() if isin in asked]
        else:
            rows = [row(i, as_text) for i in instruments.values()]
        payload = orjson.dumps(rows)
        if callback:  # a named callback makes it JSONP; the daemon sends it empty
            return web.Response(body=callback.encode() + b"(" + payload + b");", content_type="text/javascript")
        return web.Response(body=payload, content_type="application/json")

    return handle


def add_routes(app: web.Application, platform: str) -> None:
    """RLC's handlers under PREFIX with the doubled slash, matching the single-slash form too (refused while strict)."""
    for path_handler, (route, expected_type) in HANDLERS.items():
        add_route(app, platform, "GET", f"{PREFIX}/{{slash:/?}}{path_handler}", _handler(expected_type), route)
