"""easytrader's hot path, pure and synchronous: the batch of a draft made at the arm (or one immediate order), the
probe, an answer's meaning by the doc's error-detection rules, and finding our order in today's list.

An answer is accepted only as easytrader-api.md's Error detection says: HTTP 200, a JSON body (empty or null
counts), and for an object `isSuccessful` not false, no truthy `error`, no omsError 8706; 8706 (not open yet) is a
spaced retry. Because drafts stay after a batch, a resent batch can place a second order: the executor's journal
rules (today's orders asked before any resend) are what keep it to one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import orjson

from daemon.net import build_request
from daemon.platforms._matching import first_since
from daemon.platforms._models import OrderAnswer, Verdict
from daemon.platforms.easytrader._endpoints import (
    BATCH_PATH,
    DEFAULT_SPA_URL,
    MONEY_PATH,
    ORDER_FROM,
    ORDER_PATH,
    SIDES,
    VALIDITY_DAY,
)
from daemon.platforms.easytrader._parse import EasytraderToken

if TYPE_CHECKING:
    from daemon.config import BrokerEndpoints

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
"""The bot's browser string, sent on every call with the Referer (the host "enforces" both [from code only])."""
ACCEPT = "application/json, text/plain, */*"
MARKET_CLOSED = 8706  # omsError: not open yet [from code only]
RETRY_CODES = frozenset({MARKET_CLOSED})
REMOVE_DRAFT_AFTER_CREATE = False  # as fired live; whether True makes a resend safe is open question 5
MATCH_SLACK_S = 2.0
"""How much earlier than the earliest instant we could have sent it an order of ours may look: the clocks'
disagreement."""


def referer(spa_url: str) -> str:
    return spa_url.rstrip("/") + "/"


def api_headers(access_token: str, spa_url: str) -> dict[str, str]:
    """What every trading API call carries [confirmed live]."""
    return {
        "Authorization": f"Bearer {access_token}",
        "Referer": referer(spa_url),
        "User-Agent": USER_AGENT,
        "Accept": ACCEPT,
    }


def draft_body(isin: str, side: str, price: int, volume: int) -> dict[str, Any]:
    """A draft with price and quantity as integers [confirmed live]; the ISIN stands in for the ticker, as in
    every live draft (accepted, and the book showed the real ticker)."""
    return {
        "draft": {
            "symbolIsin": isin,
            "symbolName": isin,
            "price": int(price),
            "quantity": int(volume),
            "side": SIDES[side],
            "validityType": VALIDITY_DAY,
            "validityDate": None,
        }
    }


def batch_body(draft_ids: list[str]) -> dict[str, Any]:
    return {"draftIds": list(draft_ids), "removeDraftAfterCreate": REMOVE_DRAFT_AFTER_CREATE, "orderFrom": ORDER_FROM}


def order_body(isin: str, side: str, price: int, volume: int) -> dict[str, Any]:
    """One immediate order (v2/order): price and quantity as strings here, unlike the draft [from code only]."""
    return {
        "order": {
            "orderFrom": ORDER_FROM,
            "price": str(int(price)),
            "quantity": str(int(volume)),
            "side": SIDES[side],
            "symbolIsin": isin,
            "validityType": VALIDITY_DAY,
        }
    }


def batch_request(api_url: str, spa_url: str, token: str, draft_ids: list[str]) -> bytes:
    """The complete batchCreate request of drafts made earlier: what goes out at the open."""
    headers = api_headers(EasytraderToken.unpack(token).access_token, spa_url)
    return build_request("POST", api_url + BATCH_PATH, headers, orjson.dumps(batch_body(draft_ids)))


def order_request(api_url: str, spa_url: str, token: str, isin: str, side: str, price: int, volume: int) -> bytes:
    """The complete v2/order request (no draft): for an order that has none."""
    headers = api_headers(EasytraderToken.unpack(token).access_token, spa_url)
    return build_request("POST", api_url + ORDER_PATH, headers, orjson.dumps(order_body(isin, side, price, volume)))


def probe_request(api_url: str, spa_url: str, token: str) -> bytes:
    """money/: the cheap authenticated call (after same-login) that keeps a connection warm. Each one counts
    against the hourly cap."""
    headers = api_headers(EasytraderToken.unpack(token).access_token, spa_url)
    return build_request("GET", api_url + MONEY_PATH, headers)


def oms_codes(body: Any) -> list[int]:
    """The codes of `omsError` (a list of {code, message}, or one such object)."""
    errors = body.get("omsError") if isinstance(body, dict) else None
    entries = errors if isinstance(errors, list) else [errors] if isinstance(errors, dict) else []
    codes = []
    for entry in entries:
        code = entry.get("code") if isinstance(entry, dict) else None
        try:
            if code is not None and not isinstance(code, bool):
                codes.append(int(code))
        except (TypeError, ValueError):
            continue
    return codes


