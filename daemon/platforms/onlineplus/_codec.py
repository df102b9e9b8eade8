"""Online+'s hot path, pure and synchronous: the order and probe bytes (the cookie session in them), an answer's
meaning, matching.

No signature and no Bearer: a request is one byte string, built once per token. Success is `IsSuccessfull`,
never the HTTP status alone, and no usable order id comes back, so our order is found in the list by account (the
list is the account's own), ISIN, side and time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from daemon.net import build_request
from daemon.platforms._matching import first_since
from daemon.platforms._models import OrderAnswer, Verdict
from daemon.platforms.onlineplus._endpoints import ORDER_PATH, REMAIN_PATH
from daemon.platforms.onlineplus._parse import (
    MARKET_CLOSED,
    RATE_LIMIT,
    OnlinePlusToken,
    Tenant,
    message_code,
    message_text,
    raw_code,
    succeeded,
    tenant_of,
)

if TYPE_CHECKING:
    from daemon.config import BrokerEndpoints

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
)
"""One full browser UA for the whole session, the order included: the F5 in front answers 401 to a truncated one
[confirmed live, LOG:2050-2054]."""
SIDES = {"buy": 65, "sell": 86}  # ASCII A(chat), V(ente); sell never fired live
DAY_VALIDITY = 74  # J(our)
RETRY_CODES = frozenset({MARKET_CLOSED, RATE_LIMIT})  # not open yet; too soon after the account's previous order
MATCH_SLACK_S = 2.0
"""How much earlier than the earliest instant we could have sent it an order of ours may look: the clocks'
disagreement, and OrderTime's whole seconds."""


def order_body(isin: str, side: str, price: int, volume: int) -> dict[str, Any]:
    """The order JSON with every field as the doc gives it (the decompiled client's; a buy fired live twice):
    count and price as integer strings (`"9930"`, no decimals), side 65/86, validity 74 (day)."""
    if side not in SIDES:
        raise ValueError(f"an order's side is buy or sell, not {side!r}")  # fail closed, never default to sell
    return {
        "isin": isin,
        "orderCount": str(int(volume)),
        "orderPrice": str(int(price)),
        "orderSide": SIDES[side],
        "orderValidity": DAY_VALIDITY,
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


def common_headers(tenant: Tenant) -> dict[str, str]:
    """What every call carries besides its cookies: the full UA, the web host's Origin and Referer, JSON."""
    return {"User-Agent": USER_AGENT, "Accept": "application/json", "Origin": tenant.origin, "Referer": tenant.referer}


def request_bytes(tenant: Tenant, token: OnlinePlusToken, method: str, path: str, body: bytes | None = None) -> bytes:
    """One complete request to the token's API base (a configured one wins): the headers, and the jar's cookies
    for that path (the only credential; never an Authorization header)."""
    url = tenant.api(token.api) + path
    headers = common_headers(tenant)
    cookie = token.cookie_header(urlsplit(url).path or "/")
    if cookie:
        headers["Cookie"] = cookie
    return build_request(method, url, headers, body)


def order_request(tenant: Tenant, token: str, isin: str, side: str, price: int, volume: int) -> bytes:
    body = orjson.dumps(order_body(isin, side, price, volume))
    return request_bytes(tenant, OnlinePlusToken.unpack(token), "POST", ORDER_PATH, body)


def probe_request(tenant: Tenant, token: str) -> bytes:
    """Remain: the cheap authenticated call that keeps a connection warm and reads the clock."""
    return request_bytes(tenant, OnlinePlusToken.unpack(token), "GET", REMAIN_PATH)


def interpret(status: int, body: Any) -> OrderAnswer:
    """The meaning of an order answer already decoded (`body`, None when not JSON) with its HTTP status.

    `IsSuccessfull: true` is accepted (no usable id: the answer's OrderId is 0 [confirmed live]). A failure names
    a `MessageCode`, whatever the HTTP status: OMS_8018 (not open yet) and OMS_2080 (too soon) are retried on the
    plan's next slot, any other code stops the order with the broker's words. HTTP 401 is the front door or a dead
    cookie session: not taken. A 5xx, or an answer that says neither, is unknown: the order may exist.
    """
    if status == 401:
        return OrderAnswer(Verdict.TERMINAL, 401, "the broker's front door refused the session (HTTP 401)", raw=body)
    if status >= 500:
        return OrderAnswer(Verdict.UNKNOWN, raw_code(body), message_text(body) or f"HTTP {status}", raw=body)
    if succeeded(body):
        return OrderAnswer(Verdict.ACCEPTED, 0, "accepted", raw=body)
    code = message_code(body)
    said_failure = isinstance(body, dict) and body.get("IsSuccessfull") is False
    if code is None or not said_failure:
        return OrderAnswer(Verdict.UNKNOWN, None, f"HTTP {status} without IsSuccessfull and a code", raw=body)
    if code in RETRY_CODES:
        return OrderAnswer(Verdict.RETRY, raw_code(body), message_text(body), raw=body)
    return OrderAnswer(Verdict.TERMINAL, raw_code(body), message_text(body) or "rejected", raw=body)


def classify(status: int, body: bytes) -> OrderAnswer:
    """The meaning of one raw answer: its status and body bytes."""
    try:
        decoded = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        decoded = None
    return interpret(status, decoded)


def find_order(
    orders: list[Mapping[str, Any]],
    isin: str,
    side: str,
    since: datetime | None,
    tz: tzinfo,
    serial_number: int | None = None,
) -> Mapping[str, Any] | None:
    """The first of the normalised rows (the account's own list) that is ours, or None: with an OrderId from an
    earlier lookup, its row; else the first of the same ISIN and side (an unreadable side may be ours) placed at
    or after `since` less MATCH_SLACK_S (a row without a readable time is taken as ours: never risk a second
    order). The order answer itself carries no id."""
    if serial_number is not None:
        for order in orders:
            if order.get("serialNumber") == serial_number and order.get("isin") in (isin, None):
                return order
    return first_since(orders, isin, side, since, tz, MATCH_SLACK_S)


class OnlinePlusCodec:
    """One Online+ tenant's codec. `origin_url` is the API base known before any login (the configured `api_url`,
    else the one derived from the domain); the token's own, which its login page named, is `origin_for(token)`:
    the bytes go there."""

    def __init__(self, endpoints: BrokerEndpoints) -> None:
        self.tenant = tenant_of(
            endpoints.code,
            getattr(endpoints, "url", None),
            getattr(endpoints, "domain", None),
            getattr(endpoints, "api_url", None),
        )
        self.origin_url = self.tenant.api(None)

    def origin_for(self, token: str) -> str:
        """Where this token's requests go: the API base its login used (the configured one wins)."""
        return self.tenant.api(OnlinePlusToken.unpack(token).api)

    def order_request(self, token: str, isin: str, side: str, price: int, volume: int) -> bytes:
        return order_request(self.tenant, token, isin, side, price, volume)

    def probe_request(self, token: str) -> bytes:
        return probe_request(self.tenant, token)

    # the module's pure functions, as they are: a codec adds nothing to reading an answer or matching a row
    classify = staticmethod(classify)
    interpret = staticmethod(interpret)
    find_order = staticmethod(find_order)
