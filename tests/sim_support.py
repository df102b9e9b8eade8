"""A small aiohttp client for the simulator's tests: the broker's calls, spelled out, nothing clever."""

from __future__ import annotations

from typing import Any

import aiohttp

from daemon.simulator import DEFAULT_PASSWORD, Simulator

HOT = "IRO1FOLD0001"
GS_USER, SHAHR_USER = "0012345600", "0012345601"  # the `sim` fixture's accounts (tests/conftest.py)


class BrokerClient:
    def __init__(self, session: aiohttp.ClientSession, sim: Simulator, broker: str) -> None:
        self.session = session
        self.sim = sim
        self.broker = broker
        urls = sim.broker_urls(broker)
        self.identity, self.trading, self.backoffice = urls["identity_url"], urls["trading_url"], urls["backoffice_url"]
        self.token: str | None = None

    async def captcha(self) -> aiohttp.ClientResponse:
        return await self.session.get(f"{self.identity}/api/Captcha/GetCaptcha")

    async def login(
        self,
        username: str,
        password: str = DEFAULT_PASSWORD,
        answer: str | None = None,
        captcha: dict[str, Any] | None = None,
    ) -> aiohttp.ClientResponse:
        """Log in with a fresh captcha answered right (or with `answer`)."""
        if captcha is None:
            response = await self.captcha()
            assert response.status == 200, response.status
            captcha = await response.json()
        value = answer if answer is not None else self.sim.captchas.answer(captcha["salt"])
        body = {
            "loginName": username,
            "password": password,
            "captcha": {"hash": captcha["hashedCaptcha"], "salt": captcha["salt"], "value": value},
        }
        return await self.session.post(f"{self.identity}/api/v2/accounts/login", json=body)

    async def sign_in(self, username: str) -> str:
        response = await self.login(username)
        body = await response.json()
        assert body["isSuccess"], body
        self.token = body["token"]
        return self.token

    def _auth(self, token: str | None) -> dict[str, str]:
        token = token if token is not None else self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def trading_book(self, token: str | None = None) -> aiohttp.ClientResponse:
        return await self.session.get(
            f"{self.trading}/api/v2/tradingbook/GetLastTradingBook", headers=self._auth(token)
        )

    async def calc(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        return await self.session.post(
            f"{self.trading}/api/v2/orders/CalculateOrderParam", json=body, headers=self._auth(None)
        )

    async def new_order(
        self, volume: int, price: int = 5580, side: int = 1, isin: str = HOT, token: str | None = None
    ) -> aiohttp.ClientResponse:
        body = {
            "isin": isin,
            "side": side,
            "validity": 1,
            "validityDate": None,
            "accountType": 1,
            "price": price,
            "volume": volume,
            "serialNumber": 0,
        }
        return await self.session.post(f"{self.trading}/api/v2/orders/NewOrder", json=body, headers=self._auth(token))

    async def open_orders(self) -> aiohttp.ClientResponse:
        return await self.session.get(f"{self.trading}/api/v2/orders/GetOpenOrders?type=1", headers=self._auth(None))

    async def orders(self, day: str | None = None, **fields: Any) -> aiohttp.ClientResponse:
        """GetOrders with the body ephoenix-api.md shows: page 1 of 50, `day` (YYYY/MM/DD) as both bounds,
        no filter; `fields` replace any of its keys (`pageSize=2`, `includeStatus=[4]`...)."""
        body = {
            "page": 1,
            "pageSize": 50,
            "fromDate": day,
            "toDate": day,
            "side": None,
            "isin": None,
            "includeStatus": [],
            "pamCode": None,
            **fields,
        }
        return await self.session.post(f"{self.trading}/api/v2/orders/GetOrders", json=body, headers=self._auth(None))

    async def cancel(self, serial: int | str) -> aiohttp.ClientResponse:
        return await self.session.delete(
            f"{self.trading}/api/v2/orders/CancelOrder?serialNumber={serial}", headers=self._auth(None)
        )

    async def holdings(self) -> aiohttp.ClientResponse:
        return await self.session.post(
            f"{self.backoffice}/api/portfolio/getrealsecuritypositionbydate",
            json={"entity": True},
            headers=self._auth(None),
        )

    async def instruments(self, isins: list[str]) -> aiohttp.ClientResponse:
        return await self.session.post(f"{self.sim.market_data_url}/api/v2/instruments/full", json={"isinList": isins})
