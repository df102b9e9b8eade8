"""easytrader's answers read into the project's models (pure, so each quirk of easytrader-api.md is tested without
a network): the identity server's HTML pages, the token, the reads, today's orders and server-time."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from html.parser import HTMLParser
from typing import Any

import orjson

from daemon.errors import BrokerUnavailable
from daemon.platforms._models import BrokerOrder, BuyingPower, Holding, finite, whole
from daemon.platforms._tehran import TEHRAN, jalali_wall_time  # a createDateTime without an offset: Tehran time

TOKEN_VERSION = 1
FALLBACK_FEE = 0.005  # no fee endpoint: buy volume = floor(buyPower / (price x 1.005)) [from code only]
SIDE_NAMES = {0: "buy", 1: "sell"}
PROJECT_SIDES = {0: 1, 1: 2}  # the normalised rows' side: 1 buy, 2 sell, as on every platform
CAPTCHA_ID = "OLoginCaptcha"
CAPTCHA_IMAGE_ID = f"{CAPTCHA_ID}_CaptchaImage"
ANTIFORGERY_FIELD = "__RequestVerificationToken"

# the login page's Persian markers [from code only: the decompiled client's], checked in this order
WRONG_CREDENTIALS = "نام کاربری یا کلمه عبور نادرست است"
WRONG_CAPTCHA = "کد امنیتی اشتباه است"
CAPTCHA_REQUIRED = "کد امنیتی را وارد کنید"
REJECTED = "رد درخواست"  # IdentityServer's "request rejected" page: abort the login
CLOSED_STATES = frozenset({"Executed", "Canceled", "Cancelled", "Expired", "Rejected", "Deleted"})
"""orderStateStr values taken as no longer open: only "OnBoard" (open) was seen live; these are guesses, and any
other text with something left counts as open (never "no open order" by mistake)."""
ENDED_STATES = frozenset(state.lower() for state in CLOSED_STATES - {"Executed"})
"""The closed states that mean the broker ended the order (cancelled, expired, rejected, deleted): guesses too."""


# ---- the token ---------------------------------------------------------------------------------------------


class TokenUnreadable(ValueError):
    """A token value that is not an easytrader login (another platform's, or a damaged cache entry)."""


@dataclass(frozen=True, slots=True)
class EasytraderToken:
    """One login: the Bearer access token (12 h), made only after its same-login succeeded."""

    access_token: str = field(repr=False)

    def pack(self) -> str:
        """Compact JSON with a version: the cache seals it like any token, the codec reads it back."""
        return orjson.dumps({"v": TOKEN_VERSION, "p": "easytrader", "a": self.access_token}).decode()

    @classmethod
    def unpack(cls, value: str) -> EasytraderToken:
        try:
            data = orjson.loads(value)
        except (orjson.JSONDecodeError, TypeError):
            raise TokenUnreadable("the token is not an easytrader login") from None
        if (
            not isinstance(data, dict)
            or data.get("v") != TOKEN_VERSION
            or data.get("p") != "easytrader"
            or not isinstance(data.get("a"), str)
            or not data["a"]
        ):
            raise TokenUnreadable("the token is not an easytrader login")
        return cls(data["a"])


# ---- the identity server's pages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginPage:
    """What a login page holds: the antiforgery token, the BotDetect block (when shown) and the error summary."""

    token: str | None
    captcha_image: str | None  # the image's src, HTML entities already decoded (relative)
    captcha_fields: dict[str, str]  # the four BDC_* hidden fields, to send back with the answer
    captcha_shown: bool
    errors: str  # the validation summary's text ("" when none)


class _PageReader(HTMLParser):
    """Inputs by name, the captcha image, and the text of `validation-summary-errors` (attributes in any order)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.inputs: dict[str, str] = {}
        self.names: set[str] = set()
        self.image: str | None = None
        self.errors: list[str] = []
        self._depth = 0  # >0 inside the error summary's div

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("name"):
            self.names.add(a["name"])
            self.inputs.setdefault(a["name"], a.get("value", ""))
        elif tag == "img" and a.get("id") == CAPTCHA_IMAGE_ID:
            self.image = a.get("src") or None
        if tag == "div":
            if self._depth:
                self._depth += 1
            elif "validation-summary-errors" in a.get("class", "").split():
                self._depth = 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.errors.append(data)


def read_login_page(html: str) -> LoginPage:
    reader = _PageReader()
    reader.feed(html)
    reader.close()
    shown = "Captcha" in reader.names or reader.image is not None
    fields = {k: v for k, v in reader.inputs.items() if k.startswith("BDC_") and k.endswith(f"_{CAPTCHA_ID}")}
    return LoginPage(
        token=reader.inputs.get(ANTIFORGERY_FIELD) or None,
        captcha_image=reader.image,
        captcha_fields=fields,
        captcha_shown=shown,
        errors=" ".join(" ".join(reader.errors).split()),
    )


def login_failure(page: LoginPage, html: str) -> str:
    """A failed credential post's meaning, by the Persian text, the credentials marker first: "wrong_credentials"
    (never retried), "wrong_captcha", "captcha_required" or "ambiguous" (load the page again and retry). The
    summary is read when there is one, the whole page otherwise."""
    text = page.errors or html
    if WRONG_CREDENTIALS in text:
        return "wrong_credentials"
    if WRONG_CAPTCHA in text:
        return "wrong_captcha"
    if CAPTCHA_REQUIRED in text:
        return "captcha_required"
    return "ambiguous"


def rejected(html: str) -> bool:
    """IdentityServer's "request rejected" page (easytrader-api.md steps 1 and 4: abort)."""
    return REJECTED in html


def token_answer(body: Any) -> tuple[str, float | None] | str:
    """The token exchange's (access_token, expires_in), or the OAuth `error` ("invalid_grant"...) as a string."""
    if not isinstance(body, dict):
        return "not JSON"
    token = body.get("access_token")
    if isinstance(token, str) and token and str(body.get("token_type", "Bearer")).lower() == "bearer":
        expires = finite(body.get("expires_in"))
        return token, expires if expires is not None and expires > 0 else None
    error = body.get("error")
    return error if isinstance(error, str) and error else "no access_token"


# ---- reads ---------------------------------------------------------------------------------------------------


def parse_money(body: Any, broker: str) -> BuyingPower:
    """money/'s `buyPower` (rial) [confirmed live]; balance and credit kept beside it."""
    amount = finite(body.get("buyPower")) if isinstance(body, dict) else None
    if amount is None:
        raise BrokerUnavailable(f"broker {broker}: money/ has no usable buyPower.")
    return BuyingPower(amount, remain=body.get("balance"), credit=body.get("credit"))


def parse_holding(body: Any, isin: str, broker: str) -> Holding:
    """portfolio/true's row for `isin`: `asset` is the quantity; no row is 0 shares. An answer without a
    `portfolioItems` list is unreadable, never "nothing held"."""
    rows = body.get("portfolioItems") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise BrokerUnavailable(f"broker {broker}: portfolio answered without portfolioItems.")
    for row in rows:
        if isinstance(row, dict) and row.get("isin") == isin:
            return Holding(isin, max(int(finite(row.get("asset")) or 0), 0))
    return Holding(isin, 0)


def order_rows(body: Any, broker: str) -> list[dict[str, Any]]:
    """The `orders` list of /core/api/order; anything else raises: unreadable is never "no orders"."""
    rows = body.get("orders") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BrokerUnavailable(f"broker {broker}: /core/api/order answered without a list of orders.")
    return rows


_JALALI = re.compile(r"^(1[34]\d\d)[/-](\d{1,2})[/-](\d{1,2})(?:[ T-](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")


def created_time(text: Any) -> datetime | None:
    """`createDateTime`, whose format was never seen (open question 8): ISO Gregorian (an offset kept, none is
    Tehran wall time) or Jalali `YYYY/MM/DD HH:MM[:SS]`; None when unreadable (then the order may be ours)."""
    if not isinstance(text, str) or not text.strip():
        return None
    raw = text.strip()
    found = _JALALI.match(raw)
    if found:
        y, m, d, hh, mm, ss, frac = found.groups()
        try:
            micro = int((frac or "0")[:6].ljust(6, "0"))
            return jalali_wall_time(int(y), int(m), int(d), int(hh or 0), int(mm or 0), int(ss or 0), micro)
        except ValueError:
            return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=TEHRAN)


