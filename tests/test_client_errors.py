"""Each broker answer maps to one typed error, tested against a real HTTP server on loopback."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from daemon.clock import SystemClock
from daemon.config import validate_config
from daemon.errors import AuthError, BrokerError, BrokerUnavailable, CaptchaError, OrderRejected, RateLimited
from daemon.wiring import Wiring

PASSWORD = "pw-for-client-tests"
ISIN = "IRO1FOLD0001"


def jwt(exp: float) -> str:
    def part(obj: str) -> str:
        return base64.urlsafe_b64encode(obj.encode()).decode().rstrip("=")

    header, claims = part('{"alg":"HS256"}'), part(f'{{"exp":{int(exp)}}}')
    return f"{header}.{claims}.sig"


class Solver:
    def __init__(self, answers: list[str] | None = None) -> None:
        self.answers = answers or []
        self.calls = 0

    async def solve(self, image: bytes) -> str:
        self.calls += 1
        return self.answers.pop(0) if self.answers else "12345"


class FakeBroker:
    """A scripted broker: each route answers what the test put in its queue, then the default."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Callable[[web.Request], Any]]] = {}
        self.hits: dict[str, int] = {}
        self.token = jwt(time.time() + 3600)
        self.app = web.Application()
        routes = {
            ("GET", "/b/identity/api/Captcha/GetCaptcha"): "captcha",
            ("POST", "/b/identity/api/v2/accounts/login"): "login",
            ("GET", "/b/trading/api/v2/tradingbook/GetLastTradingBook"): "book",
            ("POST", "/b/trading/api/v2/orders/NewOrder"): "order",
            ("POST", "/b/trading/api/v2/orders/CalculateOrderParam"): "calc",
            ("POST", "/b/backoffice/api/portfolio/getrealsecuritypositionbydate"): "holdings",
            ("POST", "/md/api/v2/instruments/full"): "instruments",
        }
        for (method, path), name in routes.items():
            self.app.router.add_route(method, path, self._handler(name))

    def script(self, route: str, *answers: Callable[[web.Request], Any]) -> None:
        self.scripts.setdefault(route, []).extend(answers)

    def _handler(self, name: str):
        async def handle(request: web.Request) -> web.StreamResponse:
            self.hits[name] = self.hits.get(name, 0) + 1
            queue = self.scripts.get(name)
            answer = queue.pop(0)(request) if queue else self.default(name, request)
            return await answer if hasattr(answer, "__await__") else answer

        return handle

    def default(self, name: str, request: web.Request) -> web.StreamResponse:
        if name == "captcha":
            return web.json_response(
                {"captchaByteData": base64.b64encode(b"\x89PNG....").decode(), "salt": "s", "hashedCaptcha": "h"}
            )
        if name == "login":
            return web.json_response({"token": self.token, "expireIn": 3600, "errorCode": 0, "isSuccess": True})
        if name != "instruments" and request.headers.get("authorization") != f"Bearer {self.token}":
            return web.Response(status=401)
        if name == "book":
            return web.json_response(
                {"buyingPower": 100_000_000, "remain": 100_000_000, "credit": 0, "timestamp": time.time()}
            )
        if name == "instruments":
            return web.json_response(
                [
                    {
                        "isin": ISIN,
                        "i": {"s": "FOLD", "t": "Foolad", "mineq": 1, "maxeq": 100000},
                        "t": {"maxap": 10000, "minap": 9000, "cup": 9500},
                        "bl": [],
                    }
                ]
            )
        if name == "order":
            return web.json_response({"isSuccess": True, "serialNumber": 77, "trackingNumber": "T-1"})
        if name == "holdings":
            return web.json_response({"isError": False, "result": [{"isin": ISIN, "remainVolume": 250.7}]})
        return web.json_response({"volume": 1, "totalNetAmount": 1, "totalFee": 0})


@pytest.fixture
async def broker():
    fake = FakeBroker()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    fake.base = f"http://127.0.0.1:{server.port}"
    yield fake
    await server.close()


def make_services(
    broker: FakeBroker,
    solver: Solver | None = None,
    retry: dict[str, Any] | None = None,
    timeout_s: float = 10.0,
    **captcha: Any,
) -> Wiring:
    """One account at the fake broker; one attempt per call unless `retry` says (the mapping is tested here)."""
    config = validate_config(
        {
            "cache": {"dir": ".cache"},
            "client": {"retry": retry or {"attempts": 1}, "timeout_s": timeout_s},
            "market_data_url": broker.base + "/md",
            "captcha": {"solver": "manual", "spacing_s": 0, "cooldown_s": 0.05, "throttle_waits": 0, **captcha},
            "brokers": {
                "b": {
                    "identity_url": broker.base + "/b/identity",
                    "trading_url": broker.base + "/b/trading",
                    "backoffice_url": broker.base + "/b/backoffice",
                }
            },
            "accounts": [
                {
                    "name": "ali",
                    "broker": "b",
                    "username": "u1",
                    "password": PASSWORD,
                    "orders": [{"isin": ISIN}, {"isin": ISIN, "side": "sell"}],
                }
            ],
        }
    )
    return Wiring(config, SystemClock(), solver=solver or Solver())


async def test_login_then_calls_use_the_cached_token(broker):
    async with make_services(broker) as services:
        client = services.client(services.config.accounts[0])
        assert (await client.get_buying_power())["buyingPower"] == 100_000_000
        assert (await client.get_buying_power(use_cache=False))["buyingPower"] == 100_000_000
        assert broker.hits["login"] == 1
        assert (await client.get_holdings(ISIN)) == 250
        accepted = await client.new_order(ISIN, "buy", 10000, 10)
        assert accepted.serial_number == 77 and accepted.tracking_number == "T-1"


