"""Exir's answers read into the project's models (pure, so each quirk of exir-api.md is tested without a network),
and the opaque token that carries one login's session to the cache and to the hot path."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from daemon.errors import BrokerUnavailable
from daemon.platforms._cookies import cookie_header, read_triples
from daemon.platforms._cookies import path_matches as path_matches  # importable here, as before
from daemon.platforms._models import BrokerOrder, BuyingPower, FeeRates, Holding, finite, whole

# re-exported (sessions and tests import them here); entryDateTime is Tehran wall time
from daemon.platforms._tehran import TEHRAN as TEHRAN
from daemon.platforms._tehran import jalali as jalali
from daemon.platforms._tehran import jalali_wall_time

FALLBACK_FEE = 0.005
"""Above the real buy rate (0.3712 % seen), so a missing rate under-sizes; 0 once over-spent (exir-api.md, Fees)."""
SIDE_NAMES = {1: "buy", 2: "sell"}
SIDE_LETTERS = {"خ": 1, "ف": 2}  # خريد buy, فروش sell: the first letter, whatever the yeh (exir-api.md)
CANCELLED_WORDS = frozenset({"حذف", "لغو", "منقضی", "رد"})
"""Words of `mmtpOrderStatusName` (whole words) read as "the broker ended it" (deleted, cancelled, expired,
rejected): assumed, the document shows only `در صف` and `انجام کلي`; a row with nothing left and not all of it
traded reads the same."""
TOKEN_VERSION = 1


# ---- the token ---------------------------------------------------------------------------------------------


class TokenUnreadable(ValueError):
    """A token value that is not an Exir session (from another platform or a damaged cache entry)."""


@dataclass(frozen=True, slots=True)
class ExirToken:
    """One login's session: the tenant host's cookies (name, value, path; two may share a name), the signing
    seed `nt`, the numeric broker id for orders, and `sendOrderDelay` (ms, unit assumed)."""

    cookies: tuple[tuple[str, str, str], ...]
    nt: str
    broker_code: int
    send_order_delay_ms: float | None = None

    def pack(self) -> str:
        """Compact JSON: the cache seals it like any token, the codec reads it back."""
        data: dict[str, Any] = {
            "v": TOKEN_VERSION,
            "c": [list(c) for c in self.cookies],
            "nt": self.nt,
            "b": self.broker_code,
        }
        if self.send_order_delay_ms is not None:
            data["d"] = self.send_order_delay_ms
        return orjson.dumps(data).decode()

    @classmethod
    def unpack(cls, value: str) -> ExirToken:
        try:
            data = orjson.loads(value)
        except (orjson.JSONDecodeError, TypeError):
            raise TokenUnreadable("the token is not an Exir session") from None
        if not isinstance(data, dict) or data.get("v") != TOKEN_VERSION:
            raise TokenUnreadable("the token is not an Exir session")
        cookies, nt, code = read_triples(data.get("c")), data.get("nt"), data.get("b")
        if cookies is None or not isinstance(nt, str) or not isinstance(code, int) or isinstance(code, bool):
            raise TokenUnreadable("the token is not an Exir session")
        delay = finite(data.get("d"))
        return cls(cookies, nt, code, delay)

    def cookie_header(self, request_path: str) -> str:
        """The Cookie header for `request_path` (two cookies may share a name on different paths, exir-api.md
        Quirks: the most specific path's is sent, as aiohttp's jar does on the slow path)."""
        return cookie_header(self.cookies, request_path)


# ---- login ---------------------------------------------------------------------------------------------------


def error_code(body: Any) -> int | None:
    """The answer's numeric `errorCode` (None when absent): what every decision keys on, never the text."""
    if not isinstance(body, dict):
        return None
    value = body.get("errorCode")
    if isinstance(value, bool):
        return None
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def error_message(body: Any) -> str:
    """The broker's own words: the Persian `description` (as it is, less its trailing space), else the English."""
    if not isinstance(body, dict):
        return ""
    for key in ("description", "descriptionEn", "message", "errorMessage"):
        text = body.get(key)
        if isinstance(text, str) and text.strip():
            return text.strip()
    return ""