def broker_order(row: dict[str, Any]) -> BrokerOrder:
    """An order row as the project's model, over a row normalised to the keys matching reads (`isin`, `side` 1/2,
    `serialNumber` None (ids are strings here), `trackingNumber` = the row's `id`, `volume`, `executedVolume`,
    `remaining`, `filled` = executedQuantity > 0, `state` None, `created`), plus easytrader's own fields."""
    isin = row.get("symbolIsin") if isinstance(row.get("symbolIsin"), str) else None
    code = row.get("side")
    side = code if isinstance(code, int) and not isinstance(code, bool) and code in SIDE_NAMES else None
    raw_id = row.get("id")
    tracking = str(raw_id) if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) and str(raw_id) else None
    volume, executed, price = whole(row.get("quantity")), whole(row.get("executedQuantity")), whole(row.get("price"))
    remaining = volume - (executed or 0) if volume is not None else None
    created = created_time(row.get("createDateTime"))
    state = row.get("orderStateStr") if isinstance(row.get("orderStateStr"), str) else None
    norm = {
        **row,
        "isin": isin,
        "side": PROJECT_SIDES.get(side) if side is not None else None,
        "serialNumber": None,
        "trackingNumber": tracking,
        "price": price,
        "volume": volume,
        "executedVolume": executed,
        "remaining": remaining,
        "filled": bool(executed and executed > 0),
        "open": state not in CLOSED_STATES and (remaining is None or remaining > 0),
        "state": None,  # orderStateStr is text; only "OnBoard" is known
        "createdAt": row.get("createDateTime"),
        "created": created,
    }
    complete = volume is not None and executed is not None and executed >= volume
    return BrokerOrder(
        isin=isin,
        side=SIDE_NAMES.get(side) if side is not None else None,
        serial=None,
        tracking=tracking,
        created=created,
        volume=volume,
        executed=executed,
        price=price,
        row=norm,
        average_price=trades_average(row.get("trades"), executed),
        cancelled=state is not None and state.strip().lower() in ENDED_STATES and not complete,
    )


