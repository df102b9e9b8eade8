"""What a broker's answer to NewOrder means, keyed on its error code, never on its (Persian) text.

One reading for both paths that send orders: the executor's pre-built requests at the open and the
client's `new_order`. The success shape is unconfirmed (see ephoenix-api.md), so an answer counts as
accepted when it is a 2xx with no error code, and the order's ids are looked for at the top and under
`result`, `data` or `response`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

RETRY_CODES = frozenset({1017, 1018})  # not open yet; too soon after this account's previous order
TERMINAL_CODES = {
    1011: "insufficient balance",
    1001: "invalid volume",
    1006: "order value below minimum",
}


class Verdict(Enum):
    ACCEPTED = "accepted"
    RETRY = "retry"  # the same order again after the spacing
    TERMINAL = "terminal"  # stop this order: resending cannot help
    UNKNOWN = "unknown"  # no usable answer (5xx, garbage): the order may or may not exist


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: Verdict
    code: int | None
    message: str
    serial_number: int | None = None
    tracking_number: str | None = None


def interpret(status: int, body: Any) -> Answer:
    """The meaning of an answer already decoded from JSON (`body`) with its HTTP status."""
    if status == 401:
        return Answer(Verdict.TERMINAL, 401, "the broker refused the token")
    if status >= 500:
        return Answer(Verdict.UNKNOWN, None, f"HTTP {status}")
    if not isinstance(body, dict):
        if 200 <= status < 300:
            return Answer(Verdict.ACCEPTED, 0, "accepted")
        return Answer(Verdict.UNKNOWN, None, f"HTTP {status}")
    code = _int(body.get("errorCode"))
    message = str(body.get("errorMessage") or body.get("message") or "")
    if 200 <= status < 300 and code in (None, 0) and body.get("isSuccess") is not False:
        places = [body] + [body[k] for k in ("result", "data", "response") if isinstance(body.get(k), dict)]
        serial = next((_int(p.get("serialNumber")) for p in places if p.get("serialNumber") is not None), None)
        tracking = next((str(p["trackingNumber"]) for p in places if p.get("trackingNumber") is not None), None)
        return Answer(Verdict.ACCEPTED, 0, "accepted", serial, tracking)
    if code in RETRY_CODES:
        return Answer(Verdict.RETRY, code, message)
    if code is None:
        return Answer(Verdict.UNKNOWN, None, message or f"HTTP {status} without an error code")
    return Answer(Verdict.TERMINAL, code, message or TERMINAL_CODES.get(code, "rejected"))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
