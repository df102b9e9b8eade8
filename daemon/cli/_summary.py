"""The report's sums: what a day's orders became (accepted of all, shares and rial filled, by state) and the same
per account over a range of days. Pure functions of the journal's report rows, so the table, `--json` and the
tests read one set of figures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from statistics import median
from typing import Any

from daemon.firing import FILL_STATES, ReportRow

STATES = ("accepted", "rejected", "not placed", "unknown", "not sent")
NOT_FOLLOWED = "not followed"
"""An accepted order the tracker has no `fill` record of (not followed yet, or tracking was off)."""
FILL_LABELS = (*FILL_STATES, NOT_FOLLOWED)


def fill_label(row: ReportRow) -> str | None:
    """The order's fill state in the report's words; None for an order that was never accepted (nothing to fill)."""
    if not row.accepted:
        return None
    return row.fill_state or NOT_FOLLOWED


def summarize_rows(rows: Iterable[ReportRow]) -> dict[str, Any]:
    """One day's (or a range's) figures: orders, accepted, by state; shares and rial filled, by fill state.

    Shares count whatever the broker's lists last showed executed, a cancelled or unknown order's included;
    `value_unknown` counts orders with shares executed but no value (the platform gave no average price)."""
    rows = list(rows)
    states = Counter(r.state for r in rows)
    fills = Counter(label for r in rows if (label := fill_label(r)) is not None)
    accepted = [r for r in rows if r.accepted]
    return {
        "orders": len(rows),
        "accepted": len(accepted),
        "states": {state: states[state] for state in STATES if states[state]},
        "shares_filled": sum(r.executed or 0 for r in accepted),
        "rial_filled": round(sum(r.fill_value or 0 for r in accepted), 2),
        "value_unknown": sum(1 for r in accepted if (r.executed or 0) > 0 and r.fill_value is None),
        "fill_states": {label: fills[label] for label in FILL_LABELS if fills[label]},
    }


def account_totals(days: Sequence[tuple[Any, Sequence[ReportRow]]]) -> list[dict[str, Any]]:
    """Per account over the days given (date, rows): days with an order, orders, accepted, shares and rial filled,
    the median first send against the open (ms); accounts in the order the journals first name them."""
    order: dict[str, list[ReportRow]] = {}
    active: dict[str, set[Any]] = {}
    for day, rows in days:
        for row in rows:
            order.setdefault(row.account, []).append(row)
            active.setdefault(row.account, set()).add(day)
    totals = []
    for account, rows in order.items():
        sums = summarize_rows(rows)
        sends = [r.first_send_ms for r in rows if r.first_send_ms is not None]
        totals.append(
            {
                "account": account,
                "days": len(active[account]),
                "orders": sums["orders"],
                "accepted": sums["accepted"],
                "shares_filled": sums["shares_filled"],
                "rial_filled": sums["rial_filled"],
                "median_first_send_ms": round(median(sends), 3) if sends else None,
            }
        )
    return totals


def rial(value: float | None) -> str:
    """Rial as people read them: whole, with thousands separators."""
    return "-" if value is None else f"{round(value):,}"


def summary_lines(summary: dict[str, Any], what: str) -> list[str]:
    """The summary in two sentences: "2 of 3 orders accepted on 2026-12-01, 1 rejected." and the fills'."""
    others = "".join(f", {n} {state}" for state, n in summary["states"].items() if state != "accepted")
    lines = [f"{summary['accepted']} of {summary['orders']} orders accepted {what}{others}."]
    if summary["accepted"]:
        by_state = ", ".join(f"{n} {label}" for label, n in summary["fill_states"].items())
        unknown = f" ({summary['value_unknown']} of unknown value)" if summary["value_unknown"] else ""
        lines.append(
            f"filled: {summary['shares_filled']:,} shares, {rial(summary['rial_filled'])} rial{unknown}; {by_state}."
        )
    return lines
