"""The Online+ simulator over HTTP on 127.0.0.1 (aiohttp's client, a real cookie jar), on a fake clock, seeded."""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import yarl
from PIL import Image

from daemon.cli.simulate import build_simulator, register
from daemon.clock import FakeClock
from daemon.sim import DEFAULT_PASSWORD, LimiterSettings, Simulator, rlc
from daemon.sim.onlineplus import (
    AUTH_COOKIE,
    F5_COOKIE,
    FRONT_COOKIE,
    MESSAGES,
    STATE_DONE,
    STATE_PARTIAL,
    STATE_QUEUED,
    onlineplus_state,
)
from tests.simhelp import SIM_SEED, sim_settings

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
TRUNCATED_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"  # refused live
HAFEZ, HOT = "hafez", "IRO1FOLD0001"  # FOLD: last 5420, band [5260, 5580], maxeq 200000
USER = "0012345600"  # Simulator.default's first account (hafez, the first broker)
V1 = "/Web/V1"
CAPTCHA = f"{V1}/Authenticate/GetCaptchaImage/Captcha"
LOGIN = "/Web/V2/Authenticate/Login"
REMAIN = f"{V1}/Accounting/Remain"
PORTFOLIO = (
    f"{V1}/RealtimePortfolio/Get/RealtimePortfolio?GetJustHasRemain=true&EndDate=undefined"
    "&BasedOnLastPositivePeriod=true&ActiveSymbolsStartDate=&ActiveSymbolsEndDate="
)
ORDER = f"{V1}/Order/Post"
ORDER_LIST = f"{V1}/Order/GetOrderList/Customer/GetOrderList"


def order_body(**fields: Any) -> dict[str, Any]:
    """The order body exactly as onlineplus-api.md gives it, with `fields` replaced."""
    body = {
        "isin": HOT,
        "orderCount": "1000",
        "orderPrice": "5580",
        "orderSide": 65,
        "orderValidity": 74,
        "CautionAgreementSelected": False,
        "FinancialProviderId": 1,
        "IsSymbolCautionAgreement": False,
        "IsSymbolSepahAgreement": False,
        "SepahAgreementSelected": False,
        "maxShow": 0,
        "minimumQuantity": 0,
        "orderId": 0,
        "orderValiditydate": None,
        "shortSellIncentivePercent": 0,
        "shortSellIsEnabled": False,
    }
    return {**body, **fields}


class Tenant:
    """A client of one Online+ tenant: one real cookie jar, a full browser User-Agent, Origin and Referer; the API
    base read from the login page, as the daemon does."""

    def __init__(self, sim: Simulator, code: str = HAFEZ, ua: str = UA) -> None:
        self.sim, self.code = sim, code
        self.web = f"{sim.base_url}/{code}/online"
        self.api: str | None = None
        self.headers = {"Origin": str(sim.base_url), "Referer": f"{self.web}/", "Accept": "application/json"}
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"User-Agent": ua})

    async def page(self) -> tuple[int, str]:
        async with self.http.get(f"{self.web}/Account/Login") as response:
            text = await response.text()
        match = re.search(r"ApiBaseURl\s*=\s*['\"]([^'\"]+)['\"]", text, re.IGNORECASE)
        if match:
            self.api = match[1].rstrip("/")
        return response.status, text

    def url(self, target: str) -> yarl.URL:
        return yarl.URL((self.api or f"{self.sim.base_url}/{self.code}/api") + target, encoded=True)

    async def get(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.get(self.url(target), headers={**self.headers, **(headers or {})}) as response:
            return response.status, await _body(response)

    async def post(self, target: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        sent = {**self.headers, "Content-Type": "application/json", **(headers or {})}
        async with self.http.post(self.url(target), data=json.dumps(body), headers=sent) as response:
            return response.status, await _body(response)

    async def captcha(self) -> tuple[bytes, str]:
        status, body = await self.get(CAPTCHA)
        assert status == 200, body
        return base64.b64decode(body["Data"]["Captcha"]), body["Data"]["CaptchaKey"]

    async def solved(self) -> tuple[str, str]:
        """(digits, CaptchaKey) of a fresh captcha, read from the simulator as daemon.testing's solver does."""
        image, key = await self.captcha()
        answer = self.sim.captchas.answer_for_image(image)
        assert answer is not None
        return answer, key

    async def login(self, username: str, password: str, captcha: Any, key: Any) -> tuple[int, Any]:
        return await self.post(
            LOGIN, {"UserName": username, "Password": password, "Captcha": captcha, "CaptchaKey": key}
        )

    async def sign_in(self, username: str = USER) -> dict[str, Any]:
        await self.page()
        digits, key = await self.solved()
        status, body = await self.login(username, DEFAULT_PASSWORD, digits, key)
        assert status == 200 and body["IsSuccessfull"] is True, body
        return body

    async def order(self, **fields: Any) -> tuple[int, Any]:
        return await self.post(ORDER, order_body(**fields))

    async def orders(self, **fields: Any) -> tuple[int, Any]:
        body = {"FromDate": "2026-11-21", "ToDate": "2026-11-21", "OrderState": "0", "PageIndex": 0, "PageSize": 100}
        return await self.post(ORDER_LIST, {**body, **fields})

    async def close(self) -> None:
        await self.http.close()


async def _body(response: aiohttp.ClientResponse) -> Any:
    if response.content_type == "application/json":
        return await response.json()
    return await response.text()


def failure(code: str) -> dict[str, Any]:
    return {"IsSuccessfull": False, "MessageCode": code, "MessageDesc": MESSAGES[code], "Data": None}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 21, 5, 14, 58, 500_000, tzinfo=UTC))  # 08:44:58.5 Tehran


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    sim = Simulator.default(
        accounts=4,
        brokers=[(HAFEZ, "onlineplus"), ("gs", "ephoenix"), ("dnovin", "onlineplus")],
        settings=sim_settings(),
        clock=clock,
    )
    async with sim:
        yield sim