def jwt_claims(token: Any) -> dict[str, Any]:
    """A JWT's payload, read without verifying (we only need a claim); {} for anything else."""
    if not isinstance(token, str) or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def broker_code(body: dict[str, Any], account: str) -> int | None:
    """The numeric broker id for orders: rlcAuthHeader's `b` claim [confirmed live], else authToken's, else the
    login `username` less the login account ("116<account>" gives 116) [from code only]; None, never guessed."""
    for jwt in ("rlcAuthHeader", "authToken"):
        code = whole(jwt_claims(body.get(jwt)).get("b"))
        if code is not None and code > 0:
            return code
    username = body.get("username")
    if isinstance(username, str) and account and username.endswith(account) and len(username) > len(account):
        code = whole(username[: -len(account)])
        if code is not None and code > 0:
            return code
    return None


def login_lifetime_s(body: dict[str, Any], now: datetime) -> float | None:
    """How long the session lives: `validity` minutes (480 seen), or the authToken's `exp` if sooner."""
    candidates = []
    validity = finite(body.get("validity"))
    if validity is not None and validity > 0:
        candidates.append(validity * 60)
    exp = finite(jwt_claims(body.get("authToken")).get("exp"))
    if exp is not None:
        candidates.append(exp - now.timestamp())
    return min(candidates) if candidates else None


def accepts_answer(answer: str) -> bool:
    """Whether a captcha answer may be posted: exactly five ASCII digits, not starting with 0 (the login sends it
    as a JSON number, which would drop the zero: exir-api.md open question 6; such a captcha is refetched)."""
    return len(answer) == 5 and answer.isascii() and answer.isdigit() and answer[0] != "0"


# ---- reads ---------------------------------------------------------------------------------------------------


def parse_buying_power(body: Any, broker: str) -> BuyingPower:
    """stockInfo's `purchaseUpperBound`: spendable rial (a string in the fixture) [confirmed live]."""
    amount = finite(body.get("purchaseUpperBound")) if isinstance(body, dict) else None
    if amount is None:
        raise BrokerUnavailable(f"broker {broker}: stockInfo has no usable purchaseUpperBound.")
    return BuyingPower(amount)


def parse_fees(body: Any, isin: str) -> FeeRates:
    """The wages answer `{ISIN: {SIDE_BUY: r, SIDE_SALE: r}}`; a missing or non-positive rate is FALLBACK_FEE,
    never 0 [confirmed live: a 0 over-spent]."""
    rates = body.get(isin) if isinstance(body, dict) else None
    rates = rates if isinstance(rates, dict) else {}
    buy, sell = finite(rates.get("SIDE_BUY")), finite(rates.get("SIDE_SALE"))
    usable_buy = buy is not None and buy > 0
    usable_sell = sell is not None and sell > 0
    return FeeRates(
        buy if usable_buy else FALLBACK_FEE,  # type: ignore[arg-type]
        sell if usable_sell else FALLBACK_FEE,  # type: ignore[arg-type]
        "broker" if usable_buy and usable_sell else "fallback",
    )


def parse_holding(body: Any, isin: str, broker: str) -> Holding:
    """portfoReport's row for `isin` (insMaxLcode or insMaxLCode): `asset`, else `remainQty`, truncated; no row
    is 0 shares, a valid answer. An answer without a `result` list is unreadable, never "nothing held"."""
    rows = body.get("result") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise BrokerUnavailable(f"broker {broker}: portfoReport answered without a result list.")
    for row in rows:
        if isinstance(row, dict) and isin in (row.get("insMaxLcode"), row.get("insMaxLCode")):
            amount = finite(row.get("asset"))
            if amount is None:
                amount = finite(row.get("remainQty"))
            return Holding(isin, max(int(amount or 0), 0))
    return Holding(isin, 0)


