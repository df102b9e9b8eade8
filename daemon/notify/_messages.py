"""The messages' words: short, in the trader's terms (which accounts got in, which did not and why)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
TITLE = "opening-bell"


@dataclass(frozen=True)
class Message:
    event: str
    title: str
    body: str


class Words:
    """Numbers as the user reads them: Western digits, or Persian ones (`notify.persian_digits`)."""

    def __init__(self, persian_digits: bool = False) -> None:
        self.persian = persian_digits

    def n(self, value: Any) -> str:
        text = f"{value:,}" if isinstance(value, int) else str(value)
        return text.translate(PERSIAN_DIGITS) if self.persian else text

    def day(self, value: date) -> str:
        return self.n(value.isoformat())

    def clock(self, value: datetime) -> str:
        return self.n(value.strftime("%H:%M:%S"))

    def fire_summary(self, day: date, rows: Sequence[Any]) -> Message:
        """The day's fire in a few lines: how many got in, then one line per order (accepted first)."""
        accepted = [r for r in rows if r.accepted]
        lines = [f"{self.day(day)}: {self.n(len(accepted))} of {self.n(len(rows))} orders in."]
        for r in sorted(rows, key=lambda r: not r.accepted):
            where = f"{r.account} ({r.broker})" if r.broker else r.account
            if r.accepted:
                size = f" {self.n(r.volume)} @ {self.n(r.price)}" if r.volume and r.price else ""
                when = f", {self.n(round(r.first_send_ms))} ms after the open" if r.first_send_ms is not None else ""
                lines.append(f"in: {where} {r.side} {r.isin}{size}{when}")
            else:
                lines.append(f"NOT in: {where} {r.side} {r.isin}: {r.result}")
        return Message("fire_summary", f"{TITLE}: {self.n(len(accepted))}/{self.n(len(rows))} in", "\n".join(lines))

    def fill_summary(self, day: date, rows: Sequence[Any]) -> Message:
        """What the accepted orders became: the day's shares and rial filled, then one line per account."""
        shares = sum(r.executed or 0 for r in rows)
        rial = round(sum(r.fill_value or 0 for r in rows))
        filled = sum(r.fill_state == "filled" for r in rows)
        lines = [
            f"{self.day(day)}: {self.n(shares)} shares filled for {self.n(rial)} rial; "
            f"{self.n(filled)} of {self.n(len(rows))} orders filled in full."
        ]
        accounts: dict[str, list[Any]] = {}
        for r in rows:
            accounts.setdefault(r.account, []).append(r)
        for account, own in accounts.items():
            broker = own[0].broker
            where = f"{account} ({broker})" if broker else account
            got = round(sum(r.fill_value or 0 for r in own))
            parts = [self._fill_part(r) for r in own]
            lines.append(
                f"{where}: {self.n(sum(r.executed or 0 for r in own))} shares, {self.n(got)} rial: " + "; ".join(parts)
            )
        return Message("fill_summary", f"{TITLE}: {self.n(shares)} shares filled", "\n".join(lines))

    def _fill_part(self, r: Any) -> str:
        state = r.fill_state or "not followed"
        if state == "unknown":
            return f"{r.isin} unknown, check the broker ({r.fill_reason or 'not read'})"
        done = f" {self.n(r.executed or 0)} of {self.n(r.volume)}" if r.volume else ""
        return f"{r.isin}{done} {state}"

    def unknown_fills(self, day: date, rows: Sequence[Any]) -> Message:
        lines = [
            f"{self.day(day)}: {self.n(len(rows))} accepted order(s) could not be followed to the close; "
            "check them in the broker's order list."
        ]
        lines += [f"{r.account} ({r.broker}) {r.side} {r.isin}: {r.fill_reason or 'not read'}" for r in rows]
        return Message("unknown_order", f"{TITLE}: fill state unknown", "\n".join(lines))

    def warmup_failed(self, day: date, account: str, broker: str, reason: str) -> Message:
        return Message(
            "warmup_failed",
            f"{TITLE}: {account} not ready",
            f"{self.day(day)}: account {account} ({broker}) is not ready for the open: {reason}. "
            "Its orders will not go out unless this is fixed before the arm.",
        )

    def token_renewal_failed(self, day: date, account: str, reason: str) -> Message:
        return Message(
            "token_renewal_failed",
            f"{TITLE}: {account} login not renewed",
            f"{self.day(day)}: the login of account {account} could not be renewed: {reason}. "
            "It is tried again on the next refresh and at the arm.",
        )

    def restarted_in_window(self, day: date, at: datetime) -> Message:
        return Message(
            "service_stopped_in_window",
            f"{TITLE}: restarted inside the window",
            f"{self.day(day)}: the service (re)started at {self.clock(at)}, inside the fire window. Orders it may "
            "have sent before are asked of the broker before anything is sent for them.",
        )

    def unknown_orders(self, day: date, rows: Sequence[Any]) -> Message:
        lines = [
            f"{self.day(day)}: {self.n(len(rows))} order(s) with no final answer; check them in the broker's order list."
        ]
        lines += [f"{r.account} ({r.broker}) {r.side} {r.isin}: {r.result}" for r in rows]
        return Message("unknown_order", f"{TITLE}: order state unknown", "\n".join(lines))

    def test(self, at: datetime) -> Message:
        return Message(
            "test", f"{TITLE}: test", f"A test message sent at {self.clock(at)}: notifications reach you here."
        )
