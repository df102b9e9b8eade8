"""What happened at the open, per account and order, read back from the day's journal.

Journal record kinds (written by the executor): `window` (the open on the local monotonic clock, the
clock offset), `plan`, `send`, `answer`, `error`, `skip` and `outcome`. The report is a pure function of
them, so it is the same whether it runs right after the window or days later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ReportRow:
    account: str
    broker: str | None
    isin: str
    price: int | None = None
    volume: int | None = None
    first_send_ms: float | None = None  # first send relative to the open instant (negative: before it)
    first_answer_ms: float | None = None
    attempts: int = 0
    accepted: bool = False
    code: int | None = None
    result: str = "not sent"
    serial_number: int | None = None
    tracking_number: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(records: list[dict[str, Any]]) -> list[ReportRow]:
    """One row per (account, isin), in plan order; the last `window` record sets the open instant."""
    open_ns: int | None = None
    rows: dict[tuple[str, str], ReportRow] = {}

    def row(record: dict[str, Any]) -> ReportRow:
        key = (str(record.get("account")), str(record.get("isin")))
        if key not in rows:
            rows[key] = ReportRow(account=key[0], broker=record.get("broker"), isin=key[1])
        return rows[key]

    opens: dict[tuple[str, str], int] = {}

    def ms(record: dict[str, Any]) -> float | None:
        if "vs_open_ms" in record:
            return record["vs_open_ms"]
        reference = opens.get((str(record.get("account")), str(record.get("isin"))), open_ns)
        monotonic_ns = record.get("monotonic_ns")
        if reference is None or not isinstance(monotonic_ns, int):
            return None
        return round((monotonic_ns - reference) / 1e6, 3)

    for record in records:
        kind = record.get("kind")
        if kind == "window":
            open_ns = record.get("open_monotonic_ns", open_ns)
        elif kind == "plan":
            r = row(record)
            r.price, r.volume = record.get("price"), record.get("volume")
            if isinstance(record.get("open_monotonic_ns"), int):
                opens[(r.account, r.isin)] = record["open_monotonic_ns"]
        elif kind == "send":
            r = row(record)
            r.attempts += 1
            if r.first_send_ms is None:
                r.first_send_ms = ms(record)
            if r.result == "not sent":
                r.result = "sent, no answer"
        elif kind == "answer":
            r = row(record)
            if r.first_answer_ms is None:
                r.first_answer_ms = ms({k: v for k, v in record.items() if k != "vs_open_ms"})
            r.code = record.get("code")
            if record.get("accepted"):
                r.accepted = True
                r.serial_number = record.get("serial_number")
                r.tracking_number = record.get("tracking_number")
        elif kind in ("skip", "error", "outcome"):
            r = row(record)
            if kind == "outcome":
                r.accepted = bool(record.get("accepted", r.accepted))
                r.code = record.get("code", r.code)
            r.result = str(record.get("reason") or record.get("result") or kind)
    for r in rows.values():
        if r.accepted:
            r.result = "accepted"
    return list(rows.values())


def window_info(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    windows = [r for r in records if r.get("kind") == "window"]
    return windows[-1] if windows else None
