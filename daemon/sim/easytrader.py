"""Mofid's Orbis "easytrader" on the simulator: the identity server and the trading API over the shared market.

In reality they are two hosts (`login.emofid.com`, `api-mts.orbis.easytrader.ir`) and the SPA a third
(`d.easytrader.ir`, the `redirect_uri` and the `Referer`); here each is a prefix under the broker code:

    /{broker}/oauth/connect/authorize[/callback]        authorize     302 to the login page (relative), or the code
    /{broker}/oauth/Login?ReturnUrl=                     login_page    HTML with __RequestVerificationToken
    /{broker}/oauth/Login?ReturnUrl=  (POST, a form)     login         302 back to the authorize callback, or errors
    /{broker}/oauth/BotDetectCaptcha.ashx?get=image&...  captcha       the BotDetect JPEG, with the page's cookie
    /{broker}/oauth/connect/token                        token         PKCE (S256) checked, a 12 h Bearer
    /{broker}/mts/easy/api/account/same-login            same_login    registers the token; before it reads are 403
    /{broker}/mts/easy/api/account/user-info             user_info
    /{broker}/mts/easy/api/account/server-time/{ms}      server_time   {diff, serverTimestamp} on the skewed clock
    /{broker}/mts/core/api/money/                        money         buyPower (the trailing slash is required)
    /{broker}/mts/core/api/portfolio/true                holdings
    /{broker}/mts/core/api/order                         orders        today's orders, ids as strings
    /{broker}/mts/easy/api/draft                         draft         POST a draft; GET is always 403 (as live)
    /{broker}/mts/easy/api/draft/{id}  (DELETE)          draft_delete  the simulator's assumption (not in the doc)
    /{broker}/mts/core/api/order/batchCreate             batch         the drafts as orders: an array of ids
    /{broker}/mts/core/api/v2/order                      new_order     one order, price and quantity as strings
    /{broker}/mts/core/api/v2/order/today-activities     activities    always 403 (as live)

Facts and tags are easytrader-api.md's. Location headers are relative where the real ones are (the prefix is part
of them, as a host with a path base writes them), so a client must resolve them against the identity URL. What the
document leaves open is an `EasytraderSettings` knob (`easytrader_state(sim).settings`); refusals the market makes
are named in `REFUSAL_CODES` (only 8706 is the document's; the rest are the Ephoenix numbers or the simulator's).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from html import escape
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import jdatetime
import orjson
from aiohttp import web

from daemon.sim import rlc
from daemon.sim._auth import b64url, jwt_payload, signed_jwt
from daemon.sim._captcha_image import render_captcha
from daemon.sim._fills import Execution
from daemon.sim._http import ERROR_CODE, NO_IMAGE, USERNAME, add_route, json_response, read_json
from daemon.sim._http import state_of as _state
from daemon.sim._market import BUY, CANCELLED, SELL, Account, Order, OrderRequest, Refusal, created_at
from daemon.sim._platform import register_platform
from daemon.sim._side import Sides, side_rng
from daemon.sim._state import SimState

NAME = "easytrader"
IDENTITY, API, SPA = "oauth", "mts", "spa"  # the prefixes standing for the three hosts
CLIENT_ID = "easy_pkce"
SCOPES = frozenset({"easy2_api", "mts_api", "openid", "profile"})
CALLBACK_PATH = "/auth-callback"  # on the SPA origin: the only registered redirect_uri
ANTIFORGERY_COOKIE = ".AspNetCore.Antiforgery.9fXoN3GV3Mk"  # the real name was not recorded; ASP.NET's shape
LOGIN_COOKIE = "idsrv"  # IdentityServer's authentication cookie
SESSION_COOKIE = "idsrv.session"
CAPTCHA_ID = "OLoginCaptcha"
LOGIN_PAGES = ("Login", "Account/Login", "account/login")  # the login page and the hops in front of it (login_hops)
FORBIDDEN = "You do not have permission to view this object"  # 403 before same-login [confirmed live]
ORDER_FROM = 34
SIDES = {0: BUY, 1: SELL}  # Buy = 0, Sell = 1 [confirmed live for buy]
SIDE_CODES = {BUY: 0, SELL: 1}

# the login page's Persian markers [from code only: the decompiled client's]
WRONG_CREDENTIALS = "نام کاربری یا کلمه عبور نادرست است"
WRONG_CAPTCHA = "کد امنیتی اشتباه است"
CAPTCHA_REQUIRED = "کد امنیتی را وارد کنید"
REJECTED = "رد درخواست"
MISSING_FIELDS = "نام کاربری و کلمه عبور را وارد کنید"  # the simulator's own: the "ambiguous" class

MARKET_CLOSED = 8706  # omsError code [from code only]
INVALID_REQUEST = 1000  # the simulator's own, as on the other simulated platforms
INVALID_VOLUME = 1001  # Ephoenix's number; easytrader's unknown (open question 3)
PRICE_OUT_OF_RANGE = 1003
UNKNOWN_INSTRUMENT = 1004
BELOW_MIN_VALUE = 1006
INSUFFICIENT_BALANCE = 1011
INSUFFICIENT_HOLDINGS = 1012
TOO_SOON = 1018  # only with order_spacing_ms > 0 (open question 2)
UNKNOWN_DRAFT = 1040  # the simulator's own: a draft id that is not this account's draft of today

REFUSAL_CODES: dict[Refusal, int] = {
    Refusal.UNKNOWN_INSTRUMENT: UNKNOWN_INSTRUMENT,
    Refusal.VOLUME: INVALID_VOLUME,
    Refusal.PRICE: PRICE_OUT_OF_RANGE,
    Refusal.BALANCE: INSUFFICIENT_BALANCE,
    Refusal.HOLDINGS: INSUFFICIENT_HOLDINGS,
    Refusal.MIN_VALUE: BELOW_MIN_VALUE,
}
MESSAGES: dict[int, str] = {
    MARKET_CLOSED: "بازار در وضعیت پیش گشایش یا بسته است",
    INVALID_REQUEST: "درخواست نامعتبر است",
    INVALID_VOLUME: "حجم سفارش خارج از محدوده مجاز است",
    PRICE_OUT_OF_RANGE: "قیمت سفارش خارج از محدوده مجاز روزانه است",
    UNKNOWN_INSTRUMENT: "نماد مورد نظر یافت نشد",
    BELOW_MIN_VALUE: "ارزش سفارش کمتر از حداقل مجاز است",
    INSUFFICIENT_BALANCE: "قدرت خرید کافی نیست",
    INSUFFICIENT_HOLDINGS: "دارایی کافی برای فروش وجود ندارد",
    TOO_SOON: "فاصله زمانی ثبت دو سفارش کمتر از حد مجاز است",
    UNKNOWN_DRAFT: "پیش نویس سفارش یافت نشد",
}
# orderStateStr: "OnBoard" is the live one; the others are the simulator's guesses (open question 3)
ON_BOARD, PARTIAL, EXECUTED, CANCELED = "OnBoard", "PartiallyExecuted", "Executed", "Canceled"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")  # base64url of a SHA-256, unpadded
_DIGITS = re.compile(r"^[0-9]+$")


@dataclass
class EasytraderSettings:
    """easytrader-api.md's unknowns as live knobs; the defaults are what the daemon assumes.

    - `hourly_cap` (None: no cap) requests per account per `cap_window_s` (sliding, on the monotonic clock), refused
      with `cap_status` and Retry-After; a refused request does not count (open question 2). Counted: every API call
      with a valid Bearer, the credential post (by its Username), the authorize with the login cookie and the token
      exchange (by the code's account); the anonymous hops of a cold login cannot be told apart and are free.
    - `captcha_after_failures`: wrong passwords (per username) after which every credential post needs the BotDetect
      captcha until a login succeeds, and the browser (its antiforgery cookie) that failed sees it too; 0 = always
      (open question 6). `captcha_length` characters of `captcha_chars` (compared without case), `captcha_ttl_s`.
    - `login_hops`: 0-2 redirects in front of the login page ("for example http to https" [from code only]).
    - `token_ttl_s` (`expires_in`, 43200 [confirmed live]) and `code_ttl_s` (the authorization code's, 300).
    - `require_referer`: API calls whose Referer is not the SPA's origin get 403, as do (`browser_agent_only`) a
      User-Agent not starting "Mozilla/" on either host (open question 10).
    - `diff_sign`: `server-time`'s `diff` as server minus local (the code's assumption) or the reverse (question 1).
    - `rejection_status`: the HTTP status of an order answer with `isSuccessful: false` (200: "HTTP 200 is not
      success").
    - `create_date_format`: the order rows' `createDateTime`, "iso" (Tehran wall clock, no offset) or "jalali"
      (question 8).
    - `order_spacing_ms`: a per-account minimum interval between order calls (1018), 0 = none known (question 2).
    """

    hourly_cap: int | None = 1500
    cap_window_s: float = 3600.0
    cap_status: int = 429
    captcha_after_failures: int = 1
    captcha_length: int = 5
    captcha_chars: str = "23456789ABCDEFGHJKLNPQRSTUVXYZ"
    captcha_ttl_s: float = 600.0
    login_hops: int = 0
    token_ttl_s: int = 43_200
    code_ttl_s: int = 300
    require_referer: bool = True
    browser_agent_only: bool = True
    diff_sign: Literal["server_minus_local", "local_minus_server"] = "server_minus_local"
    rejection_status: int = 200
    create_date_format: Literal["iso", "jalali"] = "iso"
    order_spacing_ms: float = 0.0


@dataclass
class Browser:
    """One client's login-page state, keyed by its antiforgery cookie: whether it must solve a captcha."""

    broker: str
    captcha_needed: bool = False


@dataclass
class CaptchaInstance:
    broker: str
    browser: str
    answer: str
    expires_ns: int


@dataclass(frozen=True)
class LoginSession:
    broker: str
    username: str
    expires_ns: int


@dataclass
class Grant:
    """An authorization code and what it was issued for."""

    broker: str
    username: str
    challenge: str
    redirect_uri: str
    scope: str
    expires_ns: int
    used: bool = False


@dataclass(frozen=True)
class Draft:
    id: str
    broker: str
    username: str
    isin: str
    name: str
    price: int
    quantity: int
    side: int
    created_ns: int


class EasytraderState:
    """One simulator's easytrader side: settings, login machinery, tokens, drafts, order ids and the request cap."""

    def __init__(self, state: SimState) -> None:
        self.settings = EasytraderSettings()
        seed = state.settings.seed
        self.rng = side_rng(state, "easytrader")
        self._secret = self.rng.randbytes(32) if seed is not None else secrets.token_bytes(32)
        self.browsers: dict[str, Browser] = {}
        self.captchas: dict[str, CaptchaInstance] = {}
        self.failures: dict[tuple[str, str], int] = {}
        self.logins: dict[str, LoginSession] = {}
        self.grants: dict[str, Grant] = {}
        self.registered: set[str] = set()  # token ids (jti) that called same-login
        self.drafts: dict[str, Draft] = {}
        self.order_ids: dict[tuple[str, int], str] = {}
        self.batch_ids: dict[str, tuple[str, int]] = {}  # an id a batch answered -> the order it placed
        self.last_order_ns: dict[tuple[str, str], int] = {}
        self._hits: dict[tuple[str, str], deque[int]] = {}
        self.counted: dict[tuple[str, str], int] = {}  # requests counted against the cap since the start

    # ---- the hourly cap ------------------------------------------------------------------------------------
    def charge(self, broker: str, username: str, monotonic_ns: int) -> float | None:
        """Count one request of the account; the seconds until one is allowed again when the cap is reached."""
        cap = self.settings.hourly_cap
        key = (broker, username)
        hits = self._hits.setdefault(key, deque())
        window_ns = int(self.settings.cap_window_s * 1e9)
        while hits and hits[0] <= monotonic_ns - window_ns:
            hits.popleft()
        if cap is not None and len(hits) >= cap:
            return max(0.0, (hits[0] + window_ns - monotonic_ns) / 1e9)
        hits.append(monotonic_ns)
        self.counted[key] = self.counted.get(key, 0) + 1
        return None

    def in_window(self, broker: str, username: str) -> int:
        """Requests of the account that the cap still counts (the last `cap_window_s` as of the last request)."""
        return len(self._hits.get((broker, username), ()))

    # ---- ids and tokens ------------------------------------------------------------------------------------
    def ulid(self, now_ns: int) -> str:
        """A 26-character ULID: the millisecond on the simulator's clock, then 80 seeded random bits."""
        value = ((now_ns // 1_000_000) << 80) | self.rng.getrandbits(80)
        return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))

    def order_id(self, order: Order) -> str:
        """A book order's id as live: a short mixed-case string with a dot, `<10>.<4>`, never a number."""
        key = (order.broker, order.serial_number)
        if key not in self.order_ids:
            head = "".join(self.rng.choice(ID_CHARS) for _ in range(10))
            self.order_ids[key] = f"{head}.{''.join(self.rng.choice(ID_CHARS) for _ in range(4))}"
        return self.order_ids[key]

    def mac(self, *parts: str) -> str:
        return b64url(hmac.new(self._secret, "\x00".join(parts).encode(), hashlib.sha256).digest())

    def jwt(self, payload: dict[str, Any]) -> str:
        return signed_jwt({"alg": "HS256", "typ": "at+jwt"}, payload, self._jwt_mac)

    def claims(self, token: str) -> dict[str, Any] | None:
        return jwt_payload(token, self._jwt_mac)

    def _jwt_mac(self, signing_input: str) -> str:
        return self.mac("jwt", signing_input)


_SIDES: Sides[EasytraderState] = Sides(EasytraderState)


def easytrader_state(sim: Any) -> EasytraderState:
    """The easytrader side of a simulator (a Simulator or its SimState), made on first use; its settings stay live."""
    return _SIDES.of(sim)


def _et(request: web.Request) -> EasytraderState:
    return easytrader_state(_state(request))


def pkce_challenge(verifier: str) -> str:
    """S256: base64url(SHA-256(the verifier's ASCII bytes)) without padding (RFC 7636)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


# ---- where things are --------------------------------------------------------------------------------------
def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _prefix(request: web.Request, host: str) -> str:
    return f"/{request.match_info['broker']}/{host}"


def spa_url(request: web.Request) -> str:
    return f"{_origin(request)}{_prefix(request, SPA)}"


def redirect_uri(request: web.Request) -> str:
    """The one redirect_uri registered for easy_pkce: the SPA's callback (the client reads the code, never goes)."""
    return spa_url(request) + CALLBACK_PATH


def _cookie(request: web.Request, name: str, value: str) -> str:
    return f"{name}={value}; Path={_prefix(request, IDENTITY)}; HttpOnly; SameSite=Lax"


def _browser_refusal(request: web.Request) -> web.Response | None:
    if _et(request).settings.browser_agent_only and not request.headers.get("User-Agent", "").startswith("Mozilla/"):
        return web.Response(status=403, text="<html><body>Request Rejected</body></html>", content_type="text/html")
    return None


def _capped(request: web.Request, account: Account) -> web.Response | None:
    """Count the request against the account's hourly cap; the refusal when the cap is reached."""
    st, et = _state(request), _et(request)
    request[USERNAME] = account.username
    left = et.charge(account.broker, account.username, st.clock.monotonic_ns())
    if left is None:
        return None
    cap = et.settings.hourly_cap
    return web.Response(
        status=et.settings.cap_status,
        text=f"API calls quota exceeded! maximum admitted {cap} per {et.settings.cap_window_s:g}s.",
        headers={"Retry-After": str(max(1, int(left) + 1))},
    )


def _redirect(location: str, status: int = 302) -> web.Response:
    """A redirect whose Location is exactly `location` (aiohttp's HTTPFound would re-encode it) and no body."""
    return web.Response(status=status, headers={"Location": location})


def _rejected_page(status: int = 400) -> web.Response:
    """IdentityServer's error page: the client recognises it by the Persian "request rejected"."""
    body = f'<!DOCTYPE html><html lang="fa" dir="rtl"><body><div class="error-page"><h1>{REJECTED}</h1></div></body></html>'
    return web.Response(status=status, text=body, content_type="text/html")


# ---- 1. authorize ------------------------------------------------------------------------------------------
def _authorize_error(request: web.Request, query: Any) -> str | None:
    """What is wrong with an authorize request, or None (every parameter as easytrader-api.md step 1 gives it)."""
    scope = set(str(query.get("scope", "")).split(" "))
    challenge = query.get("code_challenge", "")
    checks = (
        (query.get("client_id") == CLIENT_ID, "unknown client_id"),
        (query.get("redirect_uri") == redirect_uri(request), "redirect_uri is not registered"),
        (query.get("response_type") == "code", "response_type must be code"),
        ("openid" in scope and scope <= SCOPES, "scope"),
        (bool(_CHALLENGE.match(challenge)), "code_challenge is required (PKCE)"),
        (query.get("code_challenge_method") == "S256", "code_challenge_method must be S256"),
        (query.get("response_mode", "query") == "query", "response_mode"),
    )
    return next((why for ok, why in checks if not ok), None)


def _live_login(request: web.Request) -> tuple[LoginSession, Account] | None:
    et, st = _et(request), _state(request)
    session = et.logins.get(request.cookies.get(LOGIN_COOKIE, ""))
    if session is None or session.broker != request.match_info["broker"] or session.expires_ns <= st.now_ns():
        return None
    account = st.market.account(session.broker, session.username)
    return (session, account) if account is not None else None


async def authorize(request: web.Request) -> web.StreamResponse:
    """302 to the login page (relative) without a login; with one, 302 to redirect_uri with a fresh code."""
    if (refused := _browser_refusal(request)) is not None:
        return refused
    if _authorize_error(request, request.query) is not None:
        return _rejected_page()
    st, et = _state(request), _et(request)
    live = _live_login(request)
    if live is None:
        page = LOGIN_PAGES[max(0, min(et.settings.login_hops, len(LOGIN_PAGES) - 1))]
        target = f"{_prefix(request, IDENTITY)}/{page}?ReturnUrl={quote(request.raw_path, safe='')}"
        return _redirect(target)  # a relative Location [confirmed live]
    session, account = live
    if (capped := _capped(request, account)) is not None:
        return capped
    code = secrets.token_hex(32).upper() if st.settings.seed is None else f"{et.rng.getrandbits(256):064X}"
    query = request.query
    et.grants[code] = Grant(
        account.broker,
        account.username,
        query["code_challenge"],
        query["redirect_uri"],
        query["scope"],
        st.now_ns() + et.settings.code_ttl_s * 10**9,
    )
    back = {"code": code, "scope": query["scope"]}
    if "state" in query:
        back["state"] = query["state"]
    back["session_state"] = f"{et.mac('ss', code)[:43]}.{et.mac('ss2', code)[:22]}"
    return _redirect(f"{query['redirect_uri']}?{urlencode(back, quote_via=quote)}")


# ---- 2-3. the login page and the credential post -----------------------------------------------------------
def _return_url_ok(request: web.Request, return_url: str) -> bool:
    """Only this identity server's own authorize callback (IdentityServer refuses any other return URL)."""
    parts = urlsplit(return_url)
    if parts.scheme or parts.netloc or parts.path != f"{_prefix(request, IDENTITY)}/connect/authorize/callback":
        return False
    return _authorize_error(request, dict(parse_qsl(parts.query))) is None


def _new_captcha(request: web.Request, browser_id: str) -> str:
    """A new BotDetect instance for this browser; its id (the `t` of the image URL and BDC_VCID)."""
    st, et = _state(request), _et(request)
    now_ns = st.now_ns()
    for stale in [k for k, v in et.captchas.items() if v.expires_ns <= now_ns]:
        del et.captchas[stale]
    instance = f"{et.rng.getrandbits(128):032x}"
    s = et.settings
    answer = "".join(et.rng.choice(s.captcha_chars) for _ in range(s.captcha_length))
    found = CaptchaInstance(request.match_info["broker"], browser_id, answer, now_ns + int(s.captcha_ttl_s * 1e9))
    et.captchas[instance] = found
    return instance


def _captcha_block(request: web.Request, browser_id: str) -> str:
    """BotDetect's markup: the image (a relative, HTML-escaped URL), the input and the four hidden fields."""
    et = _et(request)
    instance = _new_captcha(request, browser_id)
    src = f"{_prefix(request, IDENTITY)}/BotDetectCaptcha.ashx?get=image&c={CAPTCHA_ID}&t={instance}"
    hidden = {
        f"BDC_VCID_{CAPTCHA_ID}": instance,
        f"BDC_BackWorkaround_{CAPTCHA_ID}": "1",
        f"BDC_Hs_{CAPTCHA_ID}": et.mac("hs", instance),
        f"BDC_SP_{CAPTCHA_ID}": et.mac("sp", instance)[:16],
    }
    fields = "".join(f'<input type="hidden" name="{k}" id="{k}" value="{v}" />' for k, v in hidden.items())
    return (
        f'<div class="BDC_CaptchaDiv" id="{CAPTCHA_ID}_CaptchaDiv">'
        f'<div class="BDC_CaptchaImageDiv" id="{CAPTCHA_ID}_CaptchaImageDiv">'
        f'<img class="BDC_CaptchaImage" id="{CAPTCHA_ID}_CaptchaImage" src="{escape(src)}" alt="Captcha" /></div>'
        f"{fields}</div>"
        '<input class="form-control" name="Captcha" id="Captcha" type="text" autocomplete="off" placeholder="کد امنیتی" />'
    )


_FILLER = "".join(
    f".ez-{n}{{margin:{n % 7}px {n % 5}px;padding:{n % 3}px;color:#{(n * 2654435761) % 0xFFFFFF:06x};}}\n"
    for n in range(560)
)  # the real page is about 26 KB of markup and styles


def _login_page(request: web.Request, browser_id: str, errors: str | None, captcha: bool) -> web.Response:
    et = _et(request)
    token = "CfDJ8" + et.mac("af", browser_id)
    summary = (
        f'<div class="validation-summary-errors text-danger" data-valmsg-summary="true"><ul><li>{escape(errors)}</li>'
        "</ul></div>"
        if errors
        else '<div class="validation-summary-valid text-danger" data-valmsg-summary="true"><ul><li style="display:none"></li></ul></div>'
    )
    block = _captcha_block(request, browser_id) if captcha else ""
    action = escape(request.raw_path)
    body = (
        '<!DOCTYPE html>\n<html lang="fa" dir="rtl"><head><meta charset="utf-8" /><title>ورود | مفید</title>'
        f'<style>{_FILLER}</style></head><body><div class="login-page">'
        f'<form method="post" action="{action}">{summary}'
        '<input class="form-control" type="text" name="Username" id="Username" placeholder="نام کاربری" />'
        '<input class="form-control" type="password" name="Password" id="Password" placeholder="کلمه عبور" />'
        f"{block}"
        '<input type="checkbox" name="RememberLogin" id="RememberLogin" value="true" />'
        '<button class="btn btn-primary" name="button" value="login">ورود</button>'
        f'<input name="__RequestVerificationToken" type="hidden" value="{token}" />'
        '<input name="RememberLogin" type="hidden" value="false" /></form></div></body></html>'
    )
    return web.Response(text=body, content_type="text/html")


async def login_page(request: web.Request) -> web.StreamResponse:
    """GET /Login?ReturnUrl=: the form with a fresh antiforgery token (and cookie); a hop first when set."""
    if (refused := _browser_refusal(request)) is not None:
        return refused
    page = request.match_info["page"]
    hop = LOGIN_PAGES.index(page)
    if hop > 0:  # a hop in front of the real page, relative as well
        back = quote(request.query.get("ReturnUrl", ""), safe="")
        target = f"{_prefix(request, IDENTITY)}/{LOGIN_PAGES[hop - 1]}?ReturnUrl={back}"
        return _redirect(target, 301)
    if not _return_url_ok(request, request.query.get("ReturnUrl", "")):
        return _rejected_page()
    et = _et(request)
    browser_id = request.cookies.get(ANTIFORGERY_COOKIE, "")
    fresh = browser_id not in et.browsers
    if fresh:
        browser_id = "CfDJ8" + b64url(et.rng.randbytes(48))
        et.browsers[browser_id] = Browser(request.match_info["broker"], et.settings.captcha_after_failures == 0)
    browser = et.browsers[browser_id]
    response = _login_page(request, browser_id, None, browser.captcha_needed)
    if fresh:
        response.headers.add("Set-Cookie", _cookie(request, ANTIFORGERY_COOKIE, browser_id))
    return response


def _captcha_error(request: web.Request, form: Any, browser_id: str) -> str | None:
    """The captcha's Persian marker when the post's captcha is missing or wrong; each instance answers once."""
    et, now_ns = _et(request), _state(request).now_ns()
    typed = str(form.get("Captcha", "")).strip()
    instance = str(form.get(f"BDC_VCID_{CAPTCHA_ID}", ""))
    if not typed:
        return CAPTCHA_REQUIRED
    found = et.captchas.pop(instance, None)
    if (
        found is None
        or found.browser != browser_id
        or found.expires_ns <= now_ns
        or form.get(f"BDC_Hs_{CAPTCHA_ID}") != et.mac("hs", instance)
        or form.get(f"BDC_SP_{CAPTCHA_ID}") != et.mac("sp", instance)[:16]
        or f"BDC_BackWorkaround_{CAPTCHA_ID}" not in form
        or typed.upper() != found.answer.upper()
    ):
        return WRONG_CAPTCHA
    return None


async def login(request: web.Request) -> web.StreamResponse:
    """POST /Login?ReturnUrl=: antiforgery, then the captcha when one is due, then the credentials; 302 on success."""
    if (refused := _browser_refusal(request)) is not None:
        return refused
    if request.match_info["page"] != LOGIN_PAGES[0] or not _return_url_ok(request, request.query.get("ReturnUrl", "")):
        return _rejected_page()
    st, et = _state(request), _et(request)
    if request.content_type != "application/x-www-form-urlencoded":
        return web.Response(status=400)
    form = await request.post()
    browser_id = request.cookies.get(ANTIFORGERY_COOKIE, "")
    browser = et.browsers.get(browser_id)
    token = str(form.get("__RequestVerificationToken", ""))
    if browser is None or browser.broker != request.match_info["broker"] or token != "CfDJ8" + et.mac("af", browser_id):
        return web.Response(status=400)  # ASP.NET's antiforgery refusal: a bare 400
    username, password = form.get("Username"), form.get("Password")
    if form.get("button") != "login" or not isinstance(username, str) or not isinstance(password, str):
        return _login_page(request, browser_id, MISSING_FIELDS, browser.captcha_needed)
    request[USERNAME] = username
    broker = request.match_info["broker"]
    account = st.market.account(broker, username)
    if account is not None and (capped := _capped(request, account)) is not None:
        return capped
    after = et.settings.captcha_after_failures
    key = (broker, username)
    due = browser.captcha_needed or after == 0 or et.failures.get(key, 0) >= after
    if due and (wrong := _captcha_error(request, form, browser_id)) is not None:
        browser.captcha_needed = True
        return _login_page(request, browser_id, wrong, True)
    if account is None or password != account.password or form.get("RememberLogin") not in ("false", "true"):
        et.failures[key] = et.failures.get(key, 0) + 1
        browser.captcha_needed = browser.captcha_needed or (after > 0 and et.failures[key] >= after) or after == 0
        return _login_page(request, browser_id, WRONG_CREDENTIALS, browser.captcha_needed)
    et.failures.pop(key, None)
    browser.captcha_needed = after == 0
    sid = f"{et.rng.getrandbits(128):032X}"
    et.logins[sid] = LoginSession(broker, username, st.now_ns() + 14 * 86_400 * 10**9)
    response = _redirect(request.query["ReturnUrl"])  # an empty body [confirmed live]
    response.headers.add("Set-Cookie", _cookie(request, LOGIN_COOKIE, sid))
    response.headers.add("Set-Cookie", _cookie(request, SESSION_COOKIE, et.mac("session", sid)[:32]))
    return response


async def captcha(request: web.Request) -> web.StreamResponse:
    """GET BotDetectCaptcha.ashx?get=image&c=OLoginCaptcha&t=: the JPEG, only with the page's cookie."""
    if (refused := _browser_refusal(request)) is not None:
        return refused
    st, et, query = _state(request), _et(request), request.query
    found = et.captchas.get(query.get("t", ""))
    if (
        query.get("get") != "image"
        or query.get("c") != CAPTCHA_ID
        or found is None
        or found.browser != request.cookies.get(ANTIFORGERY_COOKIE)
        or found.expires_ns <= st.now_ns()
    ):
        return web.Response(status=400, text="Invalid captcha request")
    body = b""
    if not request.get(NO_IMAGE):
        body = render_captcha(found.answer, "jpeg", random.Random(query["t"]))
        st.captchas.showed(body, found.answer)
    return web.Response(body=body, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


# ---- 5. the token exchange ---------------------------------------------------------------------------------
def _oauth_error(error: str, status: int = 400) -> web.Response:
    return json_response({"error": error}, status=status, headers={"Cache-Control": "no-store"})


async def token(request: web.Request) -> web.StreamResponse:
    """POST /connect/token: the code, once, for the redirect_uri it was issued for, with the PKCE verifier."""
    if (refused := _browser_refusal(request)) is not None:
        return refused
    if request.content_type != "application/x-www-form-urlencoded":
        return _oauth_error("invalid_request")
    st, et = _state(request), _et(request)
    form = await request.post()
    if form.get("client_id") != CLIENT_ID:
        return _oauth_error("invalid_client")
    if form.get("grant_type") != "authorization_code":
        return _oauth_error("unsupported_grant_type")
    grant = et.grants.get(str(form.get("code", "")))
    account = st.market.account(grant.broker, grant.username) if grant is not None else None
    if grant is None or account is None or grant.broker != request.match_info["broker"]:
        return _oauth_error("invalid_grant")
    if (capped := _capped(request, account)) is not None:
        return capped
    verifier = str(form.get("code_verifier", ""))
    now_ns = st.now_ns()
    if (
        grant.used
        or grant.expires_ns <= now_ns
        or form.get("redirect_uri") != grant.redirect_uri
        or not _VERIFIER.match(verifier)
        or not hmac.compare_digest(pkce_challenge(verifier), grant.challenge)
    ):
        grant.used = True  # a code is tried once, right or wrong
        return _oauth_error("invalid_grant")
    grant.used = True
    now_s, ttl = now_ns // 10**9, et.settings.token_ttl_s
    jti = f"{et.rng.getrandbits(128):032X}"
    claims = {
        "sub": account.username,
        "broker": account.broker,
        "client_id": CLIENT_ID,
        "scope": grant.scope.split(" "),
        "gen": account.token_generation,
        "jti": jti,
        "iat": now_s,
        "nbf": now_s,
        "exp": now_s + ttl,
    }
    id_claims = {"sub": account.username, "aud": CLIENT_ID, "iat": now_s, "exp": now_s + 300}
    body = {
        "id_token": et.jwt(id_claims),
        "access_token": et.jwt(claims),
        "expires_in": ttl,
        "token_type": "Bearer",
        "scope": grant.scope,
    }
    return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


# ---- the trading API ---------------------------------------------------------------------------------------
def _bearer(request: web.Request) -> tuple[Account, dict[str, Any]] | web.Response:
    """The account of a valid Bearer (after the WAF's browser checks), counted against the cap; or the refusal."""
    if (refused := _browser_refusal(request)) is not None:
        return refused
    st, et = _state(request), _et(request)
    if et.settings.require_referer and not request.headers.get("Referer", "").startswith(spa_url(request) + "/"):
        return web.Response(status=403, text="<html><body>Request Rejected</body></html>", content_type="text/html")
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    claims = et.claims(value) if scheme == "Bearer" else None
    account = st.market.account(str(claims.get("broker")), str(claims.get("sub"))) if claims else None
    if (
        claims is None
        or account is None
        or account.broker != request.match_info["broker"]
        or claims.get("gen") != account.token_generation
        or int(claims.get("exp", 0)) <= st.now_ns() // 10**9
    ):
        return web.Response(status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if (capped := _capped(request, account)) is not None:
        return capped
    return account, claims


def authenticated(request: web.Request) -> Account | web.Response:
    """The account of a valid Bearer whose token called same-login; 403 "You do not have permission" before it."""
    found = _bearer(request)
    if isinstance(found, web.Response):
        return found
    account, claims = found
    if claims.get("jti") not in _et(request).registered:
        return web.Response(status=403, text=FORBIDDEN)
    return account


def _problem(errors: dict[str, str]) -> web.Response:
    """ASP.NET's validation answer for a body of the wrong shape."""
    body = {
        "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": {k: [v] for k, v in errors.items()},
    }
    return web.Response(body=orjson.dumps(body), status=400, content_type="application/problem+json")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def same_login(request: web.Request) -> web.StreamResponse:
    """POST same-login: registers this token's device; 200 with an empty body [confirmed live]."""
    found = _bearer(request)
    if isinstance(found, web.Response):
        return found
    _, claims = found
    body = await read_json(request)
    shape = {"uuid": str, "appBuildNo": str, "devicePlatform": str, "platformInfo": str}
    if not isinstance(body, dict):
        return _problem({"": "A non-empty request body is required."})
    wrong = {k: f"The {k} field is required." for k, kind in shape.items() if not isinstance(body.get(k), kind)}
    wrong |= {k: f"The {k} field must be a number." for k in ("width", "height") if not _is_int(body.get(k))}
    if wrong:
        return _problem(wrong)
    _et(request).registered.add(str(claims.get("jti")))
    return web.Response(status=200)


async def user_info(request: web.Request) -> web.StreamResponse:
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    u = account.username
    body = {
        "name": "کاربر",
        "family": f"آزمایشی {u[-3:]}",
        "gender": 1,
        "bourseCode": f"مفی{u[-5:]}",
        "mobile": f"0912***{u[-4:]}",
        "email": None,
    }
    return json_response(body)


async def server_time(request: web.Request) -> web.StreamResponse:
    """GET server-time/{local_ms}: `serverTimestamp` the simulator's (skewed) epoch ms, `diff` against the caller's."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    raw = request.match_info["local_ms"]
    if not _DIGITS.match(raw):
        return _problem({"localTime": f"The value '{raw}' is not valid."})
    server_ms = _state(request).now_ns() // 1_000_000
    diff = server_ms - int(raw)
    if _et(request).settings.diff_sign == "local_minus_server":
        diff = -diff
    return json_response({"diff": diff, "serverTimestamp": server_ms})


async def money(request: web.Request) -> web.StreamResponse:
    """GET /core/api/money/: `buyPower` is what an order may spend (rial); the rest are there as live."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    st = _state(request)
    blocked = sum(o.charged for o in st.market.live_orders_of(account, st.now_ns(), st.open_ns()))
    return json_response(
        {
            "balance": account.remain + blocked,
            "buyPower0": account.buying_power,
            "buyPower1": account.buying_power,
            "buyPower": account.buying_power,
            "blocked": blocked,
            "credit": account.credit,
            "avandCredit": 0,
        }
    )


async def portfolio(request: web.Request) -> web.StreamResponse:
    """GET /core/api/portfolio/true: a row per instrument held (`asset` the quantity); none means 0."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    if account.holdings_error is not None:
        request[ERROR_CODE] = INVALID_REQUEST
        return json_response({"isSuccessful": False, "error": account.holdings_error}, status=500)
    instruments = _state(request).market.instruments
    rows = [
        {
            "isin": isin,
            "symbol": instruments[isin].symbol if isin in instruments else isin,
            "asset": volume,
            "lastPrice": instruments[isin].last if isin in instruments else 0,
        }
        for isin, volume in account.holdings.items()
        if volume > 0
    ]
    return json_response({"portfolioItems": rows})


def _create_date(created_ns: int, fmt: str) -> str:
    moment = created_at(created_ns)
    if fmt == "jalali":
        return jdatetime.datetime.fromgregorian(datetime=moment).strftime("%Y/%m/%d %H:%M:%S")
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds")


def order_row(et: EasytraderState, order: Order, done: Execution) -> dict[str, Any]:
    """A /core/api/order row with what `order` executed: `executedQuantity`, one `trades` entry per trade."""
    executed = done.quantity
    if order.state == CANCELLED:
        state = CANCELED
    elif executed >= order.volume:
        state = EXECUTED
    else:
        state = PARTIAL if executed else ON_BOARD
    trades = [{"price": t.price, "quantity": t.quantity} for t in done.trades]
    return {
        "id": et.order_id(order),
        "symbolIsin": order.isin,
        "symbolName": order.symbol,
        "price": order.price,
        "quantity": order.volume,
        "executedQuantity": executed,
        "side": SIDE_CODES[order.side],
        "orderStateStr": state,
        "validityType": 0,
        "createDateTime": _create_date(order.created_ns, et.settings.create_date_format),
        "trades": trades,
    }


async def orders(request: web.Request) -> web.StreamResponse:
    """GET /core/api/order: the account's orders of today (Tehran, simulator clock), newest first; no filter."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    st, et = _state(request), _et(request)
    today = created_at(st.now_ns()).date()
    mine = [o for o in st.market.orders_of(account) if o.day == today]
    mine.sort(key=lambda o: (o.created_ns, o.row_id), reverse=True)
    return json_response({"orders": [order_row(et, o, st.execution(o)) for o in mine], "algoSuffixCharacters": "ـ"})


async def drafts_list(request: web.Request) -> web.StreamResponse:
    """GET /easy/api/draft: permission-gated, 403 even after same-login [confirmed live]."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    return web.Response(status=403, text=FORBIDDEN)


async def today_activities(request: web.Request) -> web.StreamResponse:
    """GET /core/api/v2/order/today-activities: 403 [confirmed live]."""
    return await drafts_list(request)


def parse_draft(body: Any) -> OrderRequest | dict[str, str]:
    """A draft body as easytrader-api.md gives it (price and quantity integers); the field errors otherwise."""
    draft = body.get("draft") if isinstance(body, dict) else None
    if not isinstance(draft, dict):
        return {"draft": "The draft field is required."}
    errors: dict[str, str] = {}
    for name in ("symbolIsin", "symbolName"):
        if not isinstance(draft.get(name), str) or not draft[name]:
            errors[f"draft.{name}"] = f"The {name} field is required."
    for name in ("price", "quantity"):
        if not _is_int(draft.get(name)) or draft[name] <= 0:
            errors[f"draft.{name}"] = f"The JSON value could not be converted to System.Int64 ({name})."
    if not _is_int(draft.get("side")) or draft["side"] not in SIDES:
        errors["draft.side"] = "The side field is not valid."
    if not _is_int(draft.get("validityType")) or draft["validityType"] != 0:
        errors["draft.validityType"] = "The validityType field is not valid."
    if draft.get("validityDate") is not None:
        errors["draft.validityDate"] = "validityDate must be null for a day order."
    if errors:
        return errors
    return OrderRequest(draft["symbolIsin"], SIDES[draft["side"]], draft["price"], draft["quantity"], validity=0)


async def create_draft(request: web.Request) -> web.StreamResponse:
    """POST /easy/api/draft: stores the draft (no market rule yet: those apply to the batch); answers its ULID."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    st, et = _state(request), _et(request)
    body = await read_json(request)
    parsed = parse_draft(body)
    if isinstance(parsed, dict):
        return _problem(parsed)
    now_ns = st.now_ns()
    draft_id = et.ulid(now_ns)
    name = body["draft"]["symbolName"]
    et.drafts[draft_id] = Draft(
        draft_id, account.broker, account.username, parsed.isin, name, parsed.price, parsed.volume, parsed.side, now_ns
    )
    return json_response({"id": draft_id})


async def delete_draft(request: web.Request) -> web.StreamResponse:
    """DELETE /easy/api/draft/{id}: the simulator's assumption for replacing a draft (the doc names no such call)."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    et, draft_id = _et(request), request.match_info["draft_id"]
    draft = et.drafts.get(draft_id)
    if draft is None or (draft.broker, draft.username) != (account.broker, account.username):
        return web.Response(status=404)
    del et.drafts[draft_id]
    return web.Response(status=200)


def _refused(request: web.Request, codes: list[int]) -> web.Response:
    request[ERROR_CODE] = codes[0]
    body = {
        "isSuccessful": False,
        "error": None,
        "omsError": [{"code": code, "message": MESSAGES.get(code, "خطا")} for code in codes],
    }
    return json_response(body, status=_et(request).settings.rejection_status)


def _too_soon(et: EasytraderState, account: Account, monotonic_ns: int) -> bool:
    spacing_ms = et.settings.order_spacing_ms
    key = (account.broker, account.username)
    previous = et.last_order_ns.get(key)
    et.last_order_ns[key] = monotonic_ns
    return spacing_ms > 0 and previous is not None and monotonic_ns - previous < spacing_ms * 1_000_000


def _place(request: web.Request, account: Account, order: OrderRequest, now_ns: int) -> Order | int:
    st = _state(request)
    refusal = st.market.check_order(account, order)
    if refusal is not None:
        return REFUSAL_CODES[refusal]
    return st.market.accept(account, order, now_ns)


async def batch_create(request: web.Request) -> web.StreamResponse:
    """POST /core/api/order/batchCreate: each draft is placed if the market takes it, in the order given.

    The answer is a JSON array of one new id per placed order (not the book order's id); when none is placed it is
    `{"isSuccessful": false, "omsError": [...]}`, one entry per draft (8706 before the open). The drafts stay unless
    `removeDraftAfterCreate`, so the same batch sent again places another order while buying power allows.
    """
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    st, et = _state(request), _et(request)
    body = await read_json(request)
    ids = body.get("draftIds") if isinstance(body, dict) else None
    errors: dict[str, str] = {}
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        errors["draftIds"] = "The draftIds field is required."
    if not isinstance(body, dict) or not isinstance(body.get("removeDraftAfterCreate"), bool):
        errors["removeDraftAfterCreate"] = "The removeDraftAfterCreate field is required."
    if not isinstance(body, dict) or not _is_int(body.get("orderFrom")):
        errors["orderFrom"] = "The orderFrom field is required."
    if errors:
        return _problem(errors)
    now_ns = st.now_ns()
    too_soon = _too_soon(et, account, st.clock.monotonic_ns())
    if not st.is_open(now_ns):
        return _refused(request, [MARKET_CLOSED] * len(ids))
    if too_soon:
        return _refused(request, [TOO_SOON] * len(ids))
    today = created_at(now_ns).date()
    placed: list[str] = []
    codes: list[int] = []
    for draft_id in ids:
        draft = et.drafts.get(draft_id)
        if (
            draft is None
            or (draft.broker, draft.username) != (account.broker, account.username)
            or created_at(draft.created_ns).date() != today  # drafts are day-valid [LOG]
        ):
            codes.append(UNKNOWN_DRAFT)
            continue
        order = OrderRequest(draft.isin, draft.side, draft.price, draft.quantity, validity=0)
        result = _place(request, account, order, now_ns)
        if isinstance(result, int):
            codes.append(result)
            continue
        answer_id = et.ulid(now_ns)
        et.batch_ids[answer_id] = (result.broker, result.serial_number)
        et.order_id(result)
        placed.append(answer_id)
        if body["removeDraftAfterCreate"]:
            del et.drafts[draft_id]
    if not placed:
        return _refused(request, codes)
    request[ERROR_CODE] = 0
    return json_response(placed)


def parse_v2_order(body: Any) -> OrderRequest | None:
    """The single order's body [from code only]: price and quantity as digit strings, unlike the draft's."""
    order = body.get("order") if isinstance(body, dict) else None
    if not isinstance(order, dict):
        return None
    price, quantity, side = order.get("price"), order.get("quantity"), order.get("side")
    if not (isinstance(price, str) and _DIGITS.match(price) and isinstance(quantity, str) and _DIGITS.match(quantity)):
        return None
    if not _is_int(side) or side not in SIDES or not isinstance(order.get("symbolIsin"), str):
        return None
    if not _is_int(order.get("orderFrom")) or order.get("validityType") != 0 or not _is_int(order.get("validityType")):
        return None
    return OrderRequest(order["symbolIsin"], SIDES[side], int(price), int(quantity), validity=0)


async def new_order(request: web.Request) -> web.StreamResponse:
    """POST /core/api/v2/order: closed (8706), spacing, the body (1000), then the market's rules."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    st, et = _state(request), _et(request)
    order = parse_v2_order(await read_json(request))
    now_ns = st.now_ns()
    too_soon = _too_soon(et, account, st.clock.monotonic_ns())
    if not st.is_open(now_ns):
        return _refused(request, [MARKET_CLOSED])
    if too_soon:
        return _refused(request, [TOO_SOON])
    if order is None:
        return _refused(request, [INVALID_REQUEST])
    result = _place(request, account, order, now_ns)
    if isinstance(result, int):
        return _refused(request, [result])
    request[ERROR_CODE] = 0
    return json_response({"isSuccessful": True, "error": None, "omsError": [], "id": et.order_id(result)})


# ---- the platform ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EasytraderSim:
    """easytrader's identity server and trading API on the shared app, and the daemon's config keys."""

    name: str = NAME
    title: str = "easytrader"
    routes: tuple[str, ...] = (
        "authorize",
        "login_page",
        "login",
        "captcha",
        "token",
        "same_login",
        "user_info",
        "server_time",
        "money",
        "holdings",
        "orders",
        "draft",
        "drafts",
        "draft_delete",
        "batch",
        "new_order",
        "activities",
    )
    reserved: frozenset[str] = field(default_factory=frozenset)

    def add_routes(self, app: web.Application) -> None:
        pages = "|".join(re.escape(p) for p in LOGIN_PAGES)
        oauth, mts = f"/{{broker}}/{IDENTITY}", f"/{{broker}}/{API}"
        for method, path, handler, route in (
            ("GET", oauth + "/connect/authorize{callback:(/callback)?}", authorize, "authorize"),
            ("GET", oauth + f"/{{page:({pages})}}", login_page, "login_page"),
            ("POST", oauth + f"/{{page:({pages})}}", login, "login"),
            ("GET", oauth + "/BotDetectCaptcha.ashx", captcha, "captcha"),
            ("POST", oauth + "/connect/token", token, "token"),
            ("POST", mts + "/easy/api/account/same-login", same_login, "same_login"),
            ("GET", mts + "/easy/api/account/user-info", user_info, "user_info"),
            ("GET", mts + "/easy/api/account/server-time/{local_ms}", server_time, "server_time"),
            ("GET", mts + "/core/api/money/", money, "money"),
            ("GET", mts + "/core/api/portfolio/true", portfolio, "holdings"),
            ("GET", mts + "/core/api/order", orders, "orders"),
            ("POST", mts + "/easy/api/draft", create_draft, "draft"),
            ("GET", mts + "/easy/api/draft", drafts_list, "drafts"),
            ("DELETE", mts + "/easy/api/draft/{draft_id}", delete_draft, "draft_delete"),
            ("POST", mts + "/core/api/order/batchCreate", batch_create, "batch"),
            ("POST", mts + "/core/api/v2/order", new_order, "new_order"),
            ("GET", mts + "/core/api/v2/order/today-activities", today_activities, "activities"),
        ):
            add_route(app, self.name, method, path, handler, route)

    def broker_config(self, base_url: str, code: str) -> dict[str, str]:
        """`url`: the trading API host (https://api-mts.orbis.easytrader.ir); `identity_url`: the identity server
        (https://login.emofid.com); `spa_url`: the SPA origin (https://d.easytrader.ir), whose `/auth-callback` is
        the redirect_uri and whose `/` is the Referer; `rlc_url`: RLC's base, as for Exir."""
        prefix = f"{base_url}/{code}"
        return {
            "platform": self.name,
            "url": f"{prefix}/{API}",
            "identity_url": f"{prefix}/{IDENTITY}",
            "spa_url": f"{prefix}/{SPA}",
            "rlc_url": f"{base_url}{rlc.PREFIX}",
        }


PLATFORM = register_platform(EasytraderSim())
