"""The easytrader (Mofid) simulator over HTTP on 127.0.0.1: aiohttp's client with one real cookie jar, redirects
followed by hand, on a fake clock, seeded."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import aiohttp
import pytest
import yaml
from PIL import Image

from daemon.clock import FakeClock
from daemon.sim import DEFAULT_PASSWORD, Simulator, b64url_decode
from daemon.sim.easytrader import (
    CAPTCHA_REQUIRED,
    FORBIDDEN,
    REJECTED,
    WRONG_CAPTCHA,
    WRONG_CREDENTIALS,
    easytrader_state,
    pkce_challenge,
)
from tests.simhelp import sim_settings
from tests.test_simulator_cli import _start

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
MOFID, HOT = "mofid", "IRO1FOLD0001"  # FOLD: last 5420, band [5260, 5580], maxeq 200000
USER, OTHER = "0012345600", "0012345602"  # Simulator.default's accounts at mofid (the first of three brokers)
SCOPE = "easy2_api mts_api openid profile"
_TOKEN_FIELD = re.compile(r'name="__RequestVerificationToken" type="hidden" value="([^"]+)"')
_HIDDEN = re.compile(r'<input type="hidden" name="(BDC_[A-Za-z_]+)" id="[^"]+" value="([^"]*)"')
_IMAGE = re.compile(r'<img class="BDC_CaptchaImage" id="OLoginCaptcha_CaptchaImage" src="([^"]+)"')


def verifier_pair(rng: random.Random) -> tuple[str, str]:
    """easytrader-api.md step 0: 72 random bytes as 96 base64url characters, and its S256 challenge."""
    verifier = base64.urlsafe_b64encode(rng.randbytes(72)).rstrip(b"=").decode()
    assert len(verifier) == 96
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Mofid:
    """A client of the simulated Mofid: one cookie jar, automatic redirects off, every Location resolved by hand."""

    def __init__(self, sim: Simulator, rng: random.Random) -> None:
        config = sim.broker_urls(MOFID)
        self.sim, self.rng = sim, rng
        self.identity, self.api, self.spa = config["identity_url"], config["url"], config["spa_url"]
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"User-Agent": UA})
        self.token: str | None = None

    @property
    def redirect_uri(self) -> str:
        return self.spa + "/auth-callback"

    def authorize_url(self, challenge: str, **changes: str) -> str:
        query = {
            "client_id": "easy_pkce",
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": SCOPE,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "response_mode": "query",
            **changes,
        }
        return f"{self.identity}/connect/authorize/callback?{urlencode(query)}"

    async def get(self, url: str) -> tuple[int, str, str | None]:
        async with self.http.get(url, allow_redirects=False) as response:
            return response.status, await response.text(), response.headers.get("Location")

    async def login_page(self, challenge: str) -> tuple[str, str]:
        """Steps 1-2: the authorize's relative 302, then the page; (its URL, its HTML)."""
        status, _, location = await self.get(self.authorize_url(challenge))
        assert status == 302 and location is not None and location.startswith("/")
        url = urljoin(self.identity, location)
        for _ in range(3):  # at most two hops in front of the page
            status, page, location = await self.get(url)
            if status == 200:
                return url, page
            assert status in (301, 302) and location is not None and location.startswith("/")
            url = urljoin(url, location)
        raise AssertionError("the login page never came")

    async def post_login(
        self, url: str, page: str, password: str = DEFAULT_PASSWORD, username: str = USER, captcha: str | None = None
    ) -> tuple[int, str, str | None]:
        """Step 3: the form as the page expects it (and the BotDetect fields when `captcha` is given)."""
        form = {
            "Username": username,
            "Password": password,
            "__RequestVerificationToken": _TOKEN_FIELD.search(page)[1],
            "button": "login",
            "RememberLogin": "false",
        }
        if captcha is not None:
            form |= {"Captcha": captcha, **dict(_HIDDEN.findall(page))}
        async with self.http.post(url, data=form, allow_redirects=False) as response:
            return response.status, await response.text(), response.headers.get("Location")

    async def captcha_image(self, page: str) -> tuple[int, bytes]:
        src = unescape(_IMAGE.search(page)[1])
        async with self.http.get(urljoin(self.identity + "/", src)) as response:
            return response.status, await response.read()

    async def solve(self, page: str) -> str:
        status, image = await self.captcha_image(page)
        assert status == 200
        answer = self.sim.captchas.answer_for_image(image)
        assert answer is not None
        return answer

    async def code_after(self, location: str) -> str:
        """Step 4: the authorize again, now logged in: a 302 to the SPA's callback with the code."""
        status, _, back = await self.get(urljoin(self.identity, location))
        assert status == 302 and back is not None and back.startswith(self.redirect_uri + "?")
        return parse_qs(urlsplit(back).query)["code"][0]

    async def exchange(self, code: str, verifier: str, **changes: str) -> tuple[int, dict[str, Any]]:
        """Step 5: the token exchange."""
        form = {
            "client_id": "easy_pkce",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier,
            "grant_type": "authorization_code",
            **changes,
        }
        headers = {"Referer": self.spa + "/"}
        async with self.http.post(f"{self.identity}/connect/token", data=form, headers=headers) as response:
            return response.status, await response.json()

    async def sign_in(self, username: str = USER, register: bool = True) -> dict[str, Any]:
        """The whole chain (steps 0-5), then same-login (step 6) unless told not to."""
        verifier, challenge = verifier_pair(self.rng)
        status, _, location = await self.get(self.authorize_url(challenge))
        if location is not None and location.startswith(self.redirect_uri + "?"):  # still logged in: the code at once
            code = parse_qs(urlsplit(location).query)["code"][0]
        else:
            url, page = await self.login_page(challenge)
            status, _, location = await self.post_login(url, page, username=username)
            assert status == 302 and location is not None
            code = await self.code_after(location)
        status, body = await self.exchange(code, verifier)
        assert status == 200, body
        self.token = body["access_token"]
        if register:
            assert (await self.same_login())[0] == 200
        return body

    def headers(self, **changes: str) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Referer": self.spa + "/",
            "Accept": "application/json, text/plain, */*",
        }
        return {k: v for k, v in (headers | changes).items() if v}

    async def call(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else None
        sent = self.headers(**headers) | ({"Content-Type": "application/json"} if data is not None else {})
        async with self.http.request(method, self.api + path, data=data, headers=sent) as response:
            text = await response.text()
            if response.content_type in ("application/json", "application/problem+json"):
                return response.status, json.loads(text)
            return response.status, text

    async def same_login(self, **changes: Any) -> tuple[int, Any]:
        body = {
            "uuid": "6f1c2a7e-0000-4000-8000-000000000001",
            "appBuildNo": "16872",
            "width": 1536,
            "height": 729,
            "devicePlatform": "Desktop",
            "platformInfo": UA,
            **changes,
        }
        return await self.call("POST", "/easy/api/account/same-login", body)

    async def draft(self, price: Any = 5_580, quantity: Any = 1_000, side: int = 0, isin: str = HOT) -> tuple[int, Any]:
        body = {
            "draft": {
                "symbolIsin": isin,
                "symbolName": isin,  # as the live drafts carried it
                "price": price,
                "quantity": quantity,
                "side": side,
                "validityType": 0,
                "validityDate": None,
            }
        }
        return await self.call("POST", "/easy/api/draft", body)

    async def batch(self, ids: list[str], remove: bool = False) -> tuple[int, Any]:
        return await self.call(
            "POST", "/core/api/order/batchCreate", {"draftIds": ids, "removeDraftAfterCreate": remove, "orderFrom": 34}
        )

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 21, 5, 14, 0, tzinfo=UTC))  # 08:44:00 Tehran: the arm


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    sim = Simulator.default(
        accounts=3, brokers=[(MOFID, "easytrader"), ("gs", "ephoenix"), ("khobregan", "exir")], settings=sim_settings(),
        clock=clock,
    )  # fmt: skip
    sim.add_account(MOFID, OTHER, DEFAULT_PASSWORD, buying_power=20_000_000, holdings={HOT: 1_000})
    sim.set_open_at(datetime(2026, 11, 21, 5, 15, 0, tzinfo=UTC))  # 08:45:00 Tehran
    async with sim:
        yield sim