@pytest.fixture
async def hz(sim: Simulator) -> AsyncIterator[Tenant]:
    tenant = Tenant(sim)
    yield tenant
    await tenant.close()


def set_cookies(headers: Any) -> list[str]:
    return headers.getall("Set-Cookie", [])


# ---- the login page, the captcha, the login --------------------------------------------------------------
async def test_the_login_page_names_the_api_base_and_sets_the_front_door_cookie(sim: Simulator, hz: Tenant) -> None:
    async with hz.http.get(f"{hz.web}/Account/Login") as response:
        assert response.status == 200 and response.content_type == "text/html"
        text = await response.text()
        [cookie] = set_cookies(response.headers)
    assert f"var ApiBaseURl = '{sim.base_url}/{HAFEZ}/api';" in text
    assert re.fullmatch(rf"{FRONT_COOKIE}=[0-9a-f]{{32}}; Path=/{HAFEZ}; HttpOnly", cookie)
    settings = onlineplus_state(sim).settings
    settings.page_api_base, settings.page_api_base_slash = "double", True
    assert f'var ApiBaseURl = "{sim.base_url}/{HAFEZ}/api/";' in (await hz.page())[1]
    assert hz.api == f"{sim.base_url}/{HAFEZ}/api"
    settings.page_api_base_url = "http://127.0.0.1:9/elsewhere"
    assert 'var ApiBaseURl = "http://127.0.0.1:9/elsewhere/";' in (await hz.page())[1]
    assert hz.api == "http://127.0.0.1:9/elsewhere"
    settings.page_api_base = "missing"
    status, text = await hz.page()
    assert status == 200 and "ApiBaseURl" not in text


async def test_the_captcha_is_a_four_digit_png_in_base64_with_its_key(sim: Simulator, hz: Tenant) -> None:
    await hz.page()
    status, body = await hz.get(CAPTCHA)
    assert status == 200 and set(body) == {"Data"} and set(body["Data"]) == {"Captcha", "CaptchaKey"}
    image = base64.b64decode(body["Data"]["Captcha"], validate=True)
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    picture = Image.open(io.BytesIO(image))
    assert picture.format == "PNG" and picture.size == (160, 56)
    answer = sim.captchas.answer_for_image(image)
    assert answer is not None and len(answer) == 4 and answer.isdigit()
    key = body["Data"]["CaptchaKey"]
    assert isinstance(key, str) and len(key) == 32 and answer not in key
    assert (await hz.solved())[1] != key


