"""A second, minimal broker platform, written only as a session and a codec: the proof that the seam holds.

Its protocol is deliberately unlike Ephoenix's: a header token (`X-Toy-Key`), `ok`/`again` answers, sides as
words, quantities as `qty`. `register_toy()` adds it through the public registration call; `toy_app()` is the
broker it talks to, a small aiohttp app served on loopback by the test.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from daemon.clock import Clock
from daemon.errors import BrokerUnavailable
from daemon.net import build_request
from daemon.platforms import (
    BrokerOrder,
    BuyingPower,
    Captcha,
    Holding,
    Instrument,
    LoginAnswer,
    OrderAnswer,
    Platform,
    Throttled,
    TokenRefused,
    Verdict,
    register,
)
from daemon.platforms._defaults import SessionDefaults
from daemon.sizing import Limits

KEY_HEADER = "x-toy-key"


# ---- the daemon's side: a session and a codec ------------------------------------------------------------


class ToySession(SessionDefaults):
    def __init__(self, endpoints: Any, http: Any, authority: Any) -> None:
        self.endpoints, self._http, self._auth = endpoints, http, authority

    async def _call(self, method: str, url: str, json: Any = None, key: str | None = None) -> Any:
        try:
            async with self._http.session.request(
                method, url, json=json, headers={KEY_HEADER: key} if key else None
            ) as response:
                if response.status == 401:
                    raise TokenRefused(url)
                if response.status == 429:
                    raise Throttled(1.0, "HTTP 429")
                if response.status >= 400:
                    raise BrokerUnavailable(f"toy broker: {url} answered HTTP {response.status}.")
                return orjson.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BrokerUnavailable(f"toy broker: {url} failed ({type(exc).__name__}).") from None

    async def _keyed(self, what: str, method: str, url: str, json: Any = None) -> Any:
        return await self._auth.authed(what, lambda key: self._call(method, url, json, key))

    async def fetch_captcha(self) -> Captcha:
        body = await self._call("GET", self.endpoints.identity_url + "/puzzle")
        return Captcha(base64.b64decode(body["png"]), {"id": body["id"]})

    async def login(self, username: str, password: str, captcha: Captcha, answer: str) -> LoginAnswer:
        body = await self._call(
            "POST",
            self.endpoints.identity_url + "/session",
            {"who": username, "secret": password, "puzzle": captcha.state["id"], "answer": answer},
        )
        if body.get("key"):
            return LoginAnswer("ok", token=body["key"], expire_in_s=float(body["lifetime"]))
        return LoginAnswer("wrong_captcha" if body.get("why") == "puzzle" else "wrong_credentials")

    async def buying_power(self) -> BuyingPower:
        return BuyingPower(float((await self._keyed("cash", "GET", self.endpoints.trading_url + "/cash"))["cash"]))

    async def probe(self) -> BuyingPower | None:
        return await self.buying_power()

    async def instrument(self, isin: str) -> Instrument:
        body = await self._auth.retried(
            "quote", lambda: self._call("GET", f"{self.endpoints.market_data_url}/quote/{isin}")
        )
        return Instrument(
            isin,
            body["name"],
            body["name"],
            Limits(body["qty"][0], body["qty"][1], body["band"][0], body["band"][1]),
            body["last"],
        )

    async def holdings(self, isin: str) -> Holding:
        body = await self._keyed("shares", "GET", self.endpoints.backoffice_url + "/shares")
        return Holding(isin, int(body.get(isin, 0)))

    async def open_orders(self) -> list[BrokerOrder]:
        return [
            toy_order(row)
            for row in await self._keyed("orders", "GET", self.endpoints.trading_url + "/orders")
            if row["live"]
        ]

    async def today_orders(self, day: date) -> list[BrokerOrder]:
        return [toy_order(row) for row in await self._keyed("orders", "GET", self.endpoints.trading_url + "/orders")]

    async def calculate_order(self, isin: str, side: str, price: int, amount: int) -> dict[str, Any]:
        return {}  # this platform has no volume formula of its own

    async def new_order(self, isin: str, side: str, price: int, volume: int) -> OrderAnswer:
        raise NotImplementedError("the toy platform's orders go through its codec only")


def toy_order(row: Mapping[str, Any]) -> BrokerOrder:
    created = datetime.fromisoformat(row["at"])
    normalised = {
        **row,
        "isin": row["isin"],
        "side": {"buy": 1, "sell": 2}[row["side"]],
        "serialNumber": row["id"],
        "trackingNumber": None,
        "created": created,
        "volume": row["qty"],
    }
    return BrokerOrder(row["isin"], row["side"], row["id"], None, created, volume=row["qty"], row=normalised)


class ToyCodec:
    def __init__(self, endpoints: Any) -> None:
        self.origin_url = endpoints.trading_url

    def order_request(self, token: str, isin: str, side: str, price: int, volume: int) -> bytes:
        body = orjson.dumps({"isin": isin, "side": side, "price": price, "qty": volume})
        return build_request("POST", self.origin_url + "/buy-or-sell", {KEY_HEADER: token}, body)

    def probe_request(self, token: str) -> bytes:
        return build_request("GET", self.origin_url + "/cash", {KEY_HEADER: token})

    def classify(self, status: int, body: bytes) -> OrderAnswer:
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            return OrderAnswer(Verdict.UNKNOWN, None, f"HTTP {status}")
        if status == 200 and answer.get("ok"):
            return OrderAnswer(Verdict.ACCEPTED, 0, "accepted", answer["id"], None)
        if answer.get("again"):
            return OrderAnswer(Verdict.RETRY, 1, "not yet")
        return OrderAnswer(Verdict.TERMINAL, 2, str(answer.get("why", "refused")))

    def find_order(
        self,
        orders: list[Any],
        isin: str,
        side: str,
        since: datetime | None,
        tz: tzinfo,
        serial_number: int | None = None,
    ) -> Any:
        for order in orders:
            if serial_number is not None and order.serial == serial_number:
                return order
            if (
                order.isin == isin
                and order.side == side
                and (since is None or order.created >= since - timedelta(seconds=2))
            ):
                return order
        return None


TOY = Platform("toy", ToySession, ToyCodec)


def register_toy() -> Platform:
    return register(TOY)


# ---- the broker's side: a small aiohttp app on loopback --------------------------------------------------


@dataclass
class ToyBroker:
    """What the toy broker holds: its accounts' keys, cash, the open instant and every order it took."""

    clock: Clock
    passwords: dict[str, str]
    open_at: datetime | None = None
    cash: int = 10_000_000
    keys: dict[str, str] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)
    refused_early: int = 0

    def who(self, request: web.Request) -> str:
        user = self.keys.get(request.headers.get(KEY_HEADER, ""))
        if user is None:
            raise web.HTTPUnauthorized()
        return user