@pytest.fixture
async def mofid(sim: Simulator) -> AsyncIterator[Mofid]:
    client = Mofid(sim, random.Random(7))
    yield client
    await client.close()


def claims(token: str) -> dict[str, Any]:
    return json.loads(b64url_decode(token.split(".")[1]))


# ---- the login --------------------------------------------------------------------------------------------
async def test_the_full_oauth_login_follows_relative_redirects_and_the_simulator_checks_pkce(
    sim: Simulator, mofid: Mofid
) -> None:
    verifier, challenge = verifier_pair(mofid.rng)
    assert pkce_challenge(verifier) == challenge
    status, _, location = await mofid.get(mofid.authorize_url(challenge))
    assert status == 302 and location.startswith("/mofid/oauth/Login?ReturnUrl=%2Fmofid%2Foauth%2Fconnect%2Fauthorize")
    url = urljoin(mofid.identity, location)
    async with mofid.http.get(url, allow_redirects=False) as response:
        page = await response.text()
        cookies = response.headers.getall("Set-Cookie")
    assert response.status == 200 and 20_000 < len(page.encode()) < 40_000  # "about 26 KB"
    assert [c.split("=")[0] for c in cookies] == [".AspNetCore.Antiforgery.9fXoN3GV3Mk"]
    assert "Path=/mofid/oauth" in cookies[0] and _TOKEN_FIELD.search(page)
    assert 'name="Captcha"' not in page and "OLoginCaptcha_CaptchaImage" not in page  # none on a first login
    status, body, location = await mofid.post_login(url, page)
    assert (status, body) == (302, "") and location.startswith("/mofid/oauth/connect/authorize/callback?")
    code = await mofid.code_after(location)
    assert re.fullmatch(r"[0-9A-F]{64}", code)
    status, wrong = await mofid.exchange(code, verifier[:-1] + ("A" if verifier[-1] != "A" else "B"))
    assert (status, wrong) == (400, {"error": "invalid_grant"})  # the verifier does not hash to the challenge
    assert (await mofid.exchange(code, verifier))[1] == {"error": "invalid_grant"}  # and the code was spent
    status, _, location = await mofid.get(mofid.authorize_url(challenge))  # logged in now: straight to the code
    assert location.startswith(mofid.redirect_uri + "?code=")
    status, tokens = await mofid.exchange(parse_qs(urlsplit(location).query)["code"][0], verifier)
    assert status == 200 and set(tokens) == {"id_token", "access_token", "expires_in", "token_type", "scope"}
    assert (tokens["expires_in"], tokens["token_type"], tokens["scope"]) == (43_200, "Bearer", SCOPE)
    assert claims(tokens["access_token"])["exp"] - claims(tokens["access_token"])["iat"] == 43_200
    routes = [r.route for r in sim.request_log.records(broker=MOFID)]
    assert routes == ["authorize", "login_page", "login", "authorize", "token", "token", "authorize", "token"]