async def test_the_login_answers_200_with_the_documented_data_and_sets_the_cookie_jar(
    sim: Simulator, hz: Tenant
) -> None:
    await hz.page()
    digits, key = await hz.solved()
    body = {"UserName": USER, "Password": DEFAULT_PASSWORD, "Captcha": digits, "CaptchaKey": key}
    async with hz.http.post(hz.url(LOGIN), json=body, headers=hz.headers) as response:
        assert response.status == 200
        answer = await response.json()
        cookies = set_cookies(response.headers)
    assert answer["IsSuccessfull"] is True and {"MessageCode", "MessageDesc"} <= set(answer)
    data = answer["Data"]
    assert set(data) == {
        "Token",
        "LsToken",
        "CustomerName",
        "BourseCode",
        "ActiveSms",
        "ActiveOtp",
        "MustChangePassword",
    }
    assert data["Token"] and data["LsToken"] and data["CustomerName"] and data["BourseCode"][-5:].isdigit()
    assert (data["ActiveSms"], data["ActiveOtp"], data["MustChangePassword"]) == (False, False, False)
    auth = [c for c in cookies if c.startswith(f"{AUTH_COOKIE}=")]
    f5 = [c for c in cookies if c.startswith(f"{F5_COOKIE}=")]
    assert len(auth) == 1 and auth[0].endswith(f"; Path=/{HAFEZ}/api; HttpOnly")
    assert len(f5) == 2 and {c.split("; ")[1] for c in f5} == {f"Path=/{HAFEZ}/api", f"Path=/{HAFEZ}/api/Web"}
    assert len({c.split(";")[0] for c in f5}) == 2  # same name, two values
    names = [c.key for c in hz.http.cookie_jar]
    assert names.count(F5_COOKIE) == 2 and AUTH_COOKIE in names and FRONT_COOKIE in names  # a real jar keeps both
    assert (await hz.get(REMAIN))[0] == 200
    assert sim.request_log.records(route="login")[-1].username == USER


async def test_a_wrong_captcha_is_invalidcaptcha_before_the_password_and_a_wrong_password_oms_1000(
    sim: Simulator, hz: Tenant, clock: FakeClock
) -> None:
    await hz.page()
    digits, key = await hz.solved()
    wrong = f"{(int(digits) + 1) % 10_000:04d}"
    assert await hz.login(USER, "wrong", wrong, key) == (200, failure("InvalidCaptcha"))  # the captcha first
    assert (await hz.login(USER, DEFAULT_PASSWORD, digits, key))[1]["MessageCode"] == "InvalidCaptcha"  # spent
    digits, key = await hz.solved()
    assert await hz.login(USER, "wrong", digits, key) == (200, failure("oms_1000"))
    digits, key = await hz.solved()
    assert (await hz.login(USER, DEFAULT_PASSWORD, int(digits), key))[1]["MessageCode"] == "InvalidCaptcha"  # a number
    digits, key = await hz.solved()
    assert (await hz.login("0099999999", DEFAULT_PASSWORD, digits, key))[1]["MessageCode"] == "oms_1000"
    digits, key = await hz.solved()
    clock.advance(120)
    assert (await hz.login(USER, DEFAULT_PASSWORD, digits, key))[1]["MessageCode"] == "InvalidCaptcha"  # expired
    assert (await hz.post(LOGIN, "not an object"))[1]["MessageCode"] == "OMS_9100"
    codes = [r.error_code for r in sim.request_log.records(route="login")]
    assert codes == ["InvalidCaptcha", "InvalidCaptcha", "oms_1000", "InvalidCaptcha", "oms_1000", "InvalidCaptcha"] + [
        "OMS_9100"
    ]


async def test_a_captcha_answers_on_its_own_tenant_only(sim: Simulator, hz: Tenant) -> None:
    other = Tenant(sim, "dnovin")
    try:
        await other.page()
        await hz.page()
        digits, key = await hz.solved()
        assert (await other.login("0012345602", DEFAULT_PASSWORD, digits, key))[1]["MessageCode"] == "InvalidCaptcha"
    finally:
        await other.close()


@pytest.mark.parametrize("flag", ["active_otp", "active_sms", "must_change_password"])
async def test_an_account_with_a_second_factor_or_a_password_to_change_gets_its_flag_and_no_session(
    sim: Simulator, hz: Tenant, flag: str
) -> None:
    onlineplus_state(sim).set_flags(HAFEZ, USER, **{flag: True})
    await hz.page()
    digits, key = await hz.solved()
    async with hz.http.post(
        hz.url(LOGIN),
        json={"UserName": USER, "Password": DEFAULT_PASSWORD, "Captcha": digits, "CaptchaKey": key},
        headers=hz.headers,
    ) as response:
        body = await response.json()
        assert not [c for c in set_cookies(response.headers) if c.startswith((AUTH_COOKIE, F5_COOKIE))]
    names = {"active_otp": "ActiveOtp", "active_sms": "ActiveSms", "must_change_password": "MustChangePassword"}
    assert body["IsSuccessfull"] is True and body["Data"][names[flag]] is True
    assert sum(body["Data"][n] for n in names.values()) == 1
    assert (await hz.get(REMAIN))[0] == 401


