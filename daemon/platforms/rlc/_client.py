"""The RLC market-data client: one batched getstockprice2 GET, no auth, a browser UA, environment proxies never
used (through a foreign proxy the Iranian host times out [confirmed live, LOG:493-497])."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from yarl import URL

from daemon.errors import BrokerUnavailable
from daemon.platforms._account_http import HasSession
from daemon.platforms._models import Instrument
from daemon.platforms.rlc._parse import DEFAULT_RLC_URL, Quote, parse_stock_prices, stock_price_url

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
)
""""some RLC edges reject bare clients" [from code only]."""


class RlcClient:
    """Prices and order-size caps for every platform that has none of its own (Exir now; Online+ later)."""

    def __init__(self, http: HasSession, base_url: str | None = None) -> None:
        self._http = http
        self.base_url = (base_url or DEFAULT_RLC_URL).rstrip("/")

    async def quotes(self, isins: list[str]) -> dict[str, Quote]:
        """Every ISIN's row that RLC knows, in one GET; an unknown ISIN is simply missing (no band)."""
        if not isins:
            return {}
        url = URL(stock_price_url(self.base_url, isins), encoded=True)  # sent as built: never re-encoded
        session = self._http.session
        if session.trust_env:
            raise RuntimeError("the RLC client needs an HTTP session that ignores environment proxies")
        try:
            async with session.get(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"}) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BrokerUnavailable(f"market data: RLC getstockprice2 failed ({type(exc).__name__}).") from None
        if status != 200:
            raise BrokerUnavailable(f"market data: RLC getstockprice2 answered HTTP {status}.")
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BrokerUnavailable(
                "market data: RLC getstockprice2 answered with something that is not JSON."
            ) from None
        return parse_stock_prices(body)

    async def instrument(self, isin: str) -> Instrument:
        """One instrument's band and caps; no usable row raises BrokerUnavailable (do not trade: check the ISIN)."""
        quote = (await self.quotes([isin])).get(isin)
        if quote is None:
            raise BrokerUnavailable(f"market data: RLC has no price band for {isin}; check the ISIN.")
        return quote.instrument()