async def test_the_authorize_and_the_token_refuse_what_the_client_did_not_register(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    verifier, challenge = verifier_pair(mofid.rng)
    for changes in (
        {"code_challenge_method": "plain"},
        {"code_challenge": ""},
        {"client_id": "easy"},
        {"redirect_uri": "https://d.easytrader.ir/auth-callback"},  # not the simulated SPA
        {"response_type": "token"},
        {"scope": SCOPE + " offline_access"},
    ):
        status, page, location = await mofid.get(mofid.authorize_url(challenge, **changes))
        assert (status, location) == (400, None) and REJECTED in page, changes
    url, page = await mofid.login_page(challenge)
    _, _, location = await mofid.post_login(url, page)
    code = await mofid.code_after(location)
    assert await mofid.exchange(code, verifier, client_id="other") == (400, {"error": "invalid_client"})
    assert await mofid.exchange(code, verifier, grant_type="password") == (400, {"error": "unsupported_grant_type"})
    assert await mofid.exchange(code, verifier, redirect_uri=mofid.spa + "/x") == (400, {"error": "invalid_grant"})
    code = await mofid.code_after(location)
    clock.advance(301)  # codes live 300 s
    assert await mofid.exchange(code, verifier) == (400, {"error": "invalid_grant"})
    code = await mofid.code_after(location)
    assert (await mofid.exchange(code, verifier))[0] == 200


async def test_the_credential_post_needs_the_pages_antiforgery_token_and_a_local_return_url(
    sim: Simulator, mofid: Mofid
) -> None:
    _, challenge = verifier_pair(mofid.rng)
    url, page = await mofid.login_page(challenge)
    other = Mofid(sim, random.Random(8))
    try:
        _, foreign = await other.login_page(challenge)
        assert (await mofid.post_login(url, foreign))[0] == 400  # another browser's token
    finally:
        await other.close()
    async with mofid.http.post(url, data={"Username": USER, "Password": DEFAULT_PASSWORD}) as response:
        assert response.status == 400
    outside = f"{mofid.identity}/Login?ReturnUrl=%2F%2Fevil.example%2Fconnect%2Fauthorize%2Fcallback"
    status, text, _ = await mofid.get(outside)
    assert status == 400 and REJECTED in text
    assert (await mofid.post_login(url, page))[0] == 302


async def test_login_hops_in_front_of_the_page_are_relative_too(sim: Simulator, mofid: Mofid) -> None:
    easytrader_state(sim).settings.login_hops = 2
    _, challenge = verifier_pair(mofid.rng)
    status, _, location = await mofid.get(mofid.authorize_url(challenge))
    assert location.startswith("/mofid/oauth/account/login?ReturnUrl=")
    status, _, hop = await mofid.get(urljoin(mofid.identity, location))
    assert status == 301 and hop.startswith("/mofid/oauth/Account/Login?ReturnUrl=")
    status, _, hop = await mofid.get(urljoin(mofid.identity, hop))
    assert status == 301 and hop.startswith("/mofid/oauth/Login?ReturnUrl=%2Fmofid%2Foauth%2Fconnect")
    url, page = await mofid.login_page(challenge)
    assert url == urljoin(mofid.identity, hop)
    assert (await mofid.post_login(url, page))[0] == 302


async def test_a_wrong_password_brings_the_botdetect_captcha_which_is_solved_from_its_image(
    sim: Simulator, mofid: Mofid
) -> None:
    verifier, challenge = verifier_pair(mofid.rng)
    url, page = await mofid.login_page(challenge)
    status, page, location = await mofid.post_login(url, page, password="wrong")
    assert (status, location) == (200, None)
    assert '<div class="validation-summary-errors' in page and WRONG_CREDENTIALS in page
    assert 'name="Captcha"' in page and 'id="OLoginCaptcha_CaptchaImage"' in page
    assert sorted(dict(_HIDDEN.findall(page))) == [
        "BDC_BackWorkaround_OLoginCaptcha",
        "BDC_Hs_OLoginCaptcha",
        "BDC_SP_OLoginCaptcha",
        "BDC_VCID_OLoginCaptcha",
    ]
    assert "&amp;" in _IMAGE.search(page)[1]  # HTML-escaped, relative
    url, page = await mofid.login_page(challenge)  # reloaded: the captcha stays for this browser
    assert 'id="OLoginCaptcha_CaptchaImage"' in page
    status, page, _ = await mofid.post_login(url, page)  # the right password, no captcha
    assert status == 200 and CAPTCHA_REQUIRED in page
    anonymous = aiohttp.ClientSession(headers={"User-Agent": UA})  # the image needs the page's cookie
    try:
        async with anonymous.get(urljoin(mofid.identity + "/", unescape(_IMAGE.search(page)[1]))) as response:
            assert response.status == 400
    finally:
        await anonymous.close()
    status, image = await mofid.captcha_image(page)
    assert status == 200 and Image.open(io.BytesIO(image)).format == "JPEG"
    answer = sim.captchas.answer_for_image(image)
    assert answer is not None and len(answer) == 5 and answer.isalnum()
    wrong = "".join("2" if c != "2" else "3" for c in answer)
    status, page, _ = await mofid.post_login(url, page, captcha=wrong)
    assert status == 200 and WRONG_CAPTCHA in page
    spent = page
    status, page, _ = await mofid.post_login(url, page, password="wrong", captcha=await mofid.solve(page))
    assert status == 200 and WRONG_CREDENTIALS in page  # a right captcha, then the password is checked
    status, again, _ = await mofid.post_login(url, spent, captcha=answer)  # an instance answers once
    assert WRONG_CAPTCHA in again
    status, _, location = await mofid.post_login(url, page, captcha=(await mofid.solve(page)).lower())
    assert status == 302  # BotDetect compares without case
    assert (await mofid.exchange(await mofid.code_after(location), verifier))[0] == 200
    fresh = Mofid(sim, random.Random(9))  # after a success the next login has no captcha again
    try:
        url, page = await fresh.login_page(challenge)
        assert "OLoginCaptcha" not in page and (await fresh.post_login(url, page))[0] == 302
    finally:
        await fresh.close()


async def test_the_captcha_follows_the_username_into_a_fresh_browser_and_no_image_is_a_fault(
    sim: Simulator, mofid: Mofid
) -> None:
    _, challenge = verifier_pair(mofid.rng)
    url, page = await mofid.login_page(challenge)
    await mofid.post_login(url, page, password="wrong")
    fresh = Mofid(sim, random.Random(10))
    try:
        url, page = await fresh.login_page(challenge)
        assert "OLoginCaptcha" not in page
        status, page, _ = await fresh.post_login(url, page)
        assert CAPTCHA_REQUIRED in page and 'id="OLoginCaptcha_CaptchaImage"' in page
        sim.add_fault("captcha@mofid:no_image")
        assert await fresh.captcha_image(page) == (200, b"")
        sim.clear_faults()
        status, _, _ = await fresh.post_login(url, page, captcha=await fresh.solve(page))
        assert status == 302
    finally:
        await fresh.close()
    easytrader_state(sim).settings.captcha_after_failures = 0  # always
    _, page = await mofid.login_page(challenge)
    assert 'id="OLoginCaptcha_CaptchaImage"' in page


# ---- the trading API ----------------------------------------------------------------------------------------
async def test_every_read_is_403_until_same_login_and_each_token_registers_on_its_own(
    sim: Simulator, mofid: Mofid
) -> None:
    await mofid.sign_in(register=False)
    reads = ("/easy/api/account/user-info", "/core/api/money/", "/core/api/portfolio/true", "/core/api/order")
    for path in reads:
        assert await mofid.call("GET", path) == (403, FORBIDDEN), path
    assert await mofid.draft() == (403, FORBIDDEN)
    status, problem = await mofid.same_login(width="1536")
    assert status == 400 and list(problem["errors"]) == ["width"]
    async with mofid.http.post(mofid.api + "/easy/api/account/same-login", headers=mofid.headers()) as response:
        assert response.status == 400  # no body
    status, body = await mofid.same_login()
    assert (status, body) == (200, "")
    for path in reads:
        assert (await mofid.call("GET", path))[0] == 200, path
    first = mofid.token
    second = Mofid(sim, random.Random(11))  # the management tool's login: it evicts nobody
    try:
        await second.sign_in(register=False)
        assert (await second.call("GET", "/core/api/money/"))[0] == 403  # its token is not registered yet
        assert (await second.same_login())[0] == 200 and (await second.call("GET", "/core/api/money/"))[0] == 200
    finally:
        await second.close()
    assert mofid.token == first and (await mofid.call("GET", "/core/api/money/"))[0] == 200
    assert (await mofid.call("GET", "/easy/api/draft"))[0] == 403  # permission-gated even now [confirmed live]
    assert (await mofid.call("GET", "/core/api/v2/order/today-activities"))[0] == 403
    assert (await mofid.call("GET", "/core/api/money"))[0] == 404  # the trailing slash is the path
    info = (await mofid.call("GET", "/easy/api/account/user-info"))[1]
    assert set(info) == {"name", "family", "gender", "bourseCode", "mobile", "email"}


async def test_the_api_wants_the_bearer_the_referer_and_a_browser_and_the_token_lives_12_hours(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    await mofid.sign_in()
    assert (await mofid.call("GET", "/core/api/money/", Referer=""))[0] == 403
    assert (await mofid.call("GET", "/core/api/money/", Referer="https://d.easytrader.ir/"))[0] == 403
    assert (await mofid.call("GET", "/core/api/money/", **{"User-Agent": "python-requests/2.32"}))[0] == 403
    assert (await mofid.call("GET", "/core/api/money/", Authorization=""))[0] == 401
    forged = mofid.token[:-2] + ("AA" if not mofid.token.endswith("AA") else "BB")
    assert (await mofid.call("GET", "/core/api/money/", Authorization=f"Bearer {forged}"))[0] == 401
    clock.advance(43_199)
    assert (await mofid.call("GET", "/core/api/money/"))[0] == 200
    clock.advance(1)
    status, _ = await mofid.call("GET", "/core/api/money/")
    assert status == 401
    await mofid.sign_in()
    assert sim.revoke_tokens(MOFID, USER) == 1
    assert (await mofid.call("GET", "/core/api/money/"))[0] == 401


async def test_server_time_answers_the_skewed_clock_and_its_diff_against_the_callers(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    await mofid.sign_in()
    sim.set_skew(1_500)
    local_ms = clock.time_ns() // 1_000_000
    status, body = await mofid.call("GET", f"/easy/api/account/server-time/{local_ms}")
    assert (status, body) == (200, {"diff": 1_500, "serverTimestamp": local_ms + 1_500})
    assert body["serverTimestamp"] - local_ms == body["diff"]  # the sign the daemon checks
    body = (await mofid.call("GET", f"/easy/api/account/server-time/{local_ms - 200}"))[1]
    assert body["diff"] == 1_700  # a caller 200 ms behind
    easytrader_state(sim).settings.diff_sign = "local_minus_server"
    assert (await mofid.call("GET", f"/easy/api/account/server-time/{local_ms}"))[1]["diff"] == -1_500
    assert (await mofid.call("GET", "/easy/api/account/server-time/now"))[0] == 400


async def test_money_and_portfolio_are_the_accounts(sim: Simulator, mofid: Mofid) -> None:
    await mofid.sign_in(username=OTHER)
    status, money = await mofid.call("GET", "/core/api/money/")
    assert status == 200 and money["buyPower"] == 20_000_000 and money["blocked"] == 0
    assert set(money) == {"balance", "buyPower0", "buyPower1", "buyPower", "blocked", "credit", "avandCredit"}
    status, holdings = await mofid.call("GET", "/core/api/portfolio/true")
    assert holdings == {"portfolioItems": [{"isin": HOT, "symbol": "فولاد", "asset": 1_000, "lastPrice": 5_420}]}
    sim.account(MOFID, OTHER).holdings_error = "خطای سرور"
    assert (await mofid.call("GET", "/core/api/portfolio/true"))[0] == 500


# ---- drafts and the batch -----------------------------------------------------------------------------------
async def test_drafts_at_the_arm_8706_before_the_open_and_one_batch_placed_at_the_open(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    await mofid.sign_in(username=OTHER)  # 20,000,000 rial: room for one 3,000-share buy at the ceiling
    assert (await mofid.draft(price="5580"))[0] == 400  # integers in a draft, not strings
    status, problem = await mofid.draft(price=5_580.5, quantity=True)
    assert status == 400 and set(problem["errors"]) == {"draft.price", "draft.quantity"}
    ids = []
    for _ in range(10):  # the live canary: ten full-size drafts
        status, body = await mofid.draft(quantity=3_000)
        assert status == 200 and set(body) == {"id"} and re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", body["id"])
        ids.append(body["id"])
    assert len(set(ids)) == 10
    clock.advance(59)  # 08:44:59, before the open
    status, refused = await mofid.batch(ids)
    assert status == 200 and refused["isSuccessful"] is False  # HTTP 200 is not success
    assert [e["code"] for e in refused["omsError"]] == [8706] * 10
    assert sim.orders(MOFID, OTHER) == []
    clock.advance(1)  # 08:45:00
    status, placed = await mofid.batch(ids)
    assert status == 200 and isinstance(placed, list) and len(placed) == 1  # one order, the rest lack money
    assert placed[0] not in ids and len(placed[0]) == 26
    [order] = sim.orders(MOFID, OTHER)
    cost = 5_580 * 3_000 + round(5_580 * 3_000 * 0.003712)
    assert sim.account(MOFID, OTHER).buying_power == 20_000_000 - cost
    status, book = await mofid.call("GET", "/core/api/order")
    [row] = book["orders"]
    assert re.fullmatch(r"[A-Za-z0-9]{10}\.[A-Za-z0-9]{4}", row["id"]) and row["id"] != placed[0]
    assert {k: row[k] for k in ("symbolIsin", "price", "quantity", "executedQuantity", "side", "orderStateStr")} == {
        "symbolIsin": HOT,
        "price": 5_580,
        "quantity": 3_000,
        "executedQuantity": 0,
        "side": 0,
        "orderStateStr": "OnBoard",
    }
    assert row["trades"] == [] and row["createDateTime"] == "2026-11-21T08:45:00.000" and "algoSuffixCharacters" in book
    money = (await mofid.call("GET", "/core/api/money/"))[1]
    assert (money["buyPower"], money["blocked"]) == (20_000_000 - cost, cost)
    status, again = await mofid.batch(ids)  # the drafts stay, but the money is gone
    assert again["isSuccessful"] is False and {e["code"] for e in again["omsError"]} == {1011}
    assert len(sim.orders(MOFID, OTHER)) == 1


async def test_a_batch_sent_again_places_a_second_order_while_money_allows_unless_the_drafts_went(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    await mofid.sign_in()  # 5,000,000,000 rial
    draft_id = (await mofid.draft())[1]["id"]
    clock.advance(60)
    first, second = (await mofid.batch([draft_id]))[1], (await mofid.batch([draft_id]))[1]
    assert len(first) == len(second) == 1 and first != second
    assert len(sim.orders(MOFID, USER)) == 2  # why the daemon asks today's orders before any resend
    assert len((await mofid.call("GET", "/core/api/order"))[1]["orders"]) == 2
    other = (await mofid.draft())[1]["id"]
    assert len((await mofid.batch([other], remove=True))[1]) == 1
    status, gone = await mofid.batch([other])
    assert gone["omsError"] == [{"code": 1040, "message": "پیش نویس سفارش یافت نشد"}]


async def test_a_lost_batch_answer_still_places_the_order_which_todays_orders_show(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    await mofid.sign_in()
    draft_id = (await mofid.draft())[1]["id"]
    clock.advance(60)
    sim.add_fault("batch@mofid:drop,after")
    with pytest.raises(aiohttp.ClientError):
        await mofid.batch([draft_id])
    sim.clear_faults()
    [row] = (await mofid.call("GET", "/core/api/order"))[1]["orders"]
    assert (row["symbolIsin"], row["quantity"], row["orderStateStr"]) == (HOT, 1_000, "OnBoard")
    [record] = sim.request_log.records(route="batch")
    assert (record.status, record.fault, record.username) == (None, "drop", USER)


async def test_the_batch_applies_the_markets_rules_with_codes_in_omserror(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    await mofid.sign_in(username=OTHER)  # holds 1,000 FOLD
    clock.advance(60)
    cases = (
        ({"price": 5_590}, 1003),  # above the band
        ({"quantity": 200_001}, 1001),  # above maxeq (RLC's mxqo)
        ({"isin": "IRO1NONE0001"}, 1004),
        ({"side": 1, "price": 5_260, "quantity": 1_001}, 1012),  # more than held
        ({"quantity": 1}, 1006),  # below the minimum value
        ({"quantity": 4_000}, 1011),  # above buyPower with the fee
    )
    for fields, code in cases:
        draft_id = (await mofid.draft(**fields))[1]["id"]
        status, body = await mofid.batch([draft_id])
        assert (status, body["isSuccessful"], body["omsError"][0]["code"]) == (200, False, code), fields
    easytrader_state(sim).settings.rejection_status = 400
    draft_id = (await mofid.draft(quantity=4_000))[1]["id"]
    assert (await mofid.batch([draft_id]))[0] == 400
    easytrader_state(sim).settings.rejection_status = 200
    sell = (await mofid.draft(side=1, price=5_260, quantity=1_000))[1]["id"]
    assert (await mofid.batch([sell]))[0] == 200 and sim.account(MOFID, OTHER).holdings[HOT] == 0
    row = (await mofid.call("GET", "/core/api/order"))[1]["orders"][0]
    assert (row["side"], row["price"]) == (1, 5_260)
    assert (await mofid.batch([]))[0] == 400
    status, problem = await mofid.call("POST", "/core/api/order/batchCreate", {"draftIds": [sell], "orderFrom": "34"})
    assert status == 400 and set(problem["errors"]) == {"removeDraftAfterCreate", "orderFrom"}


async def test_a_draft_is_its_accounts_and_its_days_and_can_be_deleted(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    await mofid.sign_in()
    mine = (await mofid.draft())[1]["id"]
    other = Mofid(sim, random.Random(12))
    try:
        await other.sign_in(username=OTHER)
        clock.advance(60)
        assert (await other.batch([mine]))[1]["omsError"][0]["code"] == 1040  # not its draft
        assert (await other.call("DELETE", f"/easy/api/draft/{mine}"))[0] == 404
    finally:
        await other.close()
    replaced = (await mofid.draft(quantity=900))[1]["id"]  # the final check's resize: a new draft, the old deleted
    assert (await mofid.call("DELETE", f"/easy/api/draft/{mine}")) == (200, "")
    assert (await mofid.call("DELETE", f"/easy/api/draft/{mine}"))[0] == 404
    assert (await mofid.batch([mine]))[1]["omsError"][0]["code"] == 1040
    clock.advance(timedelta(days=1))  # drafts are day-valid (and the token has lapsed: 12 h)
    await mofid.sign_in()
    assert (await mofid.batch([replaced]))[1]["omsError"][0]["code"] == 1040
    assert (await mofid.call("GET", "/core/api/order"))[1]["orders"] == []  # yesterday's orders are not listed


async def test_the_single_order_takes_strings_and_answers_is_successful(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    await mofid.sign_in()

    def body(**fields: Any) -> dict[str, Any]:
        order = {"orderFrom": 34, "price": "5580", "quantity": "1000", "side": 0, "symbolIsin": HOT, "validityType": 0}
        return {"order": {**order, **fields}}

    status, closed = await mofid.call("POST", "/core/api/v2/order", body())
    assert (status, closed["isSuccessful"], closed["omsError"][0]["code"]) == (200, False, 8706)
    clock.advance(60)
    status, bad = await mofid.call("POST", "/core/api/v2/order", body(price=5580))
    assert bad["omsError"][0]["code"] == 1000
    status, done = await mofid.call("POST", "/core/api/v2/order", body())
    assert (status, done["isSuccessful"]) == (200, True) and isinstance(done["id"], str)
    assert (await mofid.call("GET", "/core/api/order"))[1]["orders"][0]["id"] == done["id"]
    easytrader_state(sim).settings.order_spacing_ms = 500
    clock.advance(0.5)
    assert (await mofid.call("POST", "/core/api/v2/order", body()))[1]["isSuccessful"] is True
    assert (await mofid.call("POST", "/core/api/v2/order", body()))[1]["omsError"][0]["code"] == 1018
    clock.advance(0.5)
    assert (await mofid.call("POST", "/core/api/v2/order", body()))[1]["isSuccessful"] is True


async def test_fills_and_the_jalali_create_date_show_on_the_order_rows(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    await mofid.sign_in()
    draft_id = (await mofid.draft())[1]["id"]
    clock.advance(60.25)
    await mofid.batch([draft_id])
    [order] = sim.orders(MOFID, USER)
    state = easytrader_state(sim)
    sim.fill(order, 400)
    row = (await mofid.call("GET", "/core/api/order"))[1]["orders"][0]
    assert (row["executedQuantity"], row["orderStateStr"], row["trades"]) == (
        400,
        "PartiallyExecuted",
        [{"price": 5_580, "quantity": 400}],
    )
    sim.fill(order)
    state.settings.create_date_format = "jalali"
    row = (await mofid.call("GET", "/core/api/order"))[1]["orders"][0]
    assert (row["orderStateStr"], row["createDateTime"]) == ("Executed", "1405/08/30 08:45:00")
    with pytest.raises(ValueError, match="does not fit"):
        sim.fill(order, 1_001)


# ---- the hourly cap -----------------------------------------------------------------------------------------
async def test_the_hourly_cap_counts_each_accounts_requests_and_refuses_past_it(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    state = easytrader_state(sim)
    await mofid.sign_in()
    cold = state.in_window(MOFID, USER)
    assert cold == 4  # the credential post, the authorize with the login cookie, the token, same-login
    state.settings.hourly_cap = cold + 3
    for _ in range(3):
        assert (await mofid.call("GET", "/core/api/money/"))[0] == 200
        clock.advance(10)
    async with mofid.http.get(mofid.api + "/core/api/money/", headers=mofid.headers()) as response:
        assert response.status == 429 and "maximum admitted 7" in await response.text()
        assert int(response.headers["Retry-After"]) == 3_600 - 30 + 1
    assert state.in_window(MOFID, USER) == 7 and state.counted[(MOFID, USER)] == 7  # a refusal is not counted
    other = Mofid(sim, random.Random(13))
    try:
        await other.sign_in(username=OTHER)  # another account has its own budget
        assert (await other.call("GET", "/core/api/money/"))[0] == 200
    finally:
        await other.close()
    clock.advance(3_600 - 30)  # the first requests leave the window
    assert (await mofid.call("GET", "/core/api/money/"))[0] == 200
    state.settings.hourly_cap = None
    for _ in range(20):
        assert (await mofid.call("GET", "/core/api/order"))[0] == 200
    print(f"requests counted for {USER}: {state.counted[(MOFID, USER)]}")


async def test_a_full_morning_at_the_default_cap_stays_far_below_it(
    sim: Simulator, mofid: Mofid, clock: FakeClock
) -> None:
    """Warmup login and reads, a refresh a minute for 25 minutes, the drafts, 40 spaced batch attempts."""
    state = easytrader_state(sim)
    assert state.settings.hourly_cap == 1_500
    clock.advance(-25 * 60)
    await mofid.sign_in()
    for _ in range(25):
        for path in ("/core/api/money/", "/core/api/portfolio/true", "/core/api/order"):
            assert (await mofid.call("GET", path))[0] == 200
        clock.advance(60)
    draft_id = (await mofid.draft())[1]["id"]
    clock.advance(58.45)
    answers = []
    for _ in range(40):
        status, body = await mofid.batch([draft_id])
        answers.append(isinstance(body, list))
        if answers[-1]:
            break
        clock.advance(0.06)  # 20 ms after each attempt's answer, the round trip taken as 40 ms
    assert answers.count(True) == 1 and status == 200
    used = state.in_window(MOFID, USER)
    print(f"a full morning used {used} of the 1500 requests an hour")
    assert used < 150


# ---- the seam: faults, the log, the config, the CLI ---------------------------------------------------------
async def test_faults_name_easytrader_routes_and_the_config_says_every_host(sim: Simulator, mofid: Mofid) -> None:
    base = sim.base_url
    assert sim.broker_urls(MOFID) == {
        "platform": "easytrader",
        "url": f"{base}/mofid/mts",
        "identity_url": f"{base}/mofid/oauth",
        "spa_url": f"{base}/mofid/spa",
        "rlc_url": f"{base}/rlc",
    }
    assert sim.config_snippet().data["brokers"]["mofid"]["platform"] == "easytrader"
    sim.add_fault("token@mofid:status=503")
    _, challenge = verifier_pair(mofid.rng)
    url, page = await mofid.login_page(challenge)
    _, _, location = await mofid.post_login(url, page)
    status, _ = await mofid.exchange(await mofid.code_after(location), "x" * 43)
    assert status == 503
    sim.clear_faults()
    async with mofid.http.get(f"{base}/gs/oauth/Login") as response:  # gs is an Ephoenix broker
        assert response.status == 404
    async with mofid.http.get(f"{base}/mofid/identity/api/Captcha/GetCaptcha") as response:
        assert response.status == 404
    assert sim.add_fault("same_login:html").route == "same_login"
    logged = [(r.route, r.status) for r in sim.request_log.records(broker=MOFID)][-2:]
    assert logged == [("token", 503), ("captcha", 404)]  # Ephoenix's captcha route, not for an easytrader broker


async def test_simulate_serves_mofid_on_easytrader() -> None:
    process, lines = await _start("--port", "0", "--brokers", "mofid:easytrader", "--accounts", "1", "--seed", "3")
    try:
        assert any("easytrader brokers mofid" in line for line in lines)
        snippet = yaml.safe_load(
            "\n".join(lines[lines.index("# ---- config.yaml snippet for the simulator ----") + 1 : -1])
        )
        broker = snippet["brokers"]["mofid"]
        assert broker["platform"] == "easytrader" and broker["url"].startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession(headers={"User-Agent": UA}) as http:
            query = {"client_id": "easy_pkce", "redirect_uri": broker["spa_url"] + "/auth-callback"}
            query |= {"response_type": "code", "scope": SCOPE, "code_challenge": "A" * 43}
            query |= {"code_challenge_method": "S256"}
            url = f"{broker['identity_url']}/connect/authorize/callback?{urlencode(query)}"
            async with http.get(url, allow_redirects=False) as response:
                assert response.status == 302 and response.headers["Location"].startswith("/mofid/oauth/Login?")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0