async def test_captcha_and_login_calls_past_the_limit_are_oms_2080_until_the_cooldown_ends(
    clock: FakeClock,
) -> None:
    limit = LimiterSettings(window_s=60, max_calls=3, cooldown_s=30)
    sim = Simulator.default(
        accounts=1, brokers=[(HAFEZ, "onlineplus")], settings=sim_settings(login_limit=limit), clock=clock
    )
    async with sim:
        hz = Tenant(sim)
        try:
            await hz.page()
            digits, key = await hz.solved()
            await hz.captcha()
            assert (await hz.login(USER, DEFAULT_PASSWORD, digits, key))[1]["IsSuccessfull"] is True
            assert await hz.get(CAPTCHA) == (200, failure("OMS_2080"))
            assert (await hz.login(USER, DEFAULT_PASSWORD, digits, key)) == (200, failure("OMS_2080"))
            clock.advance(30)
            assert (await hz.get(CAPTCHA))[1]["Data"]["CaptchaKey"]
            onlineplus_state(sim).settings.limit_logins = False
            for _ in range(4):
                assert (await hz.get(CAPTCHA))[0] == 200
        finally:
            await hz.close()


# ---- the front door ----------------------------------------------------------------------------------------
async def test_a_truncated_user_agent_gets_401_on_every_route_the_order_included(sim: Simulator, hz: Tenant) -> None:
    await hz.sign_in()
    assert (await hz.get(REMAIN))[0] == 200
    truncated = {"User-Agent": TRUNCATED_UA}
    async with hz.http.get(f"{hz.web}/Account/Login", headers=truncated) as response:
        assert response.status == 401
    for target in (CAPTCHA, REMAIN, PORTFOLIO):
        assert (await hz.get(target, headers=truncated))[0] == 401, target
    for target, body in ((LOGIN, {}), (ORDER, order_body()), (ORDER_LIST, {})):
        assert (await hz.post(target, body, headers=truncated))[0] == 401, target
    for agent in ("python-requests/2.31", "", "Mozilla/5.0", "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101"):
        assert (await hz.get(REMAIN, headers={"User-Agent": agent}))[0] == 401, agent
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
    assert (await hz.get(REMAIN, headers={"User-Agent": firefox}))[0] == 200
    assert sim.orders(HAFEZ) == []
    onlineplus_state(sim).settings.check_user_agent = False
    assert (await hz.get(REMAIN, headers=truncated))[0] == 200