def toy_app(broker: ToyBroker) -> web.Application:
    async def puzzle(request: web.Request) -> web.Response:
        return web.json_response({"id": 7, "png": base64.b64encode(b"4242").decode()})

    async def session(request: web.Request) -> web.Response:
        body = await request.json()
        if body["answer"] != "4242":
            return web.json_response({"why": "puzzle"})
        if broker.passwords.get(body["who"]) != body["secret"]:
            return web.json_response({"why": "secret"})
        key = f"key-{body['who']}"
        broker.keys[key] = body["who"]
        return web.json_response({"key": key, "lifetime": 3600})

    async def cash(request: web.Request) -> web.Response:
        broker.who(request)
        return web.json_response({"cash": broker.cash})

    async def quote(request: web.Request) -> web.Response:
        return web.json_response({"name": "TOYS", "qty": [1, 100_000], "band": [9_000, 10_000], "last": 9_500})

    async def shares(request: web.Request) -> web.Response:
        broker.who(request)
        return web.json_response({})

    async def orders(request: web.Request) -> web.Response:
        user = broker.who(request)
        return web.json_response([o for o in broker.orders if o["user"] == user])

    async def place(request: web.Request) -> web.Response:
        user = broker.who(request)
        body = await request.json()
        now = broker.clock.now()
        if broker.open_at is None or now < broker.open_at:
            broker.refused_early += 1
            return web.json_response({"again": True})
        order = {
            "id": len(broker.orders) + 1,
            "user": user,
            "isin": body["isin"],
            "side": body["side"],
            "price": body["price"],
            "qty": body["qty"],
            "at": now.isoformat(),
            "live": True,
        }
        broker.orders.append(order)
        return web.json_response({"ok": True, "id": order["id"]})

    app = web.Application()
    app.router.add_get("/id/puzzle", puzzle)
    app.router.add_post("/id/session", session)
    app.router.add_get("/tr/cash", cash)
    app.router.add_get("/tr/orders", orders)
    app.router.add_post("/tr/buy-or-sell", place)
    app.router.add_get("/md/quote/{isin}", quote)
    app.router.add_get("/bo/shares", shares)
    return app