def entry_time(text: Any) -> datetime | None:
    """`entryDateTime`, Jalali `YYYY/MM/DD-HH:mm:ss` Tehran wall time, as an aware datetime; None if unreadable."""
    if not isinstance(text, str):
        return None
    try:
        day_part, _, time_part = text.strip().partition("-")
        y, m, d = (int(x) for x in day_part.split("/"))
        hh, mm, ss = (int(x) for x in time_part.split(":"))
        return jalali_wall_time(y, m, d, hh, mm, ss)
    except (ValueError, TypeError):
        return None


def side_of(name: Any) -> int | None:
    """1 buy, 2 sell from `orderSideName`'s first letter; None when unreadable (then the order may be ours)."""
    return SIDE_LETTERS.get(name.strip()[:1]) if isinstance(name, str) else None


def order_rows(body: Any, broker: str) -> list[dict[str, Any]]:
    """orderbookReport's `result` list; anything else raises: an unreadable answer is never "no orders"."""
    rows = body.get("result") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BrokerUnavailable(f"broker {broker}: orderbookReport answered without a list of orders.")
    return rows


def broker_order(row: dict[str, Any]) -> BrokerOrder:
    """An orderbookReport row as the project's model, over a row normalised to the keys matching reads
    (`isin`, `side` 1/2, `serialNumber` = mmtpOrderId, `trackingNumber` = uuid, `volume`, `executedVolume` =
    tradedQuantity, `remaining`, `filled` = tradedQuantity > 0 [confirmed live], `created`), plus Exir's own.
    The average price is `averageTradedPrice` once something traded (the doc: "the actual fill price"); cancelled
    is `ended` (see `CANCELLED_WORDS`)."""
    isin = next((row[k] for k in ("insMaxLCode", "insMaxLcode") if isinstance(row.get(k), str)), None)
    side = side_of(row.get("orderSideName"))
    serial = whole(row.get("mmtpOrderId"))
    uuid = row.get("uuid")
    tracking = str(uuid) if isinstance(uuid, (str, int)) and not isinstance(uuid, bool) and str(uuid) else None
    volume, executed = whole(row.get("quantity")), whole(row.get("tradedQuantity"))
    remaining = whole(row.get("remainingQuantity"))
    price = whole(row.get("price"))
    created = entry_time(row.get("entryDateTime"))
    norm = {
        **row,
        "isin": isin,
        "side": side,
        "serialNumber": serial,
        "trackingNumber": tracking,
        "price": price,
        "volume": volume,
        "executedVolume": executed,
        "remaining": remaining,
        "filled": bool(executed and executed > 0),
        "averagePrice": finite(row.get("averageTradedPrice")),
        "state": None,  # Exir's status names are Persian text and its filter untrustworthy: no numeric state
        "createdAt": row.get("entryDateTime"),
        "created": created,
    }
    average = norm["averagePrice"]
    return BrokerOrder(
        isin=isin,
        side=SIDE_NAMES.get(side) if side is not None else None,
        serial=serial,
        tracking=tracking,
        created=created,
        volume=volume,
        executed=executed,
        price=price,
        row=norm,
        average_price=average
        if executed is not None and executed > 0 and average is not None and average > 0
        else None,
        cancelled=ended(row.get("mmtpOrderStatusName"), volume, executed, remaining),
    )


def ended(status_name: Any, volume: int | None, executed: int | None, remaining: int | None) -> bool:
    """Whether the broker ended the order short of a full execution: its status names a cancel, an expiry or a
    rejection, or nothing is left of it though not all of it traded. Unreadable: not ended."""
    if volume is not None and executed is not None and executed >= volume:
        return False
    if isinstance(status_name, str) and CANCELLED_WORDS & set(status_name.split()):
        return True
    return remaining == 0 and volume is not None and executed is not None and executed < volume


def unique_orders(orders: Iterable[BrokerOrder]) -> list[BrokerOrder]:
    """One row per mmtpOrderId (unique per broker), rows without one kept as they are."""
    seen: set[int] = set()
    kept = []
    for order in orders:
        if order.serial is not None:
            if order.serial in seen:
                continue
            seen.add(order.serial)
        kept.append(order)
    return kept