async def test_the_token_as_a_bearer_header_is_refused_and_the_cookie_jar_is_the_credential(
    sim: Simulator, hz: Tenant
) -> None:
    token = (await hz.sign_in())["Data"]["Token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await hz.get(REMAIN, headers=bearer))[0] == 401  # beside the cookies: refused by default
    async with aiohttp.ClientSession(headers={"User-Agent": UA}) as bare:  # the Bearer header alone
        async with bare.get(hz.url(REMAIN), headers={**hz.headers, **bearer}) as response:
            assert response.status == 401
        onlineplus_state(sim).settings.bearer = "ignored"
        async with bare.get(hz.url(REMAIN), headers={**hz.headers, **bearer}) as response:
            assert response.status == 401
    assert (await hz.get(REMAIN, headers=bearer))[0] == 200


async def test_an_api_call_without_the_origin_and_referer_gets_401_unless_the_setting_says(
    sim: Simulator, hz: Tenant
) -> None:
    await hz.sign_in()
    assert (await hz.get(REMAIN, headers={"Origin": "http://127.0.0.1:1"}))[0] == 401
    assert (await hz.get(REMAIN, headers={"Referer": f"{sim.base_url}/dnovin/online/"}))[0] == 401
    hz.headers = {}
    assert (await hz.get(REMAIN))[0] == 401
    assert (await hz.order())[0] == 401
    onlineplus_state(sim).settings.require_origin = False
    assert (await hz.get(REMAIN))[0] == 200


async def test_captcha_and_login_need_the_login_pages_cookie(sim: Simulator, hz: Tenant) -> None:
    assert (await hz.get(CAPTCHA))[0] == 401
    assert (await hz.post(LOGIN, {}))[0] == 401
    await hz.page()
    assert (await hz.get(CAPTCHA))[0] == 200
    other = Tenant(sim)
    try:
        onlineplus_state(sim).settings.require_login_page = False
        assert (await other.get(CAPTCHA))[0] == 200
    finally:
        await other.close()


async def test_a_missing_auth_or_f5_cookie_is_401_and_either_duplicate_serves(sim: Simulator, hz: Tenant) -> None:
    await hz.sign_in()
    jar = {(c.key, c["path"]): c.value for c in hz.http.cookie_jar}
    auth, root_f5 = jar[(AUTH_COOKIE, f"/{HAFEZ}/api")], jar[(F5_COOKIE, f"/{HAFEZ}/api")]
    web_f5 = jar[(F5_COOKIE, f"/{HAFEZ}/api/Web")]
    headers = {**hz.headers, "User-Agent": UA}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as plain:

        async def status(cookie: str, target: str = REMAIN) -> int:
            async with plain.get(hz.url(target), headers={**headers, "Cookie": cookie}) as response:
                return response.status

        assert await status(f"{AUTH_COOKIE}={auth}; {F5_COOKIE}={web_f5}; {F5_COOKIE}={root_f5}") == 200  # a browser
        assert await status(f"{AUTH_COOKIE}={auth}; {F5_COOKIE}={root_f5}") == 200
        assert await status(f"{AUTH_COOKIE}={auth}; {F5_COOKIE}={web_f5}") == 200
        assert await status(f"{AUTH_COOKIE}={auth}") == 401  # the F5 cookie dropped
        assert await status(f"{F5_COOKIE}={root_f5}") == 401  # the auth cookie dropped
        assert await status(f"{AUTH_COOKIE}={auth}; {F5_COOKIE}=forged") == 401
        assert await status("") == 401
        async with plain.post(hz.url(ORDER), json=order_body(), headers=headers) as response:
            assert response.status == 401  # the order POST without the jar
    assert sim.orders(HAFEZ) == []


async def test_f5_rotating_its_cookie_mid_session_needs_the_live_jar_when_the_setting_says(
    sim: Simulator, hz: Tenant, clock: FakeClock
) -> None:
    onlineplus_state(sim).settings.f5_rotate_after_s = 60
    await hz.sign_in()
    before = sorted(c.value for c in hz.http.cookie_jar if c.key == F5_COOKIE)
    clock.advance(59.9)
    async with hz.http.get(hz.url(REMAIN), headers=hz.headers) as response:
        assert response.status == 200 and set_cookies(response.headers) == []
    clock.advance(0.1)
    async with hz.http.get(hz.url(REMAIN), headers=hz.headers) as response:
        assert response.status == 200
        rotated = [c for c in set_cookies(response.headers) if c.startswith(f"{F5_COOKIE}=")]
    assert {c.split("; ")[1] for c in rotated} == {f"Path=/{HAFEZ}/api", f"Path=/{HAFEZ}/api/Web"}
    after = sorted(c.value for c in hz.http.cookie_jar if c.key == F5_COOKIE)
    assert len(after) == 2 and not set(after) & set(before)  # the jar took the new values
    assert (await hz.order())[1]["IsSuccessfull"] is True  # the live jar serves the order
    auth = next(c.value for c in hz.http.cookie_jar if c.key == AUTH_COOKIE)
    stale = {**hz.headers, "User-Agent": UA, "Cookie": f"{AUTH_COOKIE}={auth}; {F5_COOKIE}={before[0]}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as snapshot:
        async with snapshot.post(hz.url(ORDER), json=order_body(), headers=stale) as response:
            assert response.status == 401  # a snapshot of the jar from before the rotation


async def test_a_session_lives_600_s_from_the_login_serves_its_tenant_and_a_revoke_ends_it(
    sim: Simulator, hz: Tenant, clock: FakeClock
) -> None:
    await hz.sign_in()
    clock.advance(599.9)
    assert (await hz.get(REMAIN))[0] == 200
    clock.advance(0.1)
    assert (await hz.get(REMAIN)) == (401, "")
    await hz.sign_in()
    assert sim.revoke_tokens(HAFEZ, USER) == 1
    assert (await hz.get(REMAIN))[0] == 401
    onlineplus_state(sim).settings.session_sliding = True
    await hz.sign_in()
    for _ in range(3):
        clock.advance(500)
        assert (await hz.get(REMAIN))[0] == 200  # every call restarts the 600 s
    other = Tenant(sim, "dnovin")
    try:
        for cookie in hz.http.cookie_jar:  # the same cookies on another tenant's paths
            other.http.cookie_jar.update_cookies({cookie.key: cookie.value}, yarl.URL(f"{sim.base_url}/dnovin/api/Web"))
        assert (await other.get(REMAIN))[0] == 401
    finally:
        await other.close()
    async with hz.http.get(f"{sim.base_url}/gs/online/Account/Login") as response:
        assert (
            response.status == 404
            and "simulated on ephoenix, not onlineplus" in (await response.json())["errorMessage"]
        )


async def test_a_second_login_ends_the_first_session_only_when_the_setting_says(sim: Simulator) -> None:
    first, second = Tenant(sim), Tenant(sim)
    try:
        await first.sign_in()
        await second.sign_in()
        assert (await first.get(REMAIN))[0] == 200
        onlineplus_state(sim).settings.single_session = True
        await second.sign_in()
        assert (await first.get(REMAIN))[0] == 401 and (await second.get(REMAIN))[0] == 200
    finally:
        await first.close()
        await second.close()


# ---- buying power and holdings -----------------------------------------------------------------------------
async def test_remain_gives_purchasing_power_and_the_portfolio_reads_symbolisin(sim: Simulator, hz: Tenant) -> None:
    await hz.sign_in()
    account = sim.account(HAFEZ, USER)
    account.remain, account.credit = 6_000_000, 1_000_000
    assert await hz.get(REMAIN) == (200, {"Data": {"PurchasingPower": 7_000_000, "AccountBalance": 6_000_000}})
    onlineplus_state(sim).settings.purchasing_power = False
    assert await hz.get(REMAIN) == (200, {"Data": {"AccountBalance": 6_000_000}})
    account.holdings = {HOT: 1500, "IRO1IKCO0001": 0}
    assert await hz.get(PORTFOLIO) == (200, {"Data": [{"SymbolISIN": HOT, "Symbol": "فولاد", "RemainQuantity": 1500}]})
    assert (await hz.get(PORTFOLIO.replace("EndDate=undefined", "EndDate=")))[1]["MessageCode"] == "OMS_9100"
    account.holdings_error = "سرویس در دسترس نیست"
    status, body = await hz.get(PORTFOLIO)
    assert (status, body["IsSuccessfull"], body["MessageCode"]) == (200, False, "OMS_9107")


# ---- orders ------------------------------------------------------------------------------------------------
async def test_an_order_before_the_open_is_oms_8018_then_accepted_without_an_id_and_oms_2080_inside_the_spacing(
    sim: Simulator, hz: Tenant, clock: FakeClock
) -> None:
    await hz.sign_in()
    sim.set_open_at(datetime(2026, 11, 21, 5, 15, tzinfo=UTC))
    assert await hz.order() == (200, failure("OMS_8018"))
    clock.advance(1.5)  # 08:45:00.000 Tehran: open, 1.5 s after the refused attempt
    status, body = await hz.order()
    assert (status, body["IsSuccessfull"], body["MessageCode"], body["Data"]) == (200, True, None, {"OrderId": 0})
    clock.advance(0.299)
    assert await hz.order() == (200, failure("OMS_2080"))
    clock.advance(0.3)
    assert (await hz.order())[1]["IsSuccessfull"] is True
    assert [(o.isin, o.price, o.volume) for o in sim.orders(HAFEZ, USER)] == [(HOT, 5580, 1000)] * 2
    assert [r.error_code for r in sim.request_log.records(route="new_order")] == ["OMS_8018", None, "OMS_2080", None]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"orderPrice": "5590"}, "OMS_9102"),  # above the band
        ({"orderCount": "200001"}, "OMS_9101"),  # above mxqo
        ({"orderSide": 86, "orderCount": "10001", "orderPrice": "5260"}, "OMS_9105"),  # more than held (10000)
        ({"isin": "IRO1NONE0001"}, "OMS_9103"),
        ({"orderPrice": "5260", "orderCount": "1"}, "OMS_9106"),  # below the minimum value
        ({"orderPrice": "5580.0"}, "OMS_9100"),  # an integer string only
        ({"orderPrice": 5580}, "OMS_9100"),
        ({"orderCount": 1000}, "OMS_9100"),
        ({"orderSide": 66}, "OMS_9100"),
        ({"orderSide": "65"}, "OMS_9100"),
        ({"orderValidity": 75}, "OMS_9100"),
        ({"FinancialProviderId": True}, "OMS_9100"),
        ({"orderValiditydate": ""}, "OMS_9100"),
        ({"orderValiditydate": None, "shortSellIsEnabled": 0}, "OMS_9100"),
    ],
)
async def test_an_order_breaking_a_rule_is_http_200_with_isSuccessfull_false_and_its_code(
    sim: Simulator, hz: Tenant, fields: dict[str, Any], code: str
) -> None:
    await hz.sign_in()
    assert await hz.order(**fields) == (200, failure(code))
    assert sim.orders(HAFEZ) == []


