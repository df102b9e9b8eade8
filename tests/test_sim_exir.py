"""The Exir simulator over HTTP on 127.0.0.1 (aiohttp's client, a real cookie jar), on a fake clock, seeded."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import jdatetime
import pytest
import yarl
from PIL import Image

from daemon.clock import FakeClock
from daemon.sim import DEFAULT_PASSWORD, Simulator, b64url_decode
from daemon.sim.exir import (
    BAD_SIGNATURE,
    NO_SESSION,
    STATUS_DONE,
    exir_state,
    x_app_n,
)
from tests.simhelp import sim_settings

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
KH, HOT = "khobregan", "IRO1FOLD0001"  # FOLD: last 5420, band [5260, 5580], maxeq 200000
USER = "0012345600"  # Simulator.default's first account (khobregan, the first broker)


def order_body(**fields: Any) -> dict[str, Any]:
    """The order body exactly as exir-api.md gives it, with `fields` replaced."""
    body = {
        "bankAccountId": -1,
        "brokerCode": 116,
        "disclosedQuantity": 0,
        "hasUnderCautionAgreement": True,
        "insMaxLcode": HOT,
        "orderType": "ORDER_TYPE_LIMIT",
        "price": "5580.0",
        "quantity": "1000",
        "side": "SIDE_BUY",
        "validityType": "VALIDITY_TYPE_DAY",
        "coreType": "c",
    }
    return {**body, **fields}


class Tenant:
    """A client of one Exir tenant: one real cookie jar, a browser User-Agent, X-App-N over the relative target."""

    def __init__(self, sim: Simulator, code: str = KH) -> None:
        self.sim, self.code = sim, code
        self.base = f"{sim.base_url}/{code}"
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"User-Agent": UA})
        self.nt: str | None = None

    def url(self, target: str) -> yarl.URL:
        return yarl.URL(self.base + target, encoded=True)  # sent as written: the signed string is what goes out

    async def bootstrap(self) -> aiohttp.ClientResponse:
        async with self.http.get(self.url("/exir")) as response:
            await response.read()
            return response

    async def captcha(self) -> tuple[bytes, aiohttp.ClientResponse]:
        async with self.http.get(self.url("/captcha")) as response:
            return await response.read(), response

    async def captcha_answer(self, leading_zero: bool = False) -> str:
        """A fresh captcha's digits (read from the simulator, as daemon.testing's solver does), the first with or
        without a leading zero as asked (the seeded draws make the number of tries fixed)."""
        for _ in range(300):
            image, _ = await self.captcha()
            answer = self.sim.captchas.answer_for_image(image)
            assert answer is not None
            if answer.startswith("0") == leading_zero:
                return answer
        raise AssertionError("no such captcha in 300 draws")

    async def login(self, username: str, password: str, captcha: Any) -> tuple[int, dict[str, Any]]:
        body = {"username": username, "password": password, "captcha": captcha, "otp": ""}
        async with self.http.post(self.url("/api/v2/login"), json=body, headers={"Accept": "application/json"}) as r:
            return r.status, await _body(r)

    async def sign_in(self, username: str = USER) -> dict[str, Any]:
        await self.bootstrap()
        status, body = await self.login(username, DEFAULT_PASSWORD, int(await self.captcha_answer()))
        assert status == 200, body
        self.nt = body["nt"]
        return body

    def signature(self, target: str, shift_s: int = 0) -> str:
        assert self.nt is not None
        t = (self.sim.state.now_ns() // 10**9 + shift_s) % 86_400
        return x_app_n(self.nt, target, t)

    async def get(self, target: str, shift_s: int = 0, sign: str | None = None) -> tuple[int, Any]:
        headers = {"X-App-N": sign if sign is not None else self.signature(target, shift_s)}
        async with self.http.get(self.url(target), headers=headers) as response:
            return response.status, await _body(response)

    async def order(self, **fields: Any) -> tuple[int, Any]:
        headers = {"X-App-N": self.signature("/api/v1/order"), "Content-Type": "application/json"}
        data = json.dumps(order_body(**fields))
        async with self.http.post(self.url("/api/v1/order"), data=data, headers=headers) as response:
            return response.status, await _body(response)

    async def close(self) -> None:
        await self.http.close()


async def _body(response: aiohttp.ClientResponse) -> Any:
    """JSON when the answer is JSON, else the text (a 400 / 403 / 502 page)."""
    if response.content_type == "application/json":
        return await response.json()
    return await response.text()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 21, 5, 14, 58, 500_000, tzinfo=UTC))  # 08:44:58.5 Tehran


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    sim = Simulator.default(
        accounts=4, brokers=[(KH, "exir"), ("gs", "ephoenix"), ("mofid", "exir")], settings=sim_settings(), clock=clock
    )
    async with sim:
        yield sim


@pytest.fixture
async def kh(sim: Simulator) -> AsyncIterator[Tenant]:
    tenant = Tenant(sim)
    yield tenant
    await tenant.close()


def jwt_claims(token: str) -> dict[str, Any]:
    return json.loads(b64url_decode(token.split(".")[1]))


def set_cookies(response: aiohttp.ClientResponse) -> list[str]:
    return response.headers.getall("Set-Cookie", [])


# ---- the signature ---------------------------------------------------------------------------------------
def test_the_signature_gives_the_docs_worked_examples() -> None:
    nt = "07" + "3141592653589793238462643383279502884197"
    assert x_app_n(nt, "/api/v1/order", 18_900) == "1435379324400.21961800"  # 05:15:00 UTC
    assert x_app_n(nt, "/api/v1/order", 18_899) == "720199123210.21960638"  # one second earlier
    assert x_app_n("0034567890123", "/a", 10) == "113617440.1440"  # the repo's own unit test
    assert x_app_n(nt, "/api/v1/order", 0) == "0.0"  # UTC midnight
    with pytest.raises(ValueError, match="too short"):
        x_app_n("0712345", "/a", 10)


# ---- bootstrap, captcha, login ---------------------------------------------------------------------------
async def test_bootstrap_and_captcha_set_their_cookies_and_the_captcha_is_a_five_digit_jpeg(
    sim: Simulator, kh: Tenant
) -> None:
    response = await kh.bootstrap()
    assert response.status == 200 and [c.split("=")[0] for c in set_cookies(response)] == ["cookiesession1"]
    image, response = await kh.captcha()
    assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
    assert image.startswith(b"\xff\xd8\xff") and Image.open(io.BytesIO(image)).format == "JPEG"
    assert 1_500 < len(image) < 8_000  # "about 3 KB"
    answer = sim.captchas.answer_for_image(image)
    assert answer is not None and len(answer) == 5 and answer.isdigit()
    login_id = response.headers["client_login_id"]
    assert set_cookies(response) == [f"client_login_id={login_id}; Path=/{KH}; Max-Age=120; HttpOnly"]
    assert answer not in login_id and len(login_id.split(".")) == 3


async def test_login_answers_the_documented_fields_and_cookies(sim: Simulator, kh: Tenant) -> None:
    await kh.bootstrap()
    body = {"username": USER, "password": DEFAULT_PASSWORD, "captcha": int(await kh.captcha_answer()), "otp": ""}
    async with kh.http.post(kh.url("/api/v2/login"), json=body) as response:
        assert response.status == 200
        answer = await response.json()
        cookies = set_cookies(response)
    assert answer["nt"].isdigit() and len(answer["nt"]) == 130
    assert jwt_claims(answer["rlcAuthHeader"])["b"] == 116 and "b" not in jwt_claims(answer["authToken"])
    assert (answer["validity"], answer["sendOrderDelay"], answer["username"]) == (480, 400, f"116{USER}")
    assert answer["accountNumberList"][0]["accountNumber"].endswith(USER)
    assert "bourseAccountName" in answer["accountNumberList"][0] and "bourseAccountName" not in answer
    assert answer["bankAccounts"][0]["id"] == -1 and answer["pushServerUrls"] and ";" in answer["brokerName"]
    assert cookies[0] == f"JWT-TOKEN={answer['authToken']}; Path=/{KH}; HttpOnly"
    balancer = [c for c in cookies if c.startswith("BIGipServerexir_pool=")]
    assert len(balancer) == 2 and {c.split("; ")[1] for c in balancer} == {f"Path=/{KH}", f"Path=/{KH}/api"}
    jar = {c.key for c in kh.http.cookie_jar}
    assert {"JWT-TOKEN", "cookiesession1", "client_login_id", "BIGipServerexir_pool"} <= jar
    kh.nt = answer["nt"]
    assert (await kh.get("/api/v1/user/stockInfo"))[0] == 200  # both same-named cookies go back, and do no harm
    assert sim.request_log.records(route="login")[-1].username == USER


async def test_a_wrong_captcha_is_9002_checked_before_the_password_and_a_wrong_password_is_40037(
    kh: Tenant,
) -> None:
    await kh.bootstrap()
    good = int(await kh.captcha_answer())
    assert await kh.login(USER, "wrong", (good + 1) % 100_000) == (401, _error(9002))  # captcha first
    assert (await kh.login(USER, "wrong", good))[0] == 401  # the captcha was spent by the first attempt
    status, body = await kh.login(USER, "wrong", int(await kh.captcha_answer()))
    assert (status, body["errorCode"], body["type"]) == (403, 40037, "error")
    assert body["description"].endswith(" ") and body["descriptionEn"]
    status, body = await kh.login(USER, DEFAULT_PASSWORD, await kh.captcha_answer())  # digits as a string
    assert (status, body["errorCode"]) == (401, 9002)


def _error(code: int) -> dict[str, Any]:
    from daemon.sim.exir import MESSAGES

    persian, english = MESSAGES[code]
    return {"type": "error", "errorCode": code, "description": persian, "descriptionEn": english}


async def test_a_captcha_with_a_leading_zero_cannot_be_sent_as_a_number_unless_the_setting_says(
    sim: Simulator, kh: Tenant
) -> None:
    await kh.bootstrap()
    digits = await kh.captcha_answer(leading_zero=True)
    assert (await kh.login(USER, DEFAULT_PASSWORD, int(digits)))[0] == 401
    exir_state(sim).settings.leading_zero = "accepted"
    digits = await kh.captcha_answer(leading_zero=True)
    assert (await kh.login(USER, DEFAULT_PASSWORD, int(digits)))[0] == 200


async def test_the_login_needs_the_bootstrap_cookie_and_the_captcha_expires(
    sim: Simulator, kh: Tenant, clock: FakeClock
) -> None:
    assert (await kh.login(USER, DEFAULT_PASSWORD, int(await kh.captcha_answer())))[0] == 400
    await kh.bootstrap()
    answer = int(await kh.captcha_answer())
    clock.advance(121)
    assert (await kh.login(USER, DEFAULT_PASSWORD, answer))[0] == 401


# ---- session and signature on every later call -----------------------------------------------------------
async def test_reads_need_the_session_and_a_signature_of_the_current_second_over_the_relative_target(
    sim: Simulator, kh: Tenant, clock: FakeClock
) -> None:
    await kh.sign_in()
    target = "/api/v1/user/stockInfo"
    assert await kh.get(target) == (200, {"purchaseUpperBound": str(sim.account(KH, USER).buying_power)})
    assert (await kh.get(target, shift_s=1))[0] == 200 and (await kh.get(target, shift_s=-1))[0] == 200
    status, body = await kh.get(target, shift_s=-2)  # stale
    assert (status, body["errorCode"]) == (401, BAD_SIGNATURE)
    assert (await kh.get(target, sign=kh.signature(f"/{KH}{target}")))[0] == 401  # signed with the prefix
    assert (await kh.get(target, sign=""))[0] == 401
    settings = exir_state(sim).settings
    settings.signature_skew_s, settings.signature_status, settings.signature_error_code = 0, 403, 4001
    assert (await kh.get(target, shift_s=1)) == (403, _error_like(4001))
    assert (await kh.get(target))[0] == 200
    clock.advance(0.999)  # the next second: the signature moves with it
    signed_before = kh.signature(target, shift_s=-1)
    assert (await kh.get(target, sign=signed_before))[0] == 403 and (await kh.get(target))[0] == 200
    anonymous = Tenant(sim)
    anonymous.nt = kh.nt
    try:
        status, body = await anonymous.get(target)
        assert (status, body["errorCode"]) == (401, NO_SESSION)
    finally:
        await anonymous.close()


def _error_like(code: int) -> dict[str, Any]:
    return {"type": "error", "errorCode": code, "description": "خطا ", "descriptionEn": "error"}


async def test_the_session_lasts_validity_minutes_and_a_revoke_ends_it(
    sim: Simulator, kh: Tenant, clock: FakeClock
) -> None:
    await kh.sign_in()
    clock.advance(480 * 60 - 1)
    assert (await kh.get("/api/v1/user/stockInfo"))[0] == 200
    clock.advance(1)
    assert (await kh.get("/api/v1/user/stockInfo"))[1]["errorCode"] == NO_SESSION
    await kh.sign_in()
    assert sim.revoke_tokens(KH, USER) == 1
    assert (await kh.get("/api/v1/user/stockInfo"))[1]["errorCode"] == NO_SESSION


async def test_a_session_serves_its_own_tenant_only_and_ephoenix_brokers_have_no_exir_routes(
    sim: Simulator, kh: Tenant
) -> None:
    await kh.sign_in()
    other = Tenant(sim, "mofid")
    other.http.cookie_jar.update_cookies({c.key: c.value for c in kh.http.cookie_jar}, yarl.URL(other.base))
    other.nt = kh.nt
    try:
        assert (await other.get("/api/v1/user/stockInfo"))[1]["errorCode"] == NO_SESSION
    finally:
        await other.close()
    async with kh.http.get(f"{sim.base_url}/gs/captcha") as response:
        assert response.status == 404 and "simulated on ephoenix, not exir" in (await response.json())["errorMessage"]


async def test_a_client_without_a_browser_user_agent_meets_a_403(sim: Simulator) -> None:
    async with aiohttp.ClientSession() as bare, bare.get(f"{sim.base_url}/{KH}/captcha") as response:
        assert response.status == 403


async def test_buying_power_v2_is_406_4047_wages_and_holdings_as_documented(sim: Simulator, kh: Tenant) -> None:
    await kh.sign_in()
    status, body = await kh.get("/api/v2/user/buyingPower")
    assert (status, body["errorCode"]) == (406, 4047)
    assert await kh.get(f"/api/v2/wages/instrument/{HOT}") == (200, {HOT: {"SIDE_BUY": 0.003712, "SIDE_SALE": 0.0088}})
    assert await kh.get("/api/v2/wages/instrument/IRO1NONE0001") == (200, {})
    exir_state(sim).settings.wages_known = False
    assert await kh.get(f"/api/v2/wages/instrument/{HOT}") == (200, {})
    sim.account(KH, USER).holdings = {HOT: 777, "IRO1IKCO0001": 0}
    assert await kh.get("/api/v1/user/portfoReport") == (
        200,
        {"result": [{"insMaxLcode": HOT, "asset": 777, "remainQty": 777}]},
    )


# ---- orders ----------------------------------------------------------------------------------------------
async def test_an_order_is_refused_before_the_open_then_accepted_with_an_8_digit_id_and_1005_inside_the_delay(
    sim: Simulator, kh: Tenant, clock: FakeClock
) -> None:
    await kh.sign_in()
    sim.set_open_at(datetime(2026, 11, 21, 5, 15, tzinfo=UTC))
    status, body = await kh.order()
    assert (status, body["errorCode"]) == (400, 1017)
    clock.advance(1.5)  # 08:45:00.000 Tehran: open, and 1.5 s after the refused attempt
    status, body = await kh.order()
    assert status == 200 and body["type"] == "success" and 10_000_000 <= body["id"] < 100_000_000
    clock.advance(0.399)
    status, body = await kh.order()
    assert (status, body["errorCode"]) == (400, 1005)
    clock.advance(0.4)
    assert (await kh.order())[0] == 200
    booked = sim.orders(KH, USER)
    assert [(o.isin, o.price, o.volume) for o in booked] == [(HOT, 5580, 1000)] * 2
    assert [r.error_code for r in sim.request_log.records(route="new_order")] == [1017, 0, 1005, 0]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"price": "5590.0"}, 1003),  # above the band
        ({"quantity": "200001"}, 1001),  # above mxqo (maxeq)
        ({"quantity": "896000"}, 1001),
        ({"side": "SIDE_SALE", "quantity": "10001"}, 1012),  # more than held (10000)
        ({"price": 5580.0}, 1000),  # a number, not a string
        ({"quantity": "10.5"}, 1000),
        ({"side": "SIDE_SELL"}, 1000),
        ({"brokerCode": None}, 1000),
        ({"brokerCode": 117}, 1000),
        ({"insMaxLcode": "IRO1NONE0001"}, 1004),
        ({"price": "5260", "quantity": "1"}, 1006),  # below the minimum value
    ],
)
async def test_an_order_breaking_a_rule_is_a_non_2xx_with_its_code(
    sim: Simulator, kh: Tenant, fields: dict[str, Any], code: int
) -> None:
    await kh.sign_in()
    status, body = await kh.order(**fields)
    assert (status, body["errorCode"], body["type"]) == (400, code, "error")
    assert sim.orders(KH) == []


async def test_buying_power_counts_the_fee(sim: Simulator, kh: Tenant, clock: FakeClock) -> None:
    """exir-api.md's live case: 6,000,000 rial at 9,930 with 0.003712 buys 601, and 602 is refused."""
    sim.add_instrument("IRO1SROD0001", "سرود", last=9_700, maxap=9_930, minap=9_370)
    sim.account(KH, USER).remain = 6_000_000
    await kh.sign_in()
    assert (await kh.order(insMaxLcode="IRO1SROD0001", price="9930.0", quantity="602"))[1]["errorCode"] == 1011
    clock.advance(0.5)
    assert (await kh.order(insMaxLcode="IRO1SROD0001", price="9930", quantity="601"))[0] == 200
    exir_state(sim).settings.integer_price = False
    clock.advance(0.5)
    assert (await kh.order(insMaxLcode="IRO1SROD0001", price="9930", quantity="1"))[1]["errorCode"] == 1000