def _message(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    errors = body.get("omsError")
    for entry in errors if isinstance(errors, list) else [errors]:
        if isinstance(entry, dict) and isinstance(entry.get("message"), str) and entry["message"].strip():
            return entry["message"].strip()
    error = body.get("error")
    if isinstance(error, str) and error.strip():
        return error.strip()
    if isinstance(error, dict):
        text = error.get("message") or error.get("description")
        if isinstance(text, str) and text.strip():
            return text.strip()
    return ""


def interpret(status: int, body: Any, is_json: bool = True) -> OrderAnswer:
    """An answer's meaning by the doc's rules (`body` decoded; `is_json` False when it did not parse).

    omsError 8706 is RETRY whatever the status. Accepted: 200 and JSON that is not a failing object (an array,
    the live batch answer, carries the new ids: the first is kept as `tracking_number`, though it is not the book
    order's id). A failing object (isSuccessful false, a truthy error, other omsError codes) is TERMINAL with the
    first code; 5xx, or a 2xx that is not 200 with JSON (HTML), is UNKNOWN (the order may exist); 401/403/429 and
    other 4xx are TERMINAL: nothing was placed, and resending cannot help inside the window.
    """
    codes = oms_codes(body) if is_json else []
    message = _message(body) if is_json else ""
    if MARKET_CLOSED in codes:
        return OrderAnswer(Verdict.RETRY, MARKET_CLOSED, message or "the market is not open yet", raw=body)
    failed = isinstance(body, dict) and (body.get("isSuccessful") is False or bool(body.get("error")))
    if status == 200 and is_json and not failed:
        return OrderAnswer(Verdict.ACCEPTED, 0, "accepted", tracking_number=_first_id(body), raw=body)
    if status >= 500:
        return OrderAnswer(Verdict.UNKNOWN, codes[0] if codes else None, message or f"HTTP {status}", raw=body)
    if failed or codes:
        return OrderAnswer(Verdict.TERMINAL, codes[0] if codes else None, message or "rejected", raw=body)
    if 200 <= status < 300:  # HTML at 200, or another 2xx: not the accepted shape, yet something may be placed
        return OrderAnswer(Verdict.UNKNOWN, None, f"HTTP {status} without a JSON answer", raw=body)
    return OrderAnswer(Verdict.TERMINAL, status, message or f"HTTP {status}: refused", raw=body)


def classify(status: int, body: bytes) -> OrderAnswer:
    """The meaning of one raw answer: its status and body bytes (an empty body is JSON null: accepted at 200)."""
    if not body.strip():
        return interpret(status, None)
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return interpret(status, {"text": body[:2000].decode("utf-8", "replace")}, is_json=False)
    return interpret(status, decoded)


def _first_id(body: Any) -> str | None:
    if isinstance(body, list):
        return next((str(x) for x in body if isinstance(x, (str, int)) and not isinstance(x, bool) and str(x)), None)
    if isinstance(body, dict) and isinstance(body.get("id"), (str, int)) and not isinstance(body.get("id"), bool):
        return str(body["id"]) or None
    return None


def find_order(
    orders: list[Mapping[str, Any]],
    isin: str,
    side: str,
    since: datetime | None,
    tz: tzinfo,
    serial_number: int | None = None,
) -> Mapping[str, Any] | None:
    """The first of the normalised rows (newest first, as the list comes) that is ours, or None: the same ISIN and
    side (an unreadable side may be ours) created at or after `since` less MATCH_SLACK_S; a row without a readable
    time is taken as ours (never risk a second order). No id can help: the batch answer's ids are not the book's,
    and `serial_number` is never one of easytrader's string ids."""
    return first_since(orders, isin, side, since, tz, MATCH_SLACK_S)


class EasytraderCodec:
    """Mofid's codec: orders and probes go to the trading API host, with the SPA's Referer."""

    def __init__(self, endpoints: BrokerEndpoints) -> None:
        self.origin_url = (getattr(endpoints, "url", None) or endpoints.trading_url).rstrip("/")
        self.spa_url = (getattr(endpoints, "spa_url", None) or DEFAULT_SPA_URL).rstrip("/")

    def order_request(
        self, token: str, isin: str, side: str, price: int, volume: int, prepared: str | None = None
    ) -> bytes:
        """The batchCreate of the draft `prepared` (made at the arm with this isin, side, price and volume), or
        without one the immediate v2/order."""
        if prepared is not None:
            return batch_request(self.origin_url, self.spa_url, token, [prepared])
        return order_request(self.origin_url, self.spa_url, token, isin, side, price, volume)

    def probe_request(self, token: str) -> bytes:
        return probe_request(self.origin_url, self.spa_url, token)

    # the module's pure functions, as they are: a codec adds nothing to reading an answer or matching a row
    classify = staticmethod(classify)
    interpret = staticmethod(interpret)
    find_order = staticmethod(find_order)