async def test_an_order_missing_a_field_is_refused_and_the_rejection_status_is_a_setting(
    sim: Simulator, hz: Tenant, clock: FakeClock
) -> None:
    await hz.sign_in()
    body = order_body()
    del body["orderValiditydate"]
    assert await hz.post(ORDER, body) == (200, failure("OMS_9100"))
    onlineplus_state(sim).settings.rejection_status = 400
    clock.advance(0.5)
    assert (await hz.order(orderPrice="5590"))[0] == 400


async def test_buying_power_counts_the_fee_and_a_sell_takes_holdings(
    sim: Simulator, hz: Tenant, clock: FakeClock
) -> None:
    """onlineplus-api.md's live case: 6,000,000 rial at 9,930 buys 601 with the 0.003712 fee, and 602 is refused."""
    sim.add_instrument("IRO1SROD0001", "سرود", last=9_700, maxap=9_930, minap=9_370)
    sim.account(HAFEZ, USER).remain = 6_000_000
    await hz.sign_in()
    assert (await hz.order(isin="IRO1SROD0001", orderPrice="9930", orderCount="602"))[1]["MessageCode"] == "OMS_9104"
    clock.advance(0.5)
    assert (await hz.order(isin="IRO1SROD0001", orderPrice="9930", orderCount="601"))[1]["IsSuccessfull"] is True
    assert sim.account(HAFEZ, USER).remain == 6_000_000 - (9930 * 601 + 22_153)  # the fee 22,152.96, half up
    clock.advance(0.5)
    assert (await hz.order(orderSide=86, orderPrice="5260", orderCount="10000"))[1]["IsSuccessfull"] is True
    assert sim.account(HAFEZ, USER).holdings[HOT] == 0


