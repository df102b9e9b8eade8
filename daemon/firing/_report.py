"""What happened at the open, per account and order, read back from the day's journal.

Journal record kinds (written by the executor): `arm`, `window` (the open on the local monotonic clock, the
clock offset), `plan`, `intent` (written ahead of the first send, with its planned instant), `send`,
`answer`, `error`, `lookup` (what the broker's order lists said), `skip` and `outcome`; after the window the
tracker adds `fill` (what the broker's lists show of an accepted order: see `FILL_FIELDS`) and, once it has
told the user, `tracked` (the accounts whose fill summary went out; not part of any row). The report is a
pure function of them, so it is the same right after the window, days later, or in a process restarted
inside the window: records from before and after a restart merge into one row per order (first send
ever, attempts in all, the final answer). The same reading tells a restarted executor what is left to do
(`resume_action`).

Each row ends in one state:
  accepted    the broker took the order (its answer, or found in its order lists)
  rejected    a final refusal (code and message): resending cannot help
  not placed  every answer was "not yet" / "too soon" until the attempts or the window ran out
  unknown     sent, and neither an answer nor the broker's lists say whether it exists: check the broker
  not sent    never sent (not ready, nothing to sell, another process's account, ...), and why

and an accepted order the tracker has followed also has a fill state (`FillState`): queued (nothing executed yet),
partly filled, filled, cancelled (the broker ended it; `executed` says how much had traded) or unknown (the
tracker could not read or could not find it: check the broker).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

State = Literal["accepted", "rejected", "not placed", "unknown", "not sent"]
Action = Literal["done", "plan", "ask_broker"]
Key = tuple[str, str, str]
FINAL_STATES = frozenset({"accepted", "rejected", "not placed"})
FillState = Literal["queued", "partly filled", "filled", "cancelled", "unknown"]
FILL_STATES: tuple[FillState, ...] = ("queued", "partly filled", "filled", "cancelled", "unknown")
FILL_FIELDS = ("executed", "average_price", "fill_value", "fill_state", "fill_at")
"""A `fill` record carries account, broker, isin, side, serial_number, tracking_number, volume, and these: `executed`
(shares traded so far), `average_price` (rial per share, or None), `fill_value` (rial traded: executed x average
price), `fill_state` (a `FillState`), `fill_at` (when the tracker read it, ISO, the exchange's zone), and `reason`
for an unknown one. The last `fill` record of an order is what it became."""


def order_key(record: dict[str, Any]) -> Key:
    """(account, isin, side); journals from before sides were recorded hold buys."""
    return (str(record.get("account")), str(record.get("isin")), str(record.get("side") or "buy"))


@dataclass
class ReportRow:
    account: str
    broker: str | None
    isin: str
    side: str = "buy"
    price: int | None = None
    volume: int | None = None
    first_send_ms: float | None = None  # first send relative to the open instant (negative: before it)
    first_answer_ms: float | None = None
    attempts: int = 0
    accepted: bool = False
    state: State = "not sent"
    code: int | None = None
    status: int | None = None  # the last answer's HTTP status
    message: str | None = None
    result: str = "not sent"
    serial_number: int | None = None
    tracking_number: str | None = None
    planned_wall_ns: int | None = None  # the earliest planned first send of any intent (wall clock)
    planned_broker_time: str | None = None  # the same instant on the broker's clock (ISO)
    restarts: int = 0  # how many times a later process took this order up again
    fill_state: FillState | None = None  # None: not followed after the window (yet)
    executed: int | None = None  # shares traded
    average_price: float | None = None
    fill_value: float | None = None  # rial traded
    fill_at: str | None = None  # when the broker's lists were last read for it
    fill_reason: str | None = None  # why the fill state is unknown

    @property
    def key(self) -> Key:
        return (self.account, self.isin, self.side)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(records: list[dict[str, Any]]) -> list[ReportRow]:
    """One row per (account, isin, side), in the order the journal first names them."""
    rows: dict[Key, ReportRow] = {}
    opens: dict[Key, int] = {}
    why: dict[Key, str] = {}  # the last reason a row is not final, for its result text
    open_ns: int | None = None

    def row(record: dict[str, Any]) -> ReportRow:
        key = order_key(record)
        if key not in rows:
            rows[key] = ReportRow(account=key[0], broker=record.get("broker"), isin=key[1], side=key[2])
        return rows[key]

    def ms(record: dict[str, Any], key: Key) -> float | None:
        reference = opens.get(key, open_ns)
        monotonic_ns = record.get("monotonic_ns")
        if reference is None or not isinstance(monotonic_ns, int):
            return None
        return round((monotonic_ns - reference) / 1e6, 3)

    for record in records:
        kind = record.get("kind")
        if kind == "window":
            open_ns = record.get("open_monotonic_ns", open_ns)
            continue
        if kind not in ("plan", "intent", "send", "answer", "error", "lookup", "skip", "outcome", "fill"):
            continue
        r = row(record)
        if kind in ("plan", "intent"):
            r.price, r.volume = record.get("price", r.price), record.get("volume", r.volume)
            if isinstance(record.get("open_monotonic_ns"), int):
                opens[r.key] = record["open_monotonic_ns"]
            planned = record.get("planned_wall_ns")
            if kind == "intent" and isinstance(planned, int):
                if r.planned_wall_ns is not None:
                    r.restarts += 1
                if r.planned_wall_ns is None or planned < r.planned_wall_ns:
                    r.planned_wall_ns, r.planned_broker_time = planned, record.get("planned_broker_time")
        elif kind == "send":
            r.attempts += 1
            if r.first_send_ms is None:
                r.first_send_ms = record["vs_open_ms"] if "vs_open_ms" in record else ms(record, r.key)
            if r.state not in FINAL_STATES:
                r.state, why[r.key] = "unknown", "sent, and no final answer in the journal"
        elif kind == "answer":
            if r.first_answer_ms is None:
                r.first_answer_ms = ms(record, r.key)
            r.code, r.status = record.get("code"), record.get("status")
            r.message = record.get("message") or r.message
            if record.get("accepted"):
                _accept(r, record)
                why[r.key] = "accepted"
            elif r.state not in FINAL_STATES:
                why[r.key] = _answer_text(record)
        elif kind == "error":
            if r.state not in FINAL_STATES and r.attempts:
                why[r.key] = f"no answer ({record.get('reason')})"
        elif kind == "lookup":
            if record.get("presence") == "found":
                _accept(r, record)
                why[r.key] = "found at the broker"
        elif kind == "skip":
            reason = str(record.get("reason") or "skipped")
            if r.state in FINAL_STATES or r.attempts:
                pass
            elif r.planned_wall_ns is not None:  # an earlier process's intent: it may have gone out before the crash
                r.state, why[r.key] = "unknown", f"an earlier process may have sent it; then {reason}"
            else:
                r.state, why[r.key] = "not sent", reason
        elif kind == "outcome":
            _outcome(r, record, why)
        elif kind == "fill":
            _fill(r, record)
    for r in rows.values():
        r.result = _result_text(r, why.get(r.key))
    return list(rows.values())


def resume_action(row: ReportRow | None, now_wall_ns: int) -> Action:
    """What a process taking the day up again must do for this order before anything is sent.

    done: it ended (accepted, rejected, not placed); plan: it was never sent and its planned instant has
    not passed; ask_broker: it may have been sent (a send, or an intent whose instant passed, and no final
    answer), so the broker's lists decide.
    """
    if row is None:
        return "plan"
    if row.state in FINAL_STATES:
        return "done"
    if row.attempts or (row.planned_wall_ns is not None and row.planned_wall_ns <= now_wall_ns):
        return "ask_broker"
    return "plan"


def _accept(r: ReportRow, record: dict[str, Any]) -> None:
    r.accepted, r.state = True, "accepted"
    r.serial_number = record.get("serial_number") or r.serial_number
    r.tracking_number = record.get("tracking_number") or r.tracking_number


def _fill(r: ReportRow, record: dict[str, Any]) -> None:
    state = record.get("fill_state")
    r.fill_state = state if state in FILL_STATES else "unknown"
    for name in ("executed", "average_price", "fill_value", "fill_at"):
        if name in record:
            setattr(r, name, record[name])
    r.fill_reason = record.get("reason") if r.fill_state == "unknown" else None
    r.serial_number = r.serial_number or record.get("serial_number")
    r.tracking_number = r.tracking_number or record.get("tracking_number")


def _outcome(r: ReportRow, record: dict[str, Any], why: dict[Key, str]) -> None:
    state = record.get("state") or _legacy_state(record)
    if state == "accepted":
        _accept(r, record)
        why[r.key] = str(record.get("reason") or "accepted")
        return
    if r.state == "accepted":
        return  # accepted once is accepted: a later process's view cannot undo it
    r.code = record.get("code", r.code)
    r.status = record.get("status", r.status)
    r.message = record.get("message") or r.message
    r.state = state if state in ("rejected", "not placed", "unknown", "not sent") else "unknown"
    why[r.key] = str(record.get("reason") or state)


def _legacy_state(record: dict[str, Any]) -> str:
    """Outcomes written before states were recorded: accepted, a final code, or (lost answers) unknown."""
    if record.get("accepted"):
        return "accepted"
    code = record.get("code")
    if isinstance(code, int) and code not in (1017, 1018):
        return "rejected"
    return "unknown"


def _answer_text(record: dict[str, Any]) -> str:
    code, status = record.get("code"), record.get("status")
    if code is None and status is not None:
        return f"HTTP {status} without a broker code"
    return f"code {code}" if code is not None else "an answer that could not be read"


def _result_text(r: ReportRow, why: str | None) -> str:
    """The row's one phrase: its state, and why when that is not obvious."""
    if r.state == "accepted":
        return "accepted" if not why or why == "accepted" else f"accepted ({why})"
    if r.state == "rejected":
        detail = f"{r.code}: {r.message}" if r.message else f"{r.code}"
        return f"rejected ({detail})"
    if r.state == "unknown":
        return f"unknown: check the broker ({why or 'no final answer'})"
    return f"{r.state}: {why}" if why else r.state


def window_info(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    windows = [r for r in records if r.get("kind") == "window"]
    return windows[-1] if windows else None