async def test_an_order_answer_without_an_id_when_the_setting_says(sim: Simulator, kh: Tenant) -> None:
    await kh.sign_in()
    exir_state(sim).settings.order_answer = "no_id"
    assert await kh.order() == (200, {"type": "success"})


# ---- the order book report -------------------------------------------------------------------------------
async def test_orderbook_report_rows_by_jalali_dates_with_fills_and_the_status_that_settles(
    sim: Simulator, kh: Tenant, clock: FakeClock
) -> None:
    await kh.sign_in()
    clock.advance(1.5)  # 05:15:00 UTC = 08:45:00 Tehran
    assert (await kh.order())[0] == 200
    clock.advance(0.5)
    assert (await kh.order(side="SIDE_SALE", price="5260.0"))[0] == 200
    today = jdatetime.date.fromgregorian(date=clock.now().date())
    assert f"{today:%Y/%m/%d}" == "1405/08/30"  # 2026-11-21
    day = f"{today:%Y/%m/%d}"
    target = f"/api/v1/user/orderbookReport?size=1000&startDate={day}&mmtpTypeId=null&endDate={day}"
    status, body = await kh.get(target)
    assert status == 200 and len(body["result"]) == 2
    sell, buy = body["result"]  # newest first
    assert (buy["orderSideName"], sell["orderSideName"]) == ("خريد", "فروش")
    assert "\u064a" in buy["orderSideName"] and buy["orderSideName"][0] == "خ"
    assert buy["entryDateTime"] == "1405/08/30-08:45:00" and sell["entryDateTime"] == "1405/08/30-08:45:00"
    assert (buy["insMaxLCode"], buy["price"], buy["quantity"], buy["tradedQuantity"]) == (HOT, 5580, 1000, 0)
    assert buy["mmtpOrderId"] == (sim.orders(KH)[0].serial_number + 30_000_000) and buy["uuid"]
    assert {"farsiName", "mmtpOrderStatusName", "remainingQuantity", "averageTradedPrice", "totalValue"} <= set(buy)
    assert {"pureValue", "accountNumber", "bourseAccount", "customerBourseAccount", "validityTypeName"} <= set(buy)
    sim.fill(sim.orders(KH)[0])
    status, body = await kh.get(target + "&orderStatusId=3")
    [filled] = body["result"]
    assert (filled["tradedQuantity"], filled["remainingQuantity"], filled["averageTradedPrice"]) == (1000, 0, 5580)
    assert filled["mmtpOrderStatusName"] == STATUS_DONE and filled["totalValue"] == 5_580_000
    assert filled["pureValue"] == 5_580_000 + 20_713  # the fee, 20,712.96, half up
    assert [r["mmtpOrderId"] for r in (await kh.get(target.replace("size=1000", "size=1")))[1]["result"]] == [
        sell["mmtpOrderId"]
    ]
    clock.advance(timedelta(days=1))  # the day after: a filled order settles to 4 and orderStatusId=3 finds nothing
    await kh.sign_in()
    assert (await kh.get(target + "&orderStatusId=3"))[1] == {"result": []}
    rows = (await kh.get(target.replace("size=1000&startDate=" + day, "size=1000&startDate=")))[1]["result"]
    assert [r["orderStatusId"] for r in rows] == [4, 4] and rows[1]["tradedQuantity"] == 1000
    tomorrow = f"{today + jdatetime.timedelta(days=1):%Y/%m/%d}"
    assert (await kh.get(target.replace(f"startDate={day}", f"startDate={tomorrow}")))[1] == {"result": []}
    status, body = await kh.get(target.replace(f"startDate={day}", "startDate=1405/13/01"))
    assert (status, body["errorCode"]) == (400, 1000)