# ---- the order list and fills ------------------------------------------------------------------------------
async def test_the_order_list_gives_todays_orders_and_fills_from_excutedamount(
    sim: Simulator, hz: Tenant, clock: FakeClock
) -> None:
    await hz.sign_in()
    clock.advance(1.5)  # 08:45:00.000 Tehran
    assert (await hz.order())[1]["IsSuccessfull"] is True
    clock.advance(0.5)
    assert (await hz.order(orderSide=86, orderPrice="5260", orderCount="2000"))[1]["IsSuccessfull"] is True
    status, body = await hz.orders()
    assert status == 200 and body["Data"]["TotalRecord"] == 2
    sell, buy = body["Data"]["Result"]  # newest first
    assert buy == {
        "OrderId": 1,
        "OrderDate": "1405/08/30",
        "OrderTime": "08:45:00",
        "OrderSide": "خرید",
        "Symbol": "فولاد",
        "SymbolIsin": HOT,
        "Quantity": 1000,
        "OrderPrice": 5580,
        "ExcutedAmount": 0,
        "OrderState": STATE_QUEUED,
    }
    assert (sell["OrderId"], sell["OrderSide"], sell["OrderTime"]) == (2, "فروش", "08:45:00")
    assert "\u06cc" in buy["OrderSide"]  # the Persian yeh, as the document writes it
    assert (await hz.orders(OrderState="1"))[1] == {"Data": {"TotalRecord": 0, "Result": []}}
    first, second = sorted(sim.orders(HAFEZ, USER), key=lambda o: o.row_id)
    sim.fill(first, 400)
    [partial] = (await hz.orders(OrderState="1"))[1]["Data"]["Result"]
    assert (partial["OrderId"], partial["ExcutedAmount"], partial["OrderState"]) == (1, 400, STATE_PARTIAL)
    sim.fill(first)
    sim.fill(second)
    rows = (await hz.orders(OrderState="1"))[1]["Data"]["Result"]
    assert [(r["OrderId"], r["ExcutedAmount"], r["OrderState"]) for r in rows] == [
        (2, 2000, STATE_DONE),
        (1, 1000, STATE_DONE),
    ]
    with pytest.raises(ValueError, match="does not fit"):
        sim.fill(first, 1001)


