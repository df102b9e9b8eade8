"""Ephoenix's hot path, pure and synchronous: the NewOrder and probe bytes, an answer's meaning, matching.

The answer is keyed on its error code, never on its (Persian) text. The success shape is unconfirmed (see
ephoenix-api.md), so an answer counts as accepted when it is a 2xx with no error code, and the order's ids
are looked for at the top and under `result`, `data` or `response`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import orjson

from daemon.net import build_request
from daemon.platforms._models import OrderAnswer, Verdict
from daemon.platforms.ephoenix._endpoints import BOOK_PATH, NEW_ORDER_PATH
from daemon.platforms.ephoenix._parse import error_code, error_message, failed, int_or_none

if TYPE_CHECKING:
    from daemon.config import BrokerEndpoints

SIDE_CODES = {"buy": 1, "sell": 2}
RETRY_CODES = frozenset({1017, 1018})  # not open yet; too soon after this account's previous order
TERMINAL_CODES = {
    1011: "insufficient balance",
    1001: "invalid volume",
    1006: "order value below minimum",
}
MATCH_SLACK_S = 2.0
"""How much earlier than the earliest instant we could have sent it an order of ours may look (the clocks'
disagreement)."""


def bearer(token: str) -> dict[str, str]:
    """The one authorization header of every authenticated call."""
    return {"authorization": f"Bearer {token}"}


def new_order_body(isin: str, side: str, price: int, volume: int) -> dict[str, Any]:
    """The NewOrder JSON, as the broker's web client sends it."""
    return {
        "isin": isin,
        "side": SIDE_CODES[side],
        "validity": 1,
        "validityDate": None,
        "accountType": 1,
        "price": price,
        "volume": volume,
        "serialNumber": 0,
    }


def new_order_request(trading_url: str, token: str, isin: str, side: str, price: int, volume: int) -> bytes:
    """The complete NewOrder request."""
    body = orjson.dumps(new_order_body(isin, side, price, volume))
    return build_request("POST", trading_url + NEW_ORDER_PATH, bearer(token), body)


def probe_request(trading_url: str, token: str) -> bytes:
    """GetLastTradingBook: the cheap authenticated call that keeps a connection warm and reads the clock."""
    return build_request("GET", trading_url + BOOK_PATH, bearer(token))


def interpret(status: int, body: Any) -> OrderAnswer:
    """The meaning of an answer already decoded from JSON (`body`) with its HTTP status."""
    if status == 401:
        return OrderAnswer(Verdict.TERMINAL, 401, "the broker refused the token", raw=body)
    if status >= 500:
        return OrderAnswer(Verdict.UNKNOWN, None, f"HTTP {status}", raw=body)
    if not isinstance(body, dict):
        if 200 <= status < 300:
            return OrderAnswer(Verdict.ACCEPTED, 0, "accepted", raw=body)
        return OrderAnswer(Verdict.UNKNOWN, None, f"HTTP {status}", raw=body)
    code = error_code(body)
    message = error_message(body)
    if 200 <= status < 300 and not failed(body):
        places = [body] + [body[k] for k in ("result", "data", "response") if isinstance(body.get(k), dict)]
        serial = next((int_or_none(p.get("serialNumber")) for p in places if p.get("serialNumber") is not None), None)
        tracking = next((str(p["trackingNumber"]) for p in places if p.get("trackingNumber") is not None), None)
        return OrderAnswer(Verdict.ACCEPTED, 0, "accepted", serial, tracking, raw=body)
    if code in RETRY_CODES:
        return OrderAnswer(Verdict.RETRY, code, message, raw=body)
    if code is None:
        return OrderAnswer(Verdict.UNKNOWN, None, message or f"HTTP {status} without an error code", raw=body)
    return OrderAnswer(Verdict.TERMINAL, code, message or TERMINAL_CODES.get(code, "rejected"), raw=body)


def classify(status: int, body: bytes) -> OrderAnswer:
    """What a NewOrder answer on a pre-opened connection means (its status and raw body)."""
    try:
        decoded = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        if status == 401:
            return interpret(401, None)
        return OrderAnswer(Verdict.UNKNOWN, None, f"HTTP {status} with a body that is not JSON")
    return interpret(status, decoded)


def find_order(
    orders: list[Mapping[str, Any]],
    isin: str,
    side: str,
    since: datetime | None,
    tz: tzinfo,
    serial_number: int | None = None,
) -> Mapping[str, Any] | None:
    """The first order in `orders` that is ours, or None: one of the account's orders for the same ISIN and side
    created at or after `since` (less MATCH_SLACK_S); with a serial number from the journal, that decides."""
    wanted = SIDE_CODES[side]
    for order in orders:
        if serial_number is not None and _int(order.get("serialNumber")) == serial_number:
            return order
        if order.get("isin") != isin or _side(order) not in (wanted, None):
            continue
        created = created_at(order, tz)
        if since is None or created is None or created >= since - timedelta(seconds=MATCH_SLACK_S):
            return order  # an order without a readable time is taken as ours: never risk a second one
    return None


def created_at(order: Mapping[str, Any], tz: tzinfo) -> datetime | None:
    """When the broker booked the order; a naive time is the exchange's."""
    for key in ("created", "createdAt", "date"):
        value = order.get(key)
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, str) and len(value) > 10:  # a date alone says nothing of the instant
            try:
                moment = datetime.fromisoformat(value.replace("/", "-"))
            except ValueError:
                continue
        else:
            continue
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
    return None


def _side(order: Mapping[str, Any]) -> int | None:
    """The side's code; None when it cannot be read (then the order may be ours)."""
    for key in ("side", "orderSide"):
        code = _int(order.get(key))
        if code is not None:
            return code
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


class EphoenixCodec:
    """One Ephoenix broker's codec: its trading host is where orders and probes go."""

    def __init__(self, endpoints: BrokerEndpoints) -> None:
        self.origin_url = endpoints.trading_url

    def order_request(self, token: str, isin: str, side: str, price: int, volume: int) -> bytes:
        return new_order_request(self.origin_url, token, isin, side, price, volume)

    def probe_request(self, token: str) -> bytes:
        return probe_request(self.origin_url, token)

    # the module's pure functions, as they are: a codec adds nothing to reading an answer or matching a row
    classify = staticmethod(classify)
    interpret = staticmethod(interpret)
    find_order = staticmethod(find_order)
