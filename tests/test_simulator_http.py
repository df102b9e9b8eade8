"""The simulator over HTTP on 127.0.0.1, driven by aiohttp's client, with a fake clock for every time rule."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime

import aiohttp
import pytest
from PIL import Image

from daemon.clock import FakeClock
from daemon.config import validate_config
from daemon.sim import b64url_decode
from daemon.sim._market import fee_of
from daemon.sim.ephoenix import STATE_CANCELED, STATE_EXECUTED, STATE_PARTIAL
from daemon.simulator import DEFAULT_PASSWORD, PASSWORD_ENV, Simulator
from tests.sim_support import GS_USER, HOT, SHAHR_USER, BrokerClient


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def gs(session: aiohttp.ClientSession, sim: Simulator) -> BrokerClient:
    return BrokerClient(session, sim, "gs")


@pytest.fixture
def shahr(session: aiohttp.ClientSession, sim: Simulator) -> BrokerClient:
    return BrokerClient(session, sim, "shahr")


async def _error_code(response: aiohttp.ClientResponse) -> int:
    return (await response.json())["errorCode"]


# ---- captcha and login --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("broker", "magic", "fmt"), [("gs", b"\x89PNG\r\n\x1a\n", "PNG"), ("shahr", b"\xff\xd8\xff", "JPEG")]
)
async def test_captcha_is_a_real_picture_per_broker(
    session: aiohttp.ClientSession, sim: Simulator, broker: str, magic: bytes, fmt: str
) -> None:
    response = await BrokerClient(session, sim, broker).captcha()
    body = await response.json()
    assert response.status == 200 and set(body) == {"captchaByteData", "salt", "hashedCaptcha"}
    image = base64.b64decode(body["captchaByteData"])
    assert image.startswith(magic)
    picture = Image.open(io.BytesIO(image))
    assert picture.format == fmt and picture.size[0] >= 120 and picture.size[1] >= 40
    answer = sim.captchas.answer(body["salt"])
    assert answer not in body["hashedCaptcha"] and answer not in body["salt"]


async def test_login_gives_a_jwt_with_expiry(gs: BrokerClient, clock: FakeClock) -> None:
    response = await gs.login(GS_USER)
    body = await response.json()
    assert response.status == 200
    assert (body["errorCode"], body["isSuccess"], body["errorMessage"], body["expireIn"]) == (0, True, None, 3600)
    header, payload, signature = body["token"].split(".")
    claims = json.loads(b64url_decode(payload))
    assert claims["sub"] == GS_USER and claims["broker"] == "gs"
    assert claims["exp"] == clock.time_ns() // 10**9 + 3600
    assert json.loads(b64url_decode(header))["alg"] == "HS256" and signature


async def test_wrong_captcha_is_checked_before_the_password(gs: BrokerClient) -> None:
    both_wrong = await gs.login(GS_USER, password="nope", answer="00000x")
    assert both_wrong.status == 200 and await _error_code(both_wrong) == -1000
    assert (await both_wrong.json())["token"] is None
    wrong_password = await gs.login(GS_USER, password="nope")
    assert wrong_password.status == 200 and await _error_code(wrong_password) == 3000
    unknown_user = await gs.login("9999999999")
    assert await _error_code(unknown_user) == 3000
    shahr_user_at_gs = await gs.login(SHAHR_USER)
    assert await _error_code(shahr_user_at_gs) == 3000


async def test_a_login_body_that_is_not_json_is_still_http_200(gs: BrokerClient) -> None:
    response = await gs.session.post(f"{gs.identity}/api/v2/accounts/login", data=b"loginName=x")
    assert response.status == 200 and await _error_code(response) == 1000


async def test_a_captcha_cannot_be_forged_or_used_late(gs: BrokerClient, clock: FakeClock) -> None:
    captcha = await (await gs.captcha()).json()
    forged = {**captcha, "hashedCaptcha": "0" * 64}
    assert await _error_code(await gs.login(GS_USER, captcha=forged)) == -1000
    clock.advance(301)
    assert await _error_code(await gs.login(GS_USER, captcha=captcha)) == -1000


async def test_too_many_identity_calls_get_429_and_a_cooldown(
    sim: Simulator, gs: BrokerClient, shahr: BrokerClient, clock: FakeClock
) -> None:
    sim.settings.login_limit.max_calls = 3
    sim.settings.login_limit.retry_after = True
    for _ in range(3):
        assert (await gs.captcha()).status == 200
    refused = await gs.captcha()
    assert refused.status == 429 and refused.headers["Retry-After"] == "420"
    captcha = await (await shahr.captcha()).json()  # another identity host is not affected
    login = await gs.login(GS_USER, captcha=captcha)
    assert login.status == 429
    clock.advance(419.5)
    assert (await gs.captcha()).headers["Retry-After"] == "1"
    clock.advance(0.5)
    assert (await gs.captcha()).status == 200
    sim.settings.login_limit.retry_after = False
    for _ in range(3):
        await gs.captcha()
    silent = await gs.captcha()
    assert silent.status == 429 and "Retry-After" not in silent.headers


# ---- tokens -------------------------------------------------------------------------------------
async def test_missing_unknown_expired_revoked_or_foreign_tokens_get_401(
    sim: Simulator, gs: BrokerClient, shahr: BrokerClient, clock: FakeClock
) -> None:
    assert (await gs.trading_book(token="")).status == 401
    assert (await gs.trading_book(token="not.a.token")).status == 401
    token = await gs.sign_in(GS_USER)
    assert (await gs.trading_book()).status == 200
    assert (await shahr.trading_book(token=token)).status == 401  # signed for gs
    assert (await gs.holdings()).status == 200
    clock.advance(3599)
    assert (await gs.new_order(1000)).status == 200
    clock.advance(1)
    assert (await gs.trading_book()).status == 401
    assert (await gs.new_order(1000)).status == 401
    await gs.sign_in(GS_USER)
    assert sim.revoke_tokens(broker="gs", username=GS_USER) == 1
    assert (await gs.holdings()).status == 401
    assert (await gs.orders()).status == 401


# ---- trading book and the simulator's clock ----------------------------------------------------
async def test_trading_book_and_date_header_use_the_skewed_clock(
    sim: Simulator, gs: BrokerClient, clock: FakeClock
) -> None:
    await gs.sign_in(GS_USER)
    sim.set_skew(90_500)
    response = await gs.trading_book()
    body = await response.json()
    skewed = clock.now() + timedelta(milliseconds=90_500)
    assert response.headers["Date"] == format_datetime(skewed, usegmt=True) == "Sat, 21 Nov 2026 04:01:30 GMT"
    assert parsedate_to_datetime(response.headers["Date"]) == skewed.replace(microsecond=0)
    assert body == {
        "buyingPower": 5_000_000_000,
        "remain": 5_000_000_000,
        "credit": 0,
        "timestamp": int(skewed.timestamp()),
    }
    sim.set_skew(-2_000)
    assert (await gs.trading_book()).headers["Date"] == "Sat, 21 Nov 2026 03:59:58 GMT"


async def test_credit_is_part_of_buying_power(sim: Simulator, gs: BrokerClient) -> None:
    sim.add_account("gs", "credit1", "pw1", buying_power=1_000_000, credit=400_000)
    token = (await (await gs.login("credit1", password="pw1")).json())["token"]
    book = await (await gs.trading_book(token=token)).json()
    assert (book["buyingPower"], book["remain"], book["credit"]) == (1_000_000, 600_000, 400_000)


# ---- CalculateOrderParam ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("amount", "price", "expected"),
    [
        (100_000_000, 5580, {"volume": 17854, "totalNetAmount": 99_995_129, "totalFee": 369_809}),
        (10**13, 5580, {"volume": 200_000, "totalNetAmount": 1_120_142_592, "totalFee": 4_142_592}),
        (5000, 5580, {"volume": 0, "totalNetAmount": 0, "totalFee": 0}),
        (-607_897, 5580, {"volume": 0, "totalNetAmount": 0, "totalFee": 0}),
        (5600.71296, 5580, {"volume": 1, "totalNetAmount": 5601, "totalFee": 21}),  # exactly 5580 * 1.003712
        (5600.71295, 5580, {"volume": 0, "totalNetAmount": 0, "totalFee": 0}),
    ],
)
async def test_calculate_order_param(gs: BrokerClient, amount: float, price: int, expected: dict[str, int]) -> None:
    await gs.sign_in(GS_USER)
    response = await gs.calc({"isin": HOT, "side": 1, "totalNetAmount": amount, "price": price})
    assert response.status == 200 and await response.json() == expected


async def test_calculate_order_param_bad_input(gs: BrokerClient) -> None:
    await gs.sign_in(GS_USER)
    assert (
        await _error_code(await gs.calc({"isin": "IRO1NONE0001", "side": 1, "totalNetAmount": 1, "price": 1})) == 1004
    )
    assert await _error_code(await gs.calc({"isin": HOT, "side": 5, "totalNetAmount": 1, "price": 1})) == 1000
    assert await _error_code(await gs.calc({"isin": HOT, "side": 1, "totalNetAmount": "lots", "price": 1})) == 1000


# ---- NewOrder -----------------------------------------------------------------------------------
async def test_1017_before_the_open_and_1018_counting_that_attempt(
    sim: Simulator, gs: BrokerClient, clock: FakeClock
) -> None:
    await gs.sign_in(GS_USER)
    sim.set_open_at(clock.now() + timedelta(seconds=1))
    before = await gs.new_order(1000)
    assert before.status == 200 and await before.json() == {
        "isSuccess": False,
        "errorCode": 1017,
        "errorMessage": "بازار در وضعیت سفارش گیری نمی‌باشد",
    }
    clock.advance(0.9)
    assert await _error_code(await gs.new_order(1000)) == 1017
    clock.advance(0.15)  # open now, but 150 ms after the refused attempt
    assert await _error_code(await gs.new_order(1000)) == 1018
    clock.advance(0.299)  # 299 ms after the last attempt, which counts too
    assert await _error_code(await gs.new_order(1000)) == 1018
    clock.advance(0.3)
    assert await _error_code(await gs.new_order(1000)) == 0


async def test_open_instant_is_on_the_simulators_clock(sim: Simulator, gs: BrokerClient, clock: FakeClock) -> None:
    await gs.sign_in(GS_USER)
    sim.set_open_at(clock.now() + timedelta(seconds=1))
    sim.set_skew(1_000)  # the broker's clock is a second ahead: it is already open there
    assert await _error_code(await gs.new_order(1000)) == 0


async def test_spacing_is_per_account_and_optionally_per_isin(
    sim: Simulator, gs: BrokerClient, shahr: BrokerClient, clock: FakeClock
) -> None:
    await gs.sign_in(GS_USER)
    await shahr.sign_in(SHAHR_USER)
    assert await _error_code(await gs.new_order(1000)) == 0
    assert await _error_code(await shahr.new_order(1000)) == 0  # another account
    assert await _error_code(await gs.new_order(1000, isin="IRO1IKCO0001", price=3000)) == 1018
    clock.advance(0.3)
    sim.settings.rules.spacing_scope = "account_isin"
    assert await _error_code(await gs.new_order(1000)) == 0
    assert await _error_code(await gs.new_order(2000, isin="IRO1IKCO0001", price=3000)) == 0
    assert await _error_code(await gs.new_order(1000)) == 1018
    sim.settings.rules.spacing_ms = 50
    clock.advance(0.05)
    assert await _error_code(await gs.new_order(1000)) == 0


async def test_volume_price_and_minimum_value_rules(sim: Simulator, gs: BrokerClient, clock: FakeClock) -> None:
    sim.add_instrument("IRO1TEST0001", "تست", last=5000, maxap=5150, minap=4850, mineq=10, maxeq=1000)
    await gs.sign_in(GS_USER)
    cases = [
        ({"volume": 9, "isin": "IRO1TEST0001", "price": 5000}, 1001),
        ({"volume": 1001, "isin": "IRO1TEST0001", "price": 5000}, 1001),
        ({"volume": 0}, 1001),
        ({"volume": 200_001}, 1001),
        ({"volume": 1000, "price": 5590}, 1003),  # above maxap 5580
        ({"volume": 1000, "price": 5250}, 1003),  # below minap 5260
        ({"volume": 1000, "isin": "IRO1NONE0001"}, 1004),
        ({"volume": 100}, 1006),  # 558,000 rial < 5,000,000
        ({"volume": 896}, 1006),  # 4,999,680
        ({"volume": 897}, 0),  # 5,005,260
    ]
    for fields, code in cases:
        clock.advance(0.3)
        response = await gs.new_order(**fields)  # type: ignore[arg-type]
        body = await response.json()
        assert (fields, body["errorCode"]) == (fields, code)
        if code:
            assert body["isSuccess"] is False and body["errorMessage"]


async def test_an_accepted_order_spends_buying_power_and_the_next_gets_1011(
    sim: Simulator, gs: BrokerClient, clock: FakeClock
) -> None:
    sim.add_account("gs", "small", DEFAULT_PASSWORD, buying_power=6_000_000)
    await gs.sign_in("small")
    assert await _error_code(await gs.new_order(1075)) == 1011  # 5,998,500 + 22,267 fee > 6,000,000
    clock.advance(0.3)
    accepted = await gs.new_order(1000)  # 5,580,000 + 20,713 fee
    body = await accepted.json()
    assert body["isSuccess"] is True and body["errorCode"] == 0
    assert isinstance(body["serialNumber"], int) and body["trackingNumber"]
    book = await (await gs.trading_book()).json()
    assert book["buyingPower"] == 6_000_000 - 5_600_713
    clock.advance(0.3)
    assert await _error_code(await gs.new_order(897)) == 1011


async def test_sell_orders_check_holdings(sim: Simulator, gs: BrokerClient, clock: FakeClock) -> None:
    await gs.sign_in(GS_USER)
    assert await _error_code(await gs.new_order(10_001, side=2)) == 1012
    clock.advance(0.3)
    assert await _error_code(await gs.new_order(10_000, side=2)) == 0
    holdings = await (await gs.holdings()).json()
    assert holdings["isError"] is False
    assert HOT not in {row["isin"] for row in holdings["result"]}
    assert {"isin": "IRO1IKCO0001", "symbol": "خودرو", "remainVolume": 10000.0} in holdings["result"]
    assert (await (await gs.trading_book()).json())["buyingPower"] == 5_000_000_000


async def test_holdings_error_carries_the_message(sim: Simulator, gs: BrokerClient) -> None:
    await gs.sign_in(GS_USER)
    sim.account("gs", GS_USER).holdings_error = "خطای کارگزار"
    assert await (await gs.holdings()).json() == {"isError": True, "message": "خطای کارگزار", "result": None}


async def test_success_shapes_and_rejection_status_options(sim: Simulator, gs: BrokerClient, clock: FakeClock) -> None:
    await gs.sign_in(GS_USER)
    sim.settings.order_response = "nested"
    nested = await (await gs.new_order(1000)).json()
    assert set(nested) == {"isSuccess", "result"} and nested["isSuccess"] is True
    assert set(nested["result"]) == {"serialNumber", "trackingNumber", "state"}
    sim.settings.rejection_status = 400
    refused = await gs.new_order(1000)
    assert refused.status == 400 and await _error_code(refused) == 1018


async def test_open_orders_history_and_cancel(
    sim: Simulator, gs: BrokerClient, shahr: BrokerClient, clock: FakeClock
) -> None:
    await gs.sign_in(GS_USER)
    await shahr.sign_in(SHAHR_USER)
    serial = (await (await gs.new_order(1000)).json())["serialNumber"]
    listed = await (await gs.open_orders()).json()
    assert len(listed) == 1
    order = listed[0]
    assert (order["serialNumber"], order["isin"], order["side"], order["price"], order["volume"], order["state"]) == (
        serial,
        HOT,
        1,
        5580,
        1000,
        2,
    )
    assert order["createdAt"] == "2026-11-21T07:30:00.000+03:30"
    assert await (await shahr.open_orders()).json() == []
    assert await _error_code(await shahr.cancel(serial)) == 1020  # not shahr's order
    assert await _error_code(await gs.cancel("abc")) == 1000
    cancelled = await gs.cancel(serial)
    assert await cancelled.json() == {"isSuccess": True, "errorCode": 0, "errorMessage": None, "serialNumber": serial}
    assert await (await gs.open_orders()).json() == []
    assert [o["state"] for o in (await (await gs.orders()).json())["rows"]] == [STATE_CANCELED]
    assert (await (await gs.trading_book()).json())["buyingPower"] == 5_000_000_000
    assert await _error_code(await gs.cancel(serial)) == 1020


# ---- GetOrders: the day's orders in every state, paged and filtered --------------------------------
TODAY = "2026/11/21"  # the fake clock's day in Tehran (07:30 there)
ROW_FIELDS = {
    "id",
    "serialNumber",
    "trackingNumber",
    "isin",
    "symbol",
    "symbolTitle",
    "orderSide",
    "price",
    "volume",
    "executedVolume",
    "executedAmount",
    "netTradedValue",
    "totalFee",
    "state",
    "stateDesc",
    "isDone",
    "date",
    "created",
    "executionDate",
    "pamCode",
}


async def _place(gs: BrokerClient, clock: FakeClock, *orders: dict[str, int | str]) -> list[int]:
    """Each order accepted (a spacing apart on the fake clock); their serial numbers."""
    serials = []
    for fields in orders:
        clock.advance(0.5)
        body = await (await gs.new_order(**fields)).json()  # type: ignore[arg-type]
        assert body["errorCode"] == 0, body
        serials.append(body["serialNumber"])
    return serials


async def _rows(gs: BrokerClient, day: str | None = TODAY, **fields: object) -> tuple[list[dict], int]:
    response = await gs.orders(day, **fields)
    body = await response.json()
    assert response.status == 200 and set(body) == {"rows", "totalRecords"}, body
    return body["rows"], body["totalRecords"]


async def test_get_orders_rows_carry_the_documented_fields(sim: Simulator, gs: BrokerClient, clock: FakeClock) -> None:
    await gs.sign_in(GS_USER)
    answer = await (await gs.new_order(1000)).json()
    rows, total = await _rows(gs)
    assert total == 1 and len(rows) == 1 and set(rows[0]) == ROW_FIELDS
    row = rows[0]
    assert (row["serialNumber"], row["trackingNumber"]) == (answer["serialNumber"], answer["trackingNumber"])
    assert (row["isin"], row["symbol"], row["symbolTitle"], row["orderSide"]) == (
        HOT,
        "فولاد",
        "فولاد مبارکه اصفهان",
        1,
    )
    assert (row["price"], row["volume"], row["state"], row["isDone"]) == (5580, 1000, 2, False)
    assert (row["executedVolume"], row["executedAmount"], row["netTradedValue"], row["totalFee"]) == (0, 0, 0, 0)
    assert row["executionDate"] is None and row["stateDesc"]
    assert (row["date"], row["created"]) == (TODAY, "2026-11-21T07:30:00.000")  # Tehran wall time, no offset
    assert row["pamCode"].endswith(GS_USER) and row["pamCode"] != GS_USER
    assert isinstance(row["id"], int) and row["id"] >= 1


async def test_get_orders_is_newest_first_in_pages_with_the_total(
    sim: Simulator, gs: BrokerClient, clock: FakeClock
) -> None:
    await gs.sign_in(GS_USER)
    serials = await _place(gs, clock, *[{"volume": 1000 + n} for n in range(5)])
    pages = [await _rows(gs, page=page, pageSize=2) for page in (1, 2, 3, 4)]
    assert [len(rows) for rows, _ in pages] == [2, 2, 1, 0]
    assert {total for _, total in pages} == {5}
    assert [row["serialNumber"] for rows, _ in pages for row in rows] == serials[::-1]
    created = [row["created"] for rows, _ in pages for row in rows]
    assert created == sorted(created, reverse=True) and len(set(created)) == 5


async def test_get_orders_filters(sim: Simulator, gs: BrokerClient, shahr: BrokerClient, clock: FakeClock) -> None:
    await gs.sign_in(GS_USER)
    await shahr.sign_in(SHAHR_USER)
    buy, sell, other = await _place(
        gs,
        clock,
        {"volume": 1000},
        {"volume": 1000, "side": 2},
        {"volume": 2000, "isin": "IRO1IKCO0001", "price": 3000},
    )
    (theirs,) = await _place(shahr, clock, {"volume": 1000})
    assert await _error_code(await gs.cancel(buy)) == 0
    clock.advance(timedelta(days=1))
    await gs.sign_in(GS_USER)  # yesterday's token has expired
    (tomorrow,) = await _place(gs, clock, {"volume": 1500})

    def serials(rows: list[dict]) -> set[int]:
        return {row["serialNumber"] for row in rows}

    assert serials((await _rows(gs))[0]) == {buy, sell, other}
    assert serials((await _rows(gs, "2026/11/22"))[0]) == {tomorrow}
    assert serials((await _rows(gs, None))[0]) == {buy, sell, other, tomorrow}  # null bounds: every day
    assert serials((await _rows(gs, None, fromDate="2026/11/22"))[0]) == {tomorrow}
    assert serials((await _rows(gs, None, toDate="2026/11/21"))[0]) == {buy, sell, other}
    assert (await _rows(gs, None, fromDate="2026/11/22", toDate="2026/11/21")) == ([], 0)
    assert serials((await _rows(gs, side=2))[0]) == {sell}
    assert serials((await _rows(gs, side=1))[0]) == {buy, other}
    assert serials((await _rows(gs, isin="IRO1IKCO0001"))[0]) == {other}
    cancelled, total = await _rows(gs, includeStatus=[STATE_CANCELED])
    assert serials(cancelled) == {buy} and total == 1
    assert cancelled[0]["isDone"] is True and cancelled[0]["stateDesc"] != (await _rows(gs, side=2))[0][0]["stateDesc"]
    assert serials((await _rows(gs, includeStatus=[2]))[0]) == {sell, other}
    assert serials((await _rows(gs, includeStatus=[2, 4], side=1, isin=HOT))[0]) == {buy}
    pam = (await _rows(gs))[0][0]["pamCode"]
    assert serials((await _rows(gs, pamCode=pam))[0]) == {buy, sell, other}
    assert (await _rows(gs, pamCode="someone-else")) == ([], 0)
    everything, total = await _rows(gs, None)
    assert total == 4 and all(row["pamCode"].endswith(GS_USER) for row in everything)  # never another account's
    await shahr.sign_in(SHAHR_USER)
    assert serials((await _rows(shahr, None))[0]) == {theirs}


@pytest.mark.parametrize(
    "fields",
    [
        {"page": 0},
        {"page": "1"},
        {"page": True},
        {"pageSize": 0},
        {"pageSize": 501},
        {"pageSize": 2.5},
        {"fromDate": "2026-11-21"},
        {"toDate": "2026/13/01"},
        {"fromDate": 20261121},
        {"side": 3},
        {"side": True},
        {"isin": 5},
        {"includeStatus": "3"},
        {"includeStatus": [3, "4"]},
        {"pamCode": 12},
    ],
)
async def test_get_orders_refuses_a_malformed_body_with_400(gs: BrokerClient, fields: dict) -> None:
    await gs.sign_in(GS_USER)
    response = await gs.orders(TODAY, **fields)
    assert response.status == 400 and await _error_code(response) == 1000


async def test_get_orders_needs_a_token_and_a_json_body(sim: Simulator, gs: BrokerClient) -> None:
    assert (await gs.orders(TODAY)).status == 401
    await gs.sign_in(GS_USER)
    response = await gs.session.post(
        f"{gs.trading}/api/v2/orders/GetOrders", data=b"{nope", headers={"Authorization": f"Bearer {gs.token}"}
    )
    assert response.status == 400 and await _error_code(response) == 1000
    assert (
        await gs.session.get(f"{gs.trading}/api/v2/orders/GetOrders", headers={"Authorization": f"Bearer {gs.token}"})
    ).status == 405
    assert [r.status for r in sim.request_log.records(route="orders")] == [401, 400]  # faults and logs say "orders"


async def test_malformed_order_body_is_1000(gs: BrokerClient) -> None:
    await gs.sign_in(GS_USER)
    response = await gs.session.post(
        f"{gs.trading}/api/v2/orders/NewOrder", data=b"{not json", headers={"Authorization": f"Bearer {gs.token}"}
    )
    assert await _error_code(response) == 1000


# ---- market data, unknown brokers ----------------------------------------------------------------
async def test_instruments_full_fields(gs: BrokerClient) -> None:
    response = await gs.instruments([HOT, "IRO1NONE0001", "IRO1IKCO0001"])
    rows = await response.json()
    assert response.status == 200 and len(rows) == 2
    first = rows[0]
    assert set(first) == {"i", "t", "bl"}
    assert first["i"] == {"isin": HOT, "s": "فولاد", "t": "فولاد مبارکه اصفهان", "mineq": 1, "maxeq": 200_000}
    assert first["t"] == {"isin": HOT, "maxap": 5580, "minap": 5260, "cup": 5420, "lp": 5420}
    assert first["bl"][0] == {
        "isin": HOT,
        "r": 1,
        "bp": 5580,
        "bv": 288_479_554,
        "boc": 1776,
        "sp": 0,
        "sv": 0,
        "soc": 0,
    }
    assert rows[1]["i"]["isin"] == "IRO1IKCO0001"
    bad = await gs.session.post(f"{gs.sim.market_data_url}/api/v2/instruments/full", json={"isins": [HOT]})
    assert bad.status == 400


async def test_unknown_broker_is_404(session: aiohttp.ClientSession, sim: Simulator) -> None:
    response = await session.get(f"{sim.base_url}/nope/identity/api/Captcha/GetCaptcha")
    assert response.status == 404


async def test_config_snippet_is_valid_daemon_config(sim: Simulator) -> None:
    snippet = sim.config_snippet()
    config = validate_config(snippet.data)
    assert [a.broker for a in config.accounts] == ["gs", "shahr"]
    assert config.broker("gs").trading_url == f"{sim.base_url}/gs/trading"
    assert config.broker("shahr").backoffice_url == f"{sim.base_url}/shahr/backoffice"
    assert config.market_data_url == f"{sim.base_url}/marketdata"
    assert snippet.env == {PASSWORD_ENV: DEFAULT_PASSWORD}
    assert "market_data_url:" in snippet.yaml and f"password_env: {PASSWORD_ENV}" in snippet.yaml
    sim.add_account("gs", "other", "another-password")
    env = sim.config_snippet().env
    assert len(env) == 3 and set(env.values()) == {DEFAULT_PASSWORD, "another-password"}


# ---- fills: a plan, a cancel of the rest, a full execution -------------------------------------------------
async def test_fills_show_in_both_lists_and_a_cancel_frees_only_the_unexecuted_rest(
    sim: Simulator, gs: BrokerClient, clock: FakeClock
) -> None:
    await gs.sign_in(GS_USER)
    sim.set_fill(HOT, "0.25@2s", "1@10s:5570")  # no open set: counted from each order's booking
    serial = (await (await gs.new_order(1000)).json())["serialNumber"]
    [row], _ = await _rows(gs)
    assert (row["executedVolume"], row["state"], row["isDone"], row["executionDate"]) == (0, 2, False, None)
    clock.advance(2)
    [row], _ = await _rows(gs)
    fee = fee_of(5580, 250, sim.settings.rules.buy_fee)
    assert (row["executedVolume"], row["executedAmount"], row["totalFee"], row["netTradedValue"]) == (
        250,
        250 * 5580,
        fee,
        250 * 5580 + fee,
    )
    assert (row["state"], row["isDone"], row["executionDate"]) == (STATE_PARTIAL, False, "2026-11-21T07:30:02.000")
    [listed] = await (await gs.open_orders()).json()
    assert (listed["executedVolume"], listed["state"]) == (250, STATE_PARTIAL)
    assert (await _rows(gs, includeStatus=[STATE_EXECUTED]))[1] == 0
    power = (await (await gs.trading_book()).json())["buyingPower"]
    assert await _error_code(await gs.cancel(serial)) == 0
    rest = 750 * 5580 + fee_of(5580, 750, sim.settings.rules.buy_fee)
    assert (await (await gs.trading_book()).json())["buyingPower"] == power + rest
    clock.advance(10)  # past the plan's last step: nothing executes after the cancel
    [row], _ = await _rows(gs)
    assert (row["executedVolume"], row["state"], row["isDone"]) == (250, STATE_CANCELED, True)
    assert await (await gs.open_orders()).json() == []

    second = (await (await gs.new_order(1000)).json())["serialNumber"]
    clock.advance(10)
    done, total = await _rows(gs, includeStatus=[STATE_EXECUTED])
    assert total == 1 and done[0]["serialNumber"] == second and done[0]["isDone"] is True
    assert (done[0]["executedVolume"], done[0]["executedAmount"]) == (1000, 250 * 5580 + 750 * 5570)
    assert await (await gs.open_orders()).json() == []
    assert await _error_code(await gs.cancel(second)) == 1020  # nothing left to cancel