async def test_the_order_list_pages_from_0_selects_gregorian_days_and_refuses_a_bad_body(
    sim: Simulator, hz: Tenant, clock: FakeClock
) -> None:
    await hz.sign_in()
    for n in range(3):
        clock.advance(0.5)
        assert (await hz.order(orderCount=str(1000 + n)))[1]["IsSuccessfull"] is True
    page0 = (await hz.orders(PageSize=2))[1]["Data"]
    page1 = (await hz.orders(PageSize=2, PageIndex=1))[1]["Data"]
    assert (page0["TotalRecord"], page1["TotalRecord"]) == (3, 3)
    assert [r["Quantity"] for r in page0["Result"] + page1["Result"]] == [1002, 1001, 1000]
    assert (await hz.orders(PageSize=2, PageIndex=2))[1]["Data"]["Result"] == []
    assert (await hz.orders(FromDate="2026-11-22", ToDate="2026-11-30"))[1]["Data"]["TotalRecord"] == 0
    assert (await hz.orders(FromDate="2026-11-01", ToDate="2026-11-30"))[1]["Data"]["TotalRecord"] == 3
    assert (await hz.orders(OrderState="7"))[1]["Data"]["TotalRecord"] == 0
    onlineplus_state(sim).settings.all_orders_state = None
    assert (await hz.orders())[1]["Data"]["TotalRecord"] == 0
    for bad in (
        {"FromDate": "1405/08/30"},
        {"ToDate": "2026-13-01"},
        {"OrderState": 1},
        {"PageIndex": -1},
        {"PageSize": 0},
        {"PageIndex": "0"},
    ):
        assert await hz.orders(**bad) == (200, failure("OMS_9100")), bad
    clock.advance(timedelta(days=1))  # the next day: yesterday's orders are found by yesterday's dates
    await hz.sign_in()
    assert (await hz.orders(FromDate="2026-11-22", ToDate="2026-11-22"))[1]["Data"]["TotalRecord"] == 0


# ---- RLC, faults, the request log, the config ----------------------------------------------------------------
async def test_rlc_prices_online_plus_brokers_without_an_exir_broker(clock: FakeClock) -> None:
    sim = Simulator.default(accounts=1, brokers=[(HAFEZ, "onlineplus")], settings=sim_settings(), clock=clock)
    async with sim:
        blob = rlc.encode_blob({"Type": "getstockprice2", "la": "Fa", "arr": HOT})
        url = yarl.URL(f"{sim.base_url}/rlc//StockInformationHandler?{blob}&jsoncallback=", encoded=True)
        async with aiohttp.ClientSession(headers={"User-Agent": UA}) as http, http.get(url) as response:
            [row] = await response.json()
        assert (row["nc"], row["hap"], row["lap"], row["mxqo"]) == (
            HOT,
            "5580.0000000000000",
            "5260.0000000000000",
            "200000.0000000000000",
        )
        assert sim.config_snippet().data["brokers"][HAFEZ]["rlc_url"] == f"{sim.base_url}/rlc"


async def test_faults_hit_online_plus_routes_by_name_and_the_log_keeps_no_secret(sim: Simulator, hz: Tenant) -> None:
    token = (await hz.sign_in())["Data"]["Token"]
    sim.add_fault("new_order@hafez:status=503")
    assert (await hz.order())[0] == 503
    sim.clear_faults()
    sim.add_fault("remain:html")
    assert (await hz.get(REMAIN))[0] == 502
    sim.clear_faults()
    sim.add_fault("captcha@hafez:no_image")
    status, body = await hz.get(CAPTCHA)
    assert status == 200 and body["Data"]["Captcha"] == "" and body["Data"]["CaptchaKey"]
    sim.clear_faults()
    sim.add_fault("new_order:drop,after")
    with pytest.raises(aiohttp.ClientError):
        await hz.order()
    assert len(sim.orders(HAFEZ, USER)) == 1 and sim.request_log.records(route="new_order")[-1].status is None
    routes = [r.route for r in sim.request_log.records(broker=HAFEZ)]
    assert routes[:3] == ["login_page", "captcha", "login"] and routes[-4:] == [
        "new_order",
        "remain",
        "captcha",
        "new_order",
    ]
    logged = repr(sim.request_log.records())
    secrets = [c.value for c in hz.http.cookie_jar] + [token, DEFAULT_PASSWORD]
    assert not [s for s in secrets if s in logged]


async def test_the_config_snippet_gives_online_plus_brokers_their_web_root_rlc_url_and_platform(sim: Simulator) -> None:
    brokers = sim.config_snippet().data["brokers"]
    assert brokers[HAFEZ] == {
        "platform": "onlineplus",
        "url": f"{sim.base_url}/{HAFEZ}/online",
        "rlc_url": f"{sim.base_url}/rlc",
    }
    assert brokers["dnovin"]["url"] == f"{sim.base_url}/dnovin/online" and "identity_url" in brokers["gs"]


def test_simulate_takes_online_plus_brokers() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["simulate", "--brokers", "hafez:onlineplus,dnovin:onlineplus,gs", "--seed", str(SIM_SEED)]
    )
    sim = build_simulator(args)
    assert [(code, b.platform) for code, b in sim.state.brokers.items()] == [
        ("hafez", "onlineplus"),
        ("dnovin", "onlineplus"),
        ("gs", "ephoenix"),
    ]