# ---- faults, the request log, the config ------------------------------------------------------------------
async def test_faults_hit_exir_routes_by_name_and_the_log_names_them_without_secrets(
    sim: Simulator, kh: Tenant
) -> None:
    await kh.sign_in()
    sim.add_fault("new_order@khobregan:status=503")
    assert (await kh.order())[0] == 503
    sim.clear_faults()
    sim.add_fault("stockinfo:html")
    async with kh.http.get(kh.url("/api/v1/user/stockInfo"), headers={"X-App-N": "1.1"}) as response:
        assert response.status == 502 and "nginx" in await response.text()
    routes = [r.route for r in sim.request_log.records(broker=KH)]
    assert routes[0] == "bootstrap" and routes[-3:] == ["login", "new_order", "stockinfo"]
    logged = repr(sim.request_log.records())
    assert DEFAULT_PASSWORD not in logged and kh.nt not in logged  # type: ignore[operator]


async def test_the_config_snippet_gives_exir_brokers_their_url_rlc_url_and_platform(sim: Simulator) -> None:
    brokers = sim.config_snippet().data["brokers"]
    assert brokers[KH] == {"platform": "exir", "url": f"{sim.base_url}/{KH}", "rlc_url": f"{sim.base_url}/rlc"}
    assert "identity_url" in brokers["gs"]


async def test_a_throttled_captcha_comes_without_a_picture_and_a_lost_answer_still_books(
    sim: Simulator, kh: Tenant
) -> None:
    await kh.sign_in()
    sim.add_fault("captcha@khobregan:no_image")
    image, response = await kh.captcha()
    assert (response.status, image) == (200, b"") and response.headers["client_login_id"]
    sim.add_fault("new_order:drop,after")
    with pytest.raises(aiohttp.ClientError):
        await kh.order()
    assert len(sim.orders(KH, USER)) == 1 and sim.request_log.records(route="new_order")[-1].status is None


async def test_a_second_login_ends_the_first_session_only_when_the_setting_says(sim: Simulator) -> None:
    first, second = Tenant(sim), Tenant(sim)
    try:
        await first.sign_in()
        await second.sign_in()
        assert (await first.get("/api/v1/user/stockInfo"))[0] == 200
        exir_state(sim).settings.single_session = True
        await second.sign_in()
        assert (await first.get("/api/v1/user/stockInfo"))[1]["errorCode"] == NO_SESSION
        assert (await second.get("/api/v1/user/stockInfo"))[0] == 200
    finally:
        await first.close()
        await second.close()
