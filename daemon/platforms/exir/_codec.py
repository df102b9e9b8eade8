"""Exir's hot path, pure and synchronous: the order and probe requests, an answer's meaning, matching.

`X-App-N` changes every UTC second, so a request is not one byte string but a `Signed` request: the bytes
before and after the header's value and the seed's windows are built once, and `at(second)` joins them with
the one value that differs (two multiplications and a formatting; measured in the commit that added it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from daemon.net import build_request
from daemon.platforms._models import OrderAnswer, Verdict
from daemon.platforms.exir._endpoints import ORDER_PATH, STOCK_INFO_PATH
from daemon.platforms.exir._parse import ExirToken, error_code, error_message, whole
from daemon.platforms.exir._signature import Signer

if TYPE_CHECKING:
    from daemon.config import BrokerEndpoints

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
)
"""A full browser UA on every call (exir-api.md, Login sequence: the bot's Chrome 124 string)."""
SIGNATURE_HEADER = "X-App-N"
SIDES = {"buy": "SIDE_BUY", "sell": "SIDE_SALE"}  # not "SELL" (exir-api.md, Placing an order)
RETRY_CODES = frozenset({1005, 1017})
"""1005: inside the spacing, or the instrument group not taking orders yet [confirmed live]. 1017: Ephoenix's
"not open yet"; whether Exir uses it is unknown (open question 3), but a refusal for being early never books
an order, so retrying it on the plan's next slot costs nothing, and stopping would lose the day's order to a
clock a few ms fast."""
MATCH_SLACK_S = 2.0
"""How much earlier than the earliest instant we could have sent it an order of ours may look: the clocks'
disagreement, and entryDateTime's whole seconds."""
ID_KEYS = ("mmtpOrderId", "orderId", "id", "serialNumber")
_SLOT = "\x01x-app-n\x01"
_SLOT_BYTES = _SLOT.encode("latin-1")


def order_body(broker_code: int, isin: str, side: str, price: int, volume: int) -> dict[str, Any]:
    """The order JSON with every field as the doc gives it (from the decompiled client; fired live): price and
    quantity as strings, the price in the "9930.0" form, the only one fired [confirmed live, LOG:536]."""
    return {
        "bankAccountId": -1,
        "brokerCode": broker_code,
        "disclosedQuantity": 0,
        "hasUnderCautionAgreement": True,
        "insMaxLcode": isin,
        "orderType": "ORDER_TYPE_LIMIT",
        "price": f"{int(price)}.0",
        "quantity": str(int(volume)),
        "side": SIDES[side],
        "validityType": "VALIDITY_TYPE_DAY",
        "coreType": "c",
    }


def common_headers(token: ExirToken, url_path: str) -> dict[str, str]:
    """What every authenticated call carries besides its signature: the session's cookies, a browser UA."""
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    cookie = token.cookie_header(url_path)
    if cookie:
        headers["Cookie"] = cookie
    return headers


class Signed:
    """A complete request for any UTC second: `at(second)` is its bytes, which differ between seconds only in
    the X-App-N value. The last second asked is remembered, so a resend in the same second costs nothing."""

    __slots__ = ("_head", "_last", "_last_second", "_period", "_s", "_tail", "_windows", "target")

    def __init__(self, method: str, url: str, target: str, headers: Mapping[str, str], body: bytes | None, nt: str):
        raw = build_request(method, url, {**headers, SIGNATURE_HEADER: _SLOT}, body)
        if raw.count(_SLOT_BYTES) != 1:
            raise ValueError("the request's headers hold the signature's placeholder")
        self._head, self._tail = raw.split(_SLOT_BYTES)
        signer = Signer(nt).for_target(target)
        self._windows, self._period, self._s = signer.windows, signer.period, signer.s
        self.target = target
        self._last_second: int | None = None
        self._last = b""

    def at(self, utc_second: int) -> bytes:
        """The request's bytes for the Unix-epoch second `utc_second` (on the corrected clock)."""
        if utc_second == self._last_second:
            return self._last
        t = utc_second % 86_400
        b = t * self._s
        self._last = self._head + f"{self._windows[t % self._period] * b}.{b}".encode() + self._tail
        self._last_second = utc_second
        return self._last


def signed_request(base_url: str, token: ExirToken, method: str, target: str, body: bytes | None = None) -> Signed:
    """`target` (path and query relative to the tenant root: what is signed) at the tenant `base_url`."""
    url = base_url + target
    headers = common_headers(token, urlsplit(url).path or "/")
    return Signed(method, url, target, headers, body, token.nt)


def order_request(base_url: str, token: str, isin: str, side: str, price: int, volume: int) -> Signed:
    session = ExirToken.unpack(token)
    body = orjson.dumps(order_body(session.broker_code, isin, side, price, volume))
    return signed_request(base_url, session, "POST", ORDER_PATH, body)


def probe_request(base_url: str, token: str) -> Signed:
    """stockInfo: the cheap authenticated call that keeps a connection warm and reads the clock."""
    return signed_request(base_url, ExirToken.unpack(token), "GET", STOCK_INFO_PATH)


def interpret(status: int, body: Any) -> OrderAnswer:
    """The meaning of an order answer already decoded (`body`, None when not JSON) with its HTTP status.

    Any 2xx is accepted and its body kept, with an id if one is there (the success shape is unrecorded;
    the first live fire logged an 8-digit id), unless it says it is an error. Rejections are non-2xx with a
    JSON code (an inference from the bot's logs): 1005 and 1017 are retried after the spacing, any other
    code stops the order. 5xx or no code at all is unknown: the order may or may not exist.
    """
    code = error_code(body)
    message = error_message(body)
    said_error = isinstance(body, dict) and (body.get("type") == "error" or code not in (None, 0))
    if 200 <= status < 300 and not said_error:
        return OrderAnswer(Verdict.ACCEPTED, 0, "accepted", _order_id(body), _uuid(body), raw=body)
    if status >= 500:
        return OrderAnswer(Verdict.UNKNOWN, code, message or f"HTTP {status}", raw=body)
    if code in RETRY_CODES:
        return OrderAnswer(Verdict.RETRY, code, message, raw=body)
    if code is not None:
        return OrderAnswer(Verdict.TERMINAL, code, message or "rejected", raw=body)
    if status in (401, 403):
        return OrderAnswer(Verdict.TERMINAL, status, message or "the broker refused the session", raw=body)
    return OrderAnswer(Verdict.UNKNOWN, None, message or f"HTTP {status} without an error code", raw=body)


def classify(status: int, body: bytes) -> OrderAnswer:
    """The meaning of one raw answer: its status and body bytes."""
    try:
        decoded = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        if 200 <= status < 300:
            text = body.decode("utf-8", "replace")
            return OrderAnswer(Verdict.ACCEPTED, 0, "accepted", raw={"text": text})
        return OrderAnswer(Verdict.UNKNOWN, None, f"HTTP {status} with a body that is not JSON")
    return interpret(status, decoded)


def _places(body: Any) -> list[Mapping[str, Any]]:
    if not isinstance(body, dict):
        return []
    return [body] + [body[k] for k in ("result", "data", "response", "order") if isinstance(body.get(k), dict)]


def _order_id(body: Any) -> int | None:
    for place in _places(body):
        for key in ID_KEYS:
            number = whole(place.get(key))
            if number is not None and number > 0:
                return number
    return None


def _uuid(body: Any) -> str | None:
    for place in _places(body):
        value = place.get("uuid")
        if isinstance(value, str) and value:
            return value
    return None


def find_order(
    orders: list[Mapping[str, Any]],
    isin: str,
    side: str,
    since: datetime | None,
    tz: tzinfo,
    serial_number: int | None = None,
) -> Mapping[str, Any] | None:
    """The first of the normalised rows that is ours, or None: with an id from the answer, its row wherever it
    is in the list; else the first of the same ISIN and side (an unreadable side may be ours) entered at or after `since` less MATCH_SLACK_S (a row
    without a readable time is taken as ours: never risk a second order)."""
    if serial_number is not None:
        for order in orders:
            if order.get("serialNumber") == serial_number:
                return order
    wanted = 1 if side == "buy" else 2
    for order in orders:
        if order.get("isin") != isin or order.get("side") not in (wanted, None):
            continue
        created = order.get("created")
        if not isinstance(created, datetime):
            return order
        created = created if created.tzinfo is not None else created.replace(tzinfo=tz)
        if since is None or created >= since - timedelta(seconds=MATCH_SLACK_S):
            return order
    return None


class ExirCodec:
    """One Exir tenant's codec: its base URL is where orders and probes go."""

    def __init__(self, endpoints: BrokerEndpoints) -> None:
        base = getattr(endpoints, "url", None) or endpoints.trading_url
        self.origin_url = base.rstrip("/")

    def order_request(self, token: str, isin: str, side: str, price: int, volume: int) -> Signed:
        return order_request(self.origin_url, token, isin, side, price, volume)

    def probe_request(self, token: str) -> Signed:
        return probe_request(self.origin_url, token)

    def classify(self, status: int, body: bytes) -> OrderAnswer:
        return classify(status, body)

    def interpret(self, status: int, body: Any) -> OrderAnswer:
        return interpret(status, body)

    def spacing_ms(self, token: str) -> float | None:
        """The login's `sendOrderDelay` (400 seen; ms assumed): the executor spaces an account's orders by at
        least max(this, its own spacing) (exir-api.md, Order rate and spacing)."""
        return ExirToken.unpack(token).send_order_delay_ms

    def find_order(
        self,
        orders: list[Mapping[str, Any]],
        isin: str,
        side: str,
        since: datetime | None,
        tz: tzinfo,
        serial_number: int | None = None,
    ) -> Mapping[str, Any] | None:
        return find_order(orders, isin, side, since, tz, serial_number)