async def test_wrong_captcha_is_retried_with_a_new_captcha(broker):
    broker.script(
        "login", lambda r: web.json_response({"errorCode": -1000, "isSuccess": False, "errorMessage": "captcha"})
    )
    solver = Solver()
    async with make_services(broker, solver) as services:
        await services.client(services.config.accounts[0]).token()
    assert broker.hits["captcha"] == 2 and broker.hits["login"] == 2 and solver.calls == 2


async def test_wrong_credentials_fail_at_once(broker):
    broker.script("login", lambda r: web.json_response({"errorCode": 3000, "isSuccess": False, "errorMessage": "bad"}))
    async with make_services(broker) as services:
        with pytest.raises(AuthError) as caught:
            await services.client(services.config.accounts[0]).token()
    assert broker.hits["login"] == 1
    assert PASSWORD not in str(caught.value)


async def test_captcha_attempts_run_out(broker):
    wrong = lambda r: web.json_response({"errorCode": -1000, "isSuccess": False})  # noqa: E731
    broker.script("login", wrong, wrong)
    async with make_services(broker, max_attempts=2) as services:
        with pytest.raises(CaptchaError):
            await services.client(services.config.accounts[0]).token()


async def test_http_429_is_rate_limited_with_retry_after(broker):
    broker.script("captcha", lambda r: web.Response(status=429, headers={"Retry-After": "7"}))
    async with make_services(broker) as services:
        with pytest.raises(RateLimited) as caught:
            await services.client(services.config.accounts[0]).login()
    assert caught.value.retry_after == 7


async def test_image_less_captcha_means_throttled(broker):
    broker.script("captcha", lambda r: web.json_response({"salt": "s"}))
    async with make_services(broker) as services:
        with pytest.raises(RateLimited) as caught:
            await services.client(services.config.accounts[0]).login()
    assert caught.value.retry_after == pytest.approx(0.05)


async def test_throttled_login_waits_out_the_cooldown_and_succeeds(broker):
    broker.script("captcha", lambda r: web.Response(status=429))
    async with make_services(broker, throttle_waits=1) as services:
        assert await services.client(services.config.accounts[0]).token() == broker.token
    assert broker.hits["captcha"] == 2


async def test_expired_token_is_refreshed_once_on_401(broker):
    async with make_services(broker) as services:
        client = services.client(services.config.accounts[0])
        await client.token()
        broker.token = jwt(time.time() + 7200)  # the broker revoked the old token
        assert (await client.get_buying_power(use_cache=False))["buyingPower"] == 100_000_000
        assert broker.hits["login"] == 2
        assert (await client.cached_token())["token"] == broker.token


async def test_401_after_fresh_login_is_an_auth_error(broker):
    always_401 = lambda r: web.Response(status=401)  # noqa: E731
    broker.script("book", always_401, always_401)
    async with make_services(broker) as services:
        with pytest.raises(AuthError):
            await services.client(services.config.accounts[0]).get_buying_power(use_cache=False)


@pytest.mark.parametrize(
    "answer",
    [
        lambda r: web.Response(status=502, text="bad gateway"),
        lambda r: web.Response(status=200, text="<html>maintenance</html>", content_type="text/html"),
        lambda r: web.Response(status=200, text='{"buyingPower": 1', content_type="application/json"),
        lambda r: web.json_response({"remain": 5}),
    ],
    ids=["5xx", "html", "truncated-json", "wrong-shape"],
)
async def test_unusable_answers_are_broker_unavailable(broker, answer):
    broker.script("book", answer)
    async with make_services(broker) as services:
        with pytest.raises(BrokerUnavailable):
            await services.client(services.config.accounts[0]).get_buying_power(use_cache=False)


async def test_connection_refused_is_broker_unavailable(broker):
    async with make_services(broker) as services:
        client = services.client(services.config.accounts[0])
        await client.token()
        client.endpoints = client.endpoints.model_copy(update={"trading_url": "http://127.0.0.1:9/b/trading"})
        with pytest.raises(BrokerUnavailable, match="cannot connect|failed"):
            await client.get_buying_power(use_cache=False)


@pytest.mark.parametrize(("status", "code"), [(200, 1011), (400, 1018), (200, 1017)])
async def test_rejections_carry_code_and_broker_message(broker, status, code):
    broker.script(
        "order",
        lambda r: web.json_response(
            {"isSuccess": False, "errorCode": code, "errorMessage": "مانده حساب کافی نیست"}, status=status
        ),
    )
    async with make_services(broker) as services:
        with pytest.raises(OrderRejected) as caught:
            await services.client(services.config.accounts[0]).new_order(ISIN, "buy", 10000, 10)
    assert caught.value.code == code and caught.value.message == "مانده حساب کافی نیست"


async def test_holdings_error_is_surfaced(broker):
    broker.script("holdings", lambda r: web.json_response({"isError": True, "message": "خطا در دریافت"}))
    async with make_services(broker) as services:
        with pytest.raises(BrokerError, match="خطا در دریافت"):
            await services.client(services.config.accounts[0]).get_holdings(ISIN, use_cache=False)


async def test_order_params_buy_and_sell(broker):
    async with make_services(broker) as services:
        account = services.config.accounts[0]
        client = services.client(account)
        buy = await client.order_params(account.orders[0], amount=10_037_120)
        assert (buy.price, buy.volume) == (10000, 1000)
        sell = await client.order_params(account.orders[1])
        assert (sell.price, sell.volume) == (10000, 250)
        cached = await services.cache.get_order_params("u1", "b", ISIN)
        assert cached["side"] == "sell"
