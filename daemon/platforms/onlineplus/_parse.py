"""Online+'s answers read into the project's models (pure, so each quirk of onlineplus-api.md is tested without a
network), the tenant's addresses, and the opaque token that carries one login's cookie session to the cache and
to the hot path."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from daemon.errors import BrokerError, BrokerUnavailable
from daemon.platforms._cookies import cookie_header, read_triples
from daemon.platforms._cookies import path_matches as path_matches  # importable here, as before
from daemon.platforms._models import BrokerOrder, BuyingPower, Holding, finite, whole

# re-exported (sessions and tests import them here); OrderTime is Tehran wall time
from daemon.platforms._tehran import TEHRAN as TEHRAN
from daemon.platforms._tehran import jalali as jalali
from daemon.platforms._tehran import jalali_wall_time

FALLBACK_FEE = 0.005
"""The buy fee sizing assumes when `brokers.<code>.fee` is not given: the platform has no fee endpoint, and 0.005
is above the usual 0.3712 %, so it under-sizes (onlineplus-api.md, Fees and volume)."""
SESSION_LIFETIME_S = 600.0
"""The login says nothing of its lifetime; the reference bot logs in again after 600 s [from code only]."""
SIDE_NAMES = {1: "buy", 2: "sell"}
SIDE_LETTERS = {"خ": 1, "ف": 2}  # خرید buy, فروش sell: the first letter, whatever the yeh
TOKEN_PLATFORM = "onlineplus"
TOKEN_VERSION = 1

# MessageCode values, compared upper-cased (the login's is written `oms_1000`, the others upper-case).
WRONG_CREDENTIALS = "OMS_1000"  # [confirmed live]: never retried
WRONG_CAPTCHA = "INVALIDCAPTCHA"  # [confirmed live]: a new captcha
RATE_LIMIT = "OMS_2080"  # [listed]: back off (a login waits like an Ephoenix 429; an order retries after spacing)
CANCELLED_WORDS = frozenset({"لغو", "حذف", "منقضی", "رد"})
"""Whole words of a row's `OrderState` text read as "the broker ended it" (cancelled, deleted, expired, rejected):
the document knows no values but "1" in the request (open question 4), so this is assumed."""
MARKET_CLOSED = "OMS_8018"  # [listed]: the order is early, retried on the plan's next slot

_API_BASE = re.compile(r"""ApiBaseURl\s*=\s*(['"])(.*?)\1""", re.IGNORECASE)
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.IGNORECASE)


# ---- the tenant's addresses ---------------------------------------------------------------------------------


def is_domain(value: str) -> bool:
    """A bare domain (`hafezbroker.ir`): no scheme, path, port or space."""
    return bool(_DOMAIN.match(value))


@dataclass(frozen=True, slots=True)
class Tenant:
    """One broker's Online+ addresses: the web root (its login page names the API base), the configured API base
    that always wins, and the API base used when the page names none."""

    web: str
    api_override: str | None
    fallback_api: str

    @property
    def origin(self) -> str:
        """The web host's origin, sent as `Origin` on every call (`https://online.{d}`)."""
        parts = urlsplit(self.web)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def referer(self) -> str:
        return self.web + "/"

    def api(self, discovered: str | None) -> str:
        """The API base: the configured one, else what the login page named, else the fallback."""
        return self.api_override or discovered or self.fallback_api


def tenant_of(code: str, url: str | None, domain: str | None, api_url: str | None) -> Tenant:
    """The tenant from `brokers.<code>`: `url` (the web root) or `https://online.{domain}`, the domain defaulting to
    `{code}broker.ir` (dnovin's is `dnovinbr.ir`: it does not follow one pattern, so give it). Without a page naming
    the API base, it is `https://api.{domain}`, or the web root's `online.` host made `api.`, or (the simulator's
    layout, two sibling prefixes on one host) its last path segment `online` made `api`."""
    web = (url or f"https://online.{domain or code + 'broker.ir'}").rstrip("/")
    if domain:
        fallback = f"https://api.{domain}"
    else:
        parts = urlsplit(web)
        host = parts.hostname or ""
        netloc = parts.netloc
        path = parts.path
        if host.startswith("online."):
            netloc = netloc.replace("online.", "api.", 1)
        elif path.rsplit("/", 1)[-1] == "online":
            path = path[: -len("online")] + "api"
        else:
            netloc = "api." + netloc
        fallback = urlunsplit((parts.scheme, netloc, path, "", ""))
    return Tenant(web, api_url.rstrip("/") if api_url else None, fallback.rstrip("/"))


def api_base_from_page(html: str) -> str | None:
    """`var ApiBaseURl = '<url>'` of the login page (any casing, single or double quotes), less a trailing `/`;
    None when the page names none or something that is not an http(s) URL [confirmed live on both tenants]."""
    found = _API_BASE.search(html)
    if found is None:
        return None
    base = found.group(2).strip().rstrip("/")
    return base if re.match(r"^https?://[^/\s]+", base) else None


# ---- the token ---------------------------------------------------------------------------------------------


class TokenUnreadable(ValueError):
    """A token value that is not an Online+ session (from another platform or a damaged cache entry)."""


@dataclass(frozen=True, slots=True)
class OnlinePlusToken:
    """One login's session: the API base it was made on and the API host's cookies (name, value, path; two may
    share a name, F5's `f5avr..._session_` on `/` and `/Web`). The cookies are the only credential: the login's
    `Data.Token` is never sent (a Bearer header is refused)."""

    api: str
    cookies: tuple[tuple[str, str, str], ...]

    def pack(self) -> str:
        """Compact JSON: the cache seals it like any token, the codec reads it back."""
        data = {"p": TOKEN_PLATFORM, "v": TOKEN_VERSION, "api": self.api, "c": [list(c) for c in self.cookies]}
        return orjson.dumps(data).decode()

    @classmethod
    def unpack(cls, value: str) -> OnlinePlusToken:
        try:
            data = orjson.loads(value)
        except (orjson.JSONDecodeError, TypeError):
            raise TokenUnreadable("the token is not an Online+ session") from None
        if not isinstance(data, dict) or data.get("p") != TOKEN_PLATFORM or data.get("v") != TOKEN_VERSION:
            raise TokenUnreadable("the token is not an Online+ session")
        api, cookies = data.get("api"), read_triples(data.get("c"))
        if not isinstance(api, str) or not api.startswith(("http://", "https://")) or cookies is None:
            raise TokenUnreadable("the token is not an Online+ session")
        return cls(api, cookies)

    def cookie_header(self, request_path: str) -> str:
        """The Cookie header for `request_path`: F5's cookie of the most specific path, as the jar sends it."""
        return cookie_header(self.cookies, request_path)


# ---- the envelope, the captcha, the login -------------------------------------------------------------------


def message_code(body: Any) -> str | None:
    """The answer's `MessageCode` upper-cased for comparing (None when absent): what decisions key on, never the
    Persian `MessageDesc`."""
    value = body.get("MessageCode") if isinstance(body, dict) else None
    return value.strip().upper() if isinstance(value, str) and value.strip() else None


def raw_code(body: Any) -> str | None:
    """`MessageCode` as the server wrote it, for the journal and the report."""
    value = body.get("MessageCode") if isinstance(body, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def message_text(body: Any) -> str:
    """The broker's own words (`MessageDesc`, usually Persian), as they are."""
    value = body.get("MessageDesc") if isinstance(body, dict) else None
    return value.strip() if isinstance(value, str) else ""


def succeeded(body: Any) -> bool:
    """`IsSuccessfull` (double l) is true: success is this, never the HTTP status."""
    return isinstance(body, dict) and body.get("IsSuccessfull") is True


def accepts_answer(answer: str) -> bool:
    """Whether a captcha answer may be posted: exactly four ASCII digits (a leading 0 is fine: a string)."""
    return len(answer) == 4 and answer.isascii() and answer.isdigit()


def parse_captcha(body: Any) -> tuple[bytes, str] | None:
    """`Data.Captcha` (base64 PNG) decoded and `Data.CaptchaKey`; None when the image is missing (throttled)."""
    data = body.get("Data") if isinstance(body, dict) else None
    image, key = (data.get("Captcha"), data.get("CaptchaKey")) if isinstance(data, dict) else (None, None)
    if not isinstance(image, str) or not image or not isinstance(key, str) or not key:
        return None
    try:
        return base64.b64decode(image, validate=True), key
    except (binascii.Error, ValueError):
        return None


def blocked_reason(data: Mapping[str, Any]) -> str | None:
    """Why an account cannot be used although its password is right (one sentence), or None: SMS/OTP on, or a
    password the broker wants changed [from code only]; such an account is reported, never retried."""
    second_factor = data.get("ActiveOtp") is True or data.get("ActiveSms") is True
    change = data.get("MustChangePassword") is True
    if second_factor and change:
        return (
            "the broker has SMS/OTP login on for this account and wants its password changed; turn the second "
            "factor off and change the password at the broker's site, then update the config"
        )
    if second_factor:
        return (
            "the broker has SMS/OTP login on for this account, which the daemon cannot answer; turn it off at the "
            "broker's site"
        )
    if change:
        return "the broker wants this account's password changed; change it at the broker's site and update the config"
    return None


def jwt_exp(token: Any) -> float | None:
    """A JWT's `exp` claim, read without verifying; None for anything else (Data.Token's shape is unrecorded)."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return finite(claims.get("exp")) if isinstance(claims, dict) else None


def login_lifetime_s(data: Mapping[str, Any], cookie_max_age_s: float | None, now: datetime) -> float:
    """How long the session lives: 600 s, unless the server says less (the auth cookie's Max-Age, or Data.Token's
    `exp` if it is a JWT); never more, since nothing known says the server keeps it longer."""
    candidates = [SESSION_LIFETIME_S]
    if cookie_max_age_s is not None and cookie_max_age_s > 0:
        candidates.append(cookie_max_age_s)
    exp = jwt_exp(data.get("Token"))
    if exp is not None:
        candidates.append(exp - now.timestamp())
    return min(candidates)


# ---- reads ---------------------------------------------------------------------------------------------------


def read_failure(body: Any, what: str, broker: str) -> Exception | None:
    """The error a read's `IsSuccessfull: false` stands for: OMS_2080 is a rate limit (retried after a back-off),
    any other code an answer (not retried); None when the body does not say it failed."""
    if not isinstance(body, dict) or body.get("IsSuccessfull") is not False:
        return None
    code, text = raw_code(body), message_text(body)
    if message_code(body) == RATE_LIMIT:
        return BrokerUnavailable(f"broker {broker}: {what} is rate limited (OMS_2080).")
    return BrokerError(f"broker {broker}: {what} refused with code {code}: {text or 'no reason given'}")


def parse_buying_power(body: Any, broker: str) -> BuyingPower:
    """Remain's `Data.PurchasingPower` [confirmed live], else `Data.AccountBalance` [from code only]."""
    data = body.get("Data") if isinstance(body, dict) else None
    amount = None
    if isinstance(data, dict):
        amount = finite(data.get("PurchasingPower"))
        if amount is None:
            amount = finite(data.get("AccountBalance"))
    if amount is None:
        raise BrokerUnavailable(f"broker {broker}: Remain has no usable PurchasingPower or AccountBalance.")
    remain = finite(data.get("AccountBalance")) if isinstance(data, dict) else None
    return BuyingPower(amount, remain=remain)


def parse_holding(body: Any, isin: str, broker: str) -> Holding:
    """RealtimePortfolio's row for `isin` (`SymbolISIN` here, `SymbolIsin` elsewhere: both read): `RemainQuantity`,
    truncated; no row is 0 shares. An answer without a `Data` list is unreadable, never "nothing held"."""
    rows = body.get("Data") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise BrokerUnavailable(f"broker {broker}: RealtimePortfolio answered without a Data list.")
    for row in rows:
        if isinstance(row, dict) and isin in (row.get("SymbolISIN"), row.get("SymbolIsin")):
            amount = finite(row.get("RemainQuantity"))
            return Holding(isin, max(int(amount or 0), 0))
    return Holding(isin, 0)


def orders_page(body: Any, broker: str) -> tuple[list[dict[str, Any]], int | None]:
    """GetOrderList's `Data.Result` rows and `Data.TotalRecord`; anything else raises: unreadable is never
    "no orders"."""
    data = body.get("Data") if isinstance(body, dict) else None
    rows = data.get("Result") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BrokerUnavailable(f"broker {broker}: GetOrderList answered without a list of orders.")
    return rows, whole(data.get("TotalRecord"))  # type: ignore[union-attr]


def order_time(day: Any, clock_time: Any) -> datetime | None:
    """`OrderDate` (Jalali `YYYY/MM/DD`) and `OrderTime` (`HH:mm:ss`, Tehran) as an aware datetime; None when either
    is unreadable."""
    if not isinstance(day, str) or not isinstance(clock_time, str):
        return None
    try:
        y, m, d = (int(x) for x in day.strip().split("/"))
        hh, mm, ss = (int(x) for x in clock_time.strip().split(":"))
        return jalali_wall_time(y, m, d, hh, mm, ss)
    except (ValueError, TypeError):
        return None


def side_of(name: Any) -> int | None:
    """1 buy, 2 sell from `OrderSide`'s first letter; None when unreadable (then the order may be ours)."""
    return SIDE_LETTERS.get(name.strip()[:1]) if isinstance(name, str) else None


def broker_order(row: dict[str, Any]) -> BrokerOrder:
    """A GetOrderList row as the project's model, over a row normalised to the keys matching reads (`isin`, `side`
    1/2, `serialNumber` = OrderId (the account's sequence of that day), `volume` = Quantity, `executedVolume` =
    ExcutedAmount (sic), `remaining`, `filled` = ExcutedAmount > 0, `created` from OrderDate and OrderTime), plus
    Online+'s own fields. No average price: the list has no traded value or price (onlineplus-api.md); cancelled
    when `OrderState` names a cancel, an expiry or a rejection (`CANCELLED_WORDS`, assumed) short of a full fill."""
    isin = next((row[k] for k in ("SymbolIsin", "SymbolISIN") if isinstance(row.get(k), str)), None)
    side = side_of(row.get("OrderSide"))
    serial = whole(row.get("OrderId"))
    volume, executed, price = whole(row.get("Quantity")), whole(row.get("ExcutedAmount")), whole(row.get("OrderPrice"))
    remaining = volume - executed if volume is not None and executed is not None else None
    created = order_time(row.get("OrderDate"), row.get("OrderTime"))
    norm = {
        **row,
        "isin": isin,
        "side": side,
        "serialNumber": serial,
        "trackingNumber": None,
        "price": price,
        "volume": volume,
        "executedVolume": executed,
        "remaining": remaining,
        "filled": bool(executed and executed > 0),
        "state": None,  # OrderState is Persian text whose values are unknown (open question 4): no numeric state
        "createdAt": f"{row.get('OrderDate')}-{row.get('OrderTime')}" if created is not None else None,
        "created": created,
    }
    state = row.get("OrderState")
    complete = volume is not None and executed is not None and executed >= volume
    return BrokerOrder(
        isin=isin,
        side=SIDE_NAMES.get(side) if side is not None else None,
        serial=serial,
        tracking=None,
        created=created,
        volume=volume,
        executed=executed,
        price=price,
        row=norm,
        cancelled=isinstance(state, str) and bool(CANCELLED_WORDS & set(state.split())) and not complete,
    )


def unique_orders(orders: Iterable[BrokerOrder]) -> list[BrokerOrder]:
    """One row per (OrderDate, OrderId) (the id is a per-account, per-day sequence), rows without one kept; the
    first seen wins."""
    seen: set[tuple[Any, int]] = set()
    kept = []
    for order in orders:
        if order.serial is not None:
            key = (order.row.get("OrderDate"), order.serial)
            if key in seen:
                continue
            seen.add(key)
        kept.append(order)
    return kept