def trades_average(trades: Any, executed: int | None) -> float | None:
    """Rial per share over a row's `trades` ({price, quantity} each, as the simulator writes them: the live rows
    seen had none), when they are all readable and add up to `executedQuantity`; None otherwise."""
    if not isinstance(trades, list) or not trades or executed is None or executed <= 0:
        return None
    value = quantity = 0.0
    for trade in trades:
        price = finite(trade.get("price")) if isinstance(trade, dict) else None
        shares = whole(trade.get("quantity")) if isinstance(trade, dict) else None
        if price is None or price <= 0 or shares is None or shares <= 0:
            return None
        value, quantity = value + price * shares, quantity + shares
    return value / quantity if quantity == executed else None


def orders_of_day(orders: list[BrokerOrder], day: date, tz: Any = TEHRAN) -> list[BrokerOrder]:
    """The orders created on `day` (the broker's day): the list has no date filter. A row whose time cannot be
    read is kept: it may be today's, and an order of ours must never look absent."""
    return [o for o in orders if o.created is None or o.created.astimezone(tz).date() == day]


# ---- server-time ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerTime:
    """One server-time answer against the local instants around it (ms since the epoch)."""

    diff_ms: float | None
    server_ms: float | None


def parse_server_time(body: Any) -> ServerTime:
    if not isinstance(body, dict):
        return ServerTime(None, None)
    return ServerTime(finite(body.get("diff")), finite(body.get("serverTimestamp")))


def server_offset_ms(answer: ServerTime, sent_ms: int, before_ms: float, after_ms: float) -> tuple[float, str] | None:
    """broker - local in ms from one answer, and how it was read.

    `serverTimestamp` against the round trip's midpoint is the best reading when it is an epoch in ms (within a day
    of ours): then `diff`'s sign is checked against it, since the doc only assumes diff = server - local (open
    question 1): "server_minus_local", "local_minus_server" (diff reversed) or "unchecked" (diff disagrees with
    both, or is missing). Without a usable serverTimestamp, `diff` is taken as server - `sent_ms` (the assumed
    sign) less half the round trip ("diff_assumed"). None: nothing usable."""
    midpoint = (before_ms + after_ms) / 2
    half_rtt = max(0.0, (after_ms - before_ms) / 2)
    if answer.server_ms is not None and abs(answer.server_ms - midpoint) < 86_400_000:
        offset = answer.server_ms - midpoint
        if answer.diff_ms is None:
            return offset, "unchecked"
        tolerance = half_rtt * 2 + 50  # the server read its clock somewhere inside the round trip; 50 ms of slack
        measured = answer.server_ms - sent_ms
        if abs(answer.diff_ms - measured) <= tolerance:
            return offset, "server_minus_local"
        if abs(-answer.diff_ms - measured) <= tolerance:
            return offset, "local_minus_server"
        return offset, "unchecked"
    if answer.diff_ms is not None:
        return answer.diff_ms - half_rtt, "diff_assumed"
    return None
