"""`today_orders` and `open_orders`: every page of GetOrders read, a 401 answered by one login, garbage refused.

The simulator proves the real request and row shapes end to end; a scripted broker on loopback plays the
page sequences and broken answers the simulator never gives.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import web

from daemon.clock import SystemClock
from daemon.config import validate_config
from daemon.errors import BrokerError, BrokerUnavailable, OrderRejected
from daemon.platforms.ephoenix import broker_time, normalise_order
from daemon.sim import BUY, SELL, TEHRAN, OrderRequest, created_at, to_ns
from daemon.sim.ephoenix import STATE_CANCELED
from daemon.testing import SimulatorSolver
from daemon.wiring import Wiring
from tests.loopback import serve_app
from tests.simhelp import sim_config

DAY = date(2026, 11, 21)
STAMP = "2026/11/21"
HOT = "IRO1FOLD0001"
MS = 1_000_000


# ---- end to end against the simulator ---------------------------------------------------------------
# (the `sim` fixture's simulator for these tests: the marker applies to the module, only these take `sim`)
pytestmark = pytest.mark.sim(accounts=2, brokers=("gs",), real_time=True)


def _book_the_day(sim) -> list:
    """120 orders of the first account on DAY (every third a sell, the first cancelled), one on the day
    before and one after (Tehran midnight on either side), and one of the other account."""
    mine, other = sim.accounts
    market = sim.state.market
    open_ns = to_ns(datetime(2026, 11, 21, 8, 45, tzinfo=TEHRAN))
    placed = [
        market.accept(mine, OrderRequest(HOT, SELL if n % 3 == 0 else BUY, 5580, 100 + n), open_ns + n * MS)
        for n in range(120)
    ]
    market.cancel(mine, placed[0].serial_number, open_ns + 200 * MS)
    for when in (datetime(2026, 11, 20, 23, 59, 59, tzinfo=TEHRAN), datetime(2026, 11, 22, 0, 0, tzinfo=TEHRAN)):
        market.accept(mine, OrderRequest(HOT, BUY, 5580, 1000), to_ns(when))
    market.accept(other, OrderRequest(HOT, BUY, 5580, 1000), open_ns)
    return placed


async def test_every_page_of_the_day_is_read_and_normalised(sim) -> None:
    placed = _book_the_day(sim)
    async with Wiring(sim_config(sim), SystemClock(), solver=SimulatorSolver(sim)) as services:
        client = services.client(services.config.accounts[0])
        orders = await client.today_orders(DAY)
    assert [r.status for r in sim.request_log.records(route="orders")] == [200, 200, 200]  # 50 + 50 + 20 rows
    assert sorted(o["serialNumber"] for o in orders) == sorted(p.serial_number for p in placed)
    by_serial = {o["serialNumber"]: o for o in orders}
    for order in placed:
        row = by_serial[order.serial_number]
        assert (row["isin"], row["side"], row["price"], row["volume"]) == (HOT, order.side, 5580, order.volume)
        assert row["trackingNumber"] == order.tracking_number and row["executedVolume"] == 0
        assert row["created"] == created_at(order.created_ns) and row["created"].utcoffset() == timedelta(hours=3.5)
        assert isinstance(row["createdAt"], str) and row["pamCode"].endswith(client.username)
    assert (
        by_serial[placed[0].serial_number]["state"] == STATE_CANCELED
        and by_serial[placed[1].serial_number]["state"] == 2
    )
    assert {o["side"] for o in orders} == {BUY, SELL}


async def test_a_refused_token_logs_in_once_and_asks_for_the_same_page(sim) -> None:
    placed = _book_the_day(sim)
    async with Wiring(sim_config(sim), SystemClock(), solver=SimulatorSolver(sim)) as services:
        client = services.client(services.config.accounts[0])
        await client.token()
        sim.revoke_tokens(username=client.username)
        orders = await client.today_orders(DAY)
    assert len(orders) == len(placed)
    assert [r.status for r in sim.request_log.records(route="orders")] == [401, 200, 200, 200]
    assert [r.error_code for r in sim.request_log.records(route="login", username=client.username)][-1] == 0
    assert len([r for r in sim.request_log.records(route="login") if r.error_code == 0]) == 2


# ---- a scripted broker for page sequences and broken answers ----------------------------------------
Answer = Callable[[dict[str, Any]], web.StreamResponse]


class ScriptedBroker:
    """Captcha and login always succeed (tokens tok-1, tok-2, ...); GetOrders and GetOpenOrders answer from
    the test's script first, then from `orders` / `open` (a function of the request body). `pages` lists
    every GetOrders page asked for, refused ones too."""

    def __init__(self) -> None:
        self.logins = 0
        self.token = "tok-0"
        self.pages: list[int] = []
        self.bodies: list[dict[str, Any]] = []
        self.script: dict[str, list[Answer]] = {"orders": [], "open": []}
        self.orders: Answer = lambda body: web.json_response({"rows": [], "totalRecords": 0})
        self.open: Answer = lambda body: web.json_response([])
        self.app = web.Application()
        self.app.router.add_get("/b/identity/api/Captcha/GetCaptcha", self._captcha)
        self.app.router.add_post("/b/identity/api/v2/accounts/login", self._login)
        self.app.router.add_post("/b/trading/api/v2/orders/GetOrders", self._listing("orders"))
        self.app.router.add_get("/b/trading/api/v2/orders/GetOpenOrders", self._listing("open"))

    async def _captcha(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"captchaByteData": base64.b64encode(b"\x89PNG....").decode(), "salt": "s", "hashedCaptcha": "h"}
        )

    async def _login(self, request: web.Request) -> web.StreamResponse:
        self.logins += 1
        self.token = f"tok-{self.logins}"
        return web.json_response({"token": self.token, "expireIn": 3600, "errorCode": 0, "isSuccess": True})

    def _listing(self, name: str):
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.json() if request.can_read_body else {}
            if name == "orders":
                self.pages.append(body["page"])
                self.bodies.append(body)
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return web.Response(status=401)
            queue = self.script[name]
            return queue.pop(0)(body) if queue else getattr(self, name)(body)

        return handle


class Solver:
    async def solve(self, image: bytes) -> str:
        return "12345"


def rows(count: int, start: int = 0) -> list[dict[str, Any]]:
    """GetOrders rows, newest first, serials start+count-1 down to start."""
    return [
        {
            "id": n,
            "serialNumber": 1_000_000 + n,
            "trackingNumber": f"T{n}",
            "isin": HOT,
            "orderSide": 1,
            "price": 5580,
            "volume": 100,
            "executedVolume": 0,
            "state": 2,
            "created": f"2026-11-21T08:45:00.{n:03d}",
        }
        for n in reversed(range(start, start + count))
    ]


def paged(book: list[dict[str, Any]], with_total: bool = True) -> Answer:
    """A broker that pages `book` (read at each request, so a test can change it between pages)."""

    def answer(body: dict[str, Any]) -> web.StreamResponse:
        size = body["pageSize"]
        page = book[(body["page"] - 1) * size : body["page"] * size]
        return web.json_response({"rows": page, **({"totalRecords": len(book)} if with_total else {})})

    return answer


@pytest.fixture
async def broker():
    fake = ScriptedBroker()
    async with serve_app(fake.app) as base:
        fake.base = base
        yield fake


def services_for(broker: ScriptedBroker, attempts: int = 1) -> Wiring:
    config = validate_config(
        {
            "cache": {"dir": ".cache"},
            "client": {"retry": {"attempts": attempts, "backoff_s": 0, "max_backoff_s": 0}},
            "market_data_url": broker.base + "/md",
            "captcha": {"solver": "manual", "spacing_s": 0, "cooldown_s": 0.05, "throttle_waits": 0},
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
                    "password": "pw-for-order-tests",
                    "orders": [{"isin": HOT}],
                }
            ],
        }
    )
    return Wiring(config, SystemClock(), solver=Solver())


async def _today(broker: ScriptedBroker, attempts: int = 1) -> list[dict[str, Any]]:
    async with services_for(broker, attempts) as services:
        return await services.client(services.config.accounts[0]).today_orders(DAY)


async def _open(broker: ScriptedBroker) -> list[dict[str, Any]]:
    async with services_for(broker) as services:
        return await services.client(services.config.accounts[0]).open_orders()


async def test_every_page_is_asked_for_with_the_documented_body(broker) -> None:
    book = rows(120)
    broker.orders = paged(book)
    found = await _today(broker)
    assert broker.pages == [1, 2, 3]
    assert broker.bodies[0] == {
        "page": 1,
        "pageSize": 50,
        "fromDate": STAMP,
        "toDate": STAMP,
        "side": None,
        "isin": None,
        "includeStatus": [],
        "pamCode": None,
    }
    assert [o["serialNumber"] for o in found] == [r["serialNumber"] for r in book]


@pytest.mark.parametrize(
    ("count", "with_total", "pages"),
    [
        (100, True, [1, 2]),  # the total is reached on a full page: no third request
        (0, True, [1]),
        (60, False, [1, 2]),  # no total: a short page is the last
        (100, False, [1, 2, 3]),  # no total and full pages: an empty page ends it
    ],
)
async def test_the_read_stops_at_the_total_or_the_last_page(
    broker, count: int, with_total: bool, pages: list[int]
) -> None:
    broker.orders = paged(rows(count), with_total=with_total)
    assert len(await _today(broker)) == count
    assert broker.pages == pages


async def test_a_row_pushed_onto_the_next_page_is_kept_once(broker) -> None:
    book = rows(100)
    serve = paged(book)

    def then_a_new_order(body: dict[str, Any]) -> web.StreamResponse:
        answer = serve(body)
        book.insert(0, rows(1, start=500)[0])  # placed while the pages are read: everything moves down one
        return answer

    broker.script["orders"].append(then_a_new_order)
    broker.orders = serve
    found = await _today(broker)
    assert sorted(o["serialNumber"] for o in found) == sorted(r["serialNumber"] for r in rows(100))
    assert broker.pages == [1, 2, 3, 4]


async def test_a_refused_token_on_a_later_page_logs_in_once_and_asks_for_that_page_again(broker) -> None:
    serve = paged(rows(120))

    def then_revoked(body: dict[str, Any]) -> web.StreamResponse:
        broker.token = "revoked"
        return serve(body)

    broker.script["orders"].append(then_revoked)
    broker.orders = serve
    assert len(await _today(broker)) == 120
    assert broker.pages == [1, 2, 2, 3] and broker.logins == 2


async def test_an_unavailable_page_is_retried_by_the_policy(broker) -> None:
    broker.orders = paged(rows(120))
    broker.script["orders"] += [paged(rows(120)), lambda body: web.Response(status=503, text="busy")]
    assert len(await _today(broker, attempts=3)) == 120
    assert broker.pages == [1, 2, 2, 3]


@pytest.mark.parametrize(
    "answer",
    [
        [],
        "rows",
        None,
        {},
        {"rows": None},
        {"rows": {"0": {}}},
        {"rows": "[]"},
        {"rows": [1]},
        {"rows": [rows(1)[0], None], "totalRecords": 2},
        {"rows": [["id", 1]]},
    ],
)
async def test_a_garbage_page_is_a_broker_error(broker, answer: Any) -> None:
    broker.orders = lambda body: web.json_response(answer)
    with pytest.raises(BrokerUnavailable) as caught:
        await _today(broker)
    assert isinstance(caught.value, BrokerError) and "GetOrders" in str(caught.value) and "\n" not in str(caught.value)


async def test_a_broker_that_ignores_the_page_number_is_a_broker_error(broker) -> None:
    broker.orders = lambda body: web.json_response({"rows": rows(50), "totalRecords": 120})
    with pytest.raises(BrokerUnavailable, match="rows already read"):
        await _today(broker)
    assert broker.pages == [1, 2]


async def test_an_error_code_is_a_rejection(broker) -> None:
    broker.orders = lambda body: web.json_response({"isSuccess": False, "errorCode": 1000, "errorMessage": "نامعتبر"})
    with pytest.raises(OrderRejected) as caught:
        await _today(broker)
    assert caught.value.code == 1000


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "none",
        {},
        {"isSuccess": True, "result": None},
        {"result": {"rows": 3}},
        [1],
        [{"isin": HOT}, "x"],
    ],
)
async def test_garbage_open_orders_are_a_broker_error_never_none(broker, answer: Any) -> None:
    broker.open = lambda body: web.json_response(answer)
    with pytest.raises(BrokerUnavailable, match="GetOpenOrders"):
        await _open(broker)


@pytest.mark.parametrize("wrap", [lambda r: r, lambda r: {"result": r}, lambda r: {"isSuccess": True, "data": r}])
async def test_open_orders_come_normalised(broker, wrap: Callable[[Any], Any]) -> None:
    listed = [
        {
            "serialNumber": "77",
            "trackingNumber": 12,
            "isin": HOT,
            "side": 2,
            "volume": 10.0,
            "createdAt": "2026-11-21T08:45:00.004+03:30",
        }
    ]
    broker.open = lambda body: web.json_response(wrap(listed))
    (order,) = await _open(broker)
    assert (order["serialNumber"], order["trackingNumber"], order["side"], order["volume"]) == (77, "12", 2, 10)
    assert order["created"] == datetime(2026, 11, 21, 5, 15, 0, 4000, tzinfo=UTC)
    assert await _open(broker) == [order]
    broker.open = lambda body: web.json_response([])
    assert await _open(broker) == []


# ---- the normalisation itself -----------------------------------------------------------------------
def test_a_get_orders_row_takes_the_open_orders_keys() -> None:
    row = {
        "id": 9,
        "serialNumber": 1_000_009,
        "trackingNumber": "T9",
        "isin": HOT,
        "orderSide": 2,
        "price": 5580,
        "volume": 100,
        "executedVolume": 40,
        "state": 7,
        "created": "2026-11-21T08:45:00.250",
        "pamCode": "GSu1",
    }
    order = normalise_order(row)
    assert {k: order[k] for k in ("side", "serialNumber", "trackingNumber", "volume", "executedVolume", "state")} == {
        "side": 2,
        "serialNumber": 1_000_009,
        "trackingNumber": "T9",
        "volume": 100,
        "executedVolume": 40,
        "state": 7,
    }
    assert order["createdAt"] == "2026-11-21T08:45:00.250" and order["pamCode"] == "GSu1" and order["orderSide"] == 2
    assert order["created"] == datetime(2026, 11, 21, 8, 45, 0, 250_000, tzinfo=TEHRAN)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("side", True, None),
        ("side", 3, None),
        ("side", "1", 1),
        ("serialNumber", 1.5, None),
        ("serialNumber", "x", None),
        ("serialNumber", [1], None),
        ("trackingNumber", "", None),
        ("trackingNumber", False, None),
        ("isin", 5, None),
        ("volume", float("nan"), None),
        ("state", "4", 4),
    ],
)
def test_odd_fields_become_none_or_their_number(field: str, value: Any, expected: Any) -> None:
    assert normalise_order({field: value})[field] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T08:45:00.012", datetime(2026, 11, 21, 8, 45, 0, 12_000, tzinfo=TEHRAN)),  # no offset: Tehran
        ("2026-11-21 08:45:00", datetime(2026, 11, 21, 8, 45, tzinfo=TEHRAN)),
        ("2026-11-21T05:15:00Z", datetime(2026, 11, 21, 5, 15, tzinfo=UTC)),
        (
            "2026-11-21T08:45:00.1234567+03:30",
            datetime(2026, 11, 21, 8, 45, 0, 123_456, tzinfo=timezone(timedelta(hours=3.5))),
        ),
        ("2026-11-21", None),
        ("1405/08/30 08:45", None),
        ("08:45", None),
        ("", None),
        (1_795_000_000, None),
        (None, None),
    ],
)
def test_broker_times(text: Any, expected: datetime | None) -> None:
    moment = broker_time(text)
    assert moment == expected
    if moment is not None:
        assert moment.tzinfo is not None
