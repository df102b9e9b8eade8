"""`python -m daemon report`: per order, when it left against the open, how it ended and what it became (the
tracker's fills); a day's summary, or with `--days N` a table per trading day and a total; `--plot` draws it."""

from __future__ import annotations

import argparse
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from daemon.cli import add_common
from daemon.cli._summary import account_totals, fill_label, rial, summarize_rows, summary_lines
from daemon.cli.output import print_json, print_table
from daemon.clock import SystemClock
from daemon.config import Config, load_config
from daemon.days import TradingCalendar, calendar_for
from daemon.errors import UserError
from daemon.firing import ReportRow, journal_path, read_journal, summarize, window_info

HEADERS = [
    "account",
    "broker",
    "symbol",
    "side",
    "price",
    "volume",
    "first send vs open (ms)",
    "attempts",
    "answer",
    "result",
    "fill",
    "executed",
    "value (rial)",
]
TOTAL_HEADERS = ["account", "days", "orders", "accepted", "shares filled", "value (rial)", "median first send (ms)"]
MAX_DAYS = 366
NO_JOURNAL = "no journal"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="what happened at the open and what each order became, from the journal")
    add_common(parser)
    parser.add_argument("--date", help="the trading day, YYYY-MM-DD (default: today in the exchange's time zone)")
    parser.add_argument(
        "--days",
        metavar="N",
        help=f"the N trading days ending at --date (1 to {MAX_DAYS}): a table per day with a journal, and a total",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the first sends and answers against the open, one row per account (needs the plot extra)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, clock: SystemClock | None = None) -> int:
    count = _count(args.days)
    config = load_config(args.config)
    end = _day(args.date, config, clock or SystemClock())
    if count is None:
        return _one_day(args, config, end)
    return _range(args, config, end, count)


def _one_day(args: argparse.Namespace, config: Config, day: date) -> int:
    records = _read(config, day)
    if not records:
        raise UserError(
            f"no journal for {day} in {journal_path(config.state_dir, day).parent}; check --date and state_dir."
        )
    rows = summarize(records)
    summary = summarize_rows(rows)
    if args.plot:
        _plot(args.plot, [(day, rows)], f"first sends and answers against the open, {day}")
    if args.json:
        print_json(
            {"date": day.isoformat(), "window": window_info(records), "orders": _dicts(rows), "summary": summary}
        )
        return 0
    _print_day(rows, summary, f"on {day}", window_info(records))
    return 0


def _range(args: argparse.Namespace, config: Config, end: date, count: int) -> int:
    trading = trading_days_ending(calendar_for(config), end, count)
    found: list[tuple[date, list[dict[str, Any]]]] = []
    skipped: list[date] = []
    for day in trading:
        records = _read(config, day)
        if records:
            found.append((day, records))
        else:
            skipped.append(day)
    span = f"the {count} trading day{'s' if count > 1 else ''} from {trading[0]} to {trading[-1]}"
    if not found:
        raise UserError(
            f"no journal for any of {span} in {journal_path(config.state_dir, end).parent}; "
            "check --date, --days and state_dir."
        )
    days = [(day, summarize(records)) for day, records in found]
    total = summarize_rows(row for _, rows in days for row in rows)
    accounts = account_totals(days)
    if args.plot:
        _plot(args.plot, days, f"first sends and answers against the open, {trading[0]} to {trading[-1]}")
    if args.json:
        windows = {day: window_info(records) for day, records in found}
        print_json(
            {
                "from": trading[0].isoformat(),
                "to": trading[-1].isoformat(),
                "trading_days": [day.isoformat() for day in trading],
                "days": [
                    {
                        "date": day.isoformat(),
                        "window": windows[day],
                        "orders": _dicts(rows),
                        "summary": summarize_rows(rows),
                    }
                    for day, rows in days
                ],
                "skipped": [{"date": day.isoformat(), "reason": NO_JOURNAL} for day in skipped],
                "total": {**total, "days": len(days), "accounts": accounts},
            }
        )
        return 0
    for (day, rows), (_, records) in zip(days, found):
        print(f"== {day} ({day:%A}) ==")
        _print_day(rows, summarize_rows(rows), f"on {day}", window_info(records))
        print()
    if skipped:
        print(f"{NO_JOURNAL} (skipped): " + ", ".join(f"{day} ({day:%a})" for day in skipped) + ".\n")
    print(f"== total: {span}, {len(days)} with a journal ==")
    print_table(
        TOTAL_HEADERS,
        [
            [
                a["account"],
                a["days"],
                a["orders"],
                a["accepted"],
                f"{a['shares_filled']:,}",
                rial(a["rial_filled"]),
                a["median_first_send_ms"],
            ]
            for a in accounts
        ],
    )
    print()
    for line in summary_lines(total, f"over {len(days)} day{'s' if len(days) > 1 else ''}"):
        print(line)
    return 0


def trading_days_ending(calendar: TradingCalendar, end: date, count: int) -> list[date]:
    """The `count` trading days up to `end` (included when it is one), oldest first; a calendar with too few of
    them in the span searched (7 days a trading day, and a year more for holidays) is a broken config."""
    days: list[date] = []
    day = end
    for _ in range(7 * count + 400):
        if calendar.is_trading_day(day):
            days.append(day)
            if len(days) == count:
                return days[::-1]
        day -= timedelta(days=1)
    raise UserError(
        f"fewer than {count} trading days in the {7 * count + 400} days up to {end}; "
        "check schedule.trading_days, holidays and holidays_file."
    )


def _print_day(rows: list[ReportRow], summary: dict[str, Any], what: str, window: dict[str, Any] | None) -> None:
    print_table(HEADERS, [_cells(r) for r in rows])
    print()
    for line in summary_lines(summary, what):
        print(line)
    if window:
        print(
            f"clock offset {window.get('offset_ms')} ms (+- {window.get('uncertainty_ms')} ms, {window.get('offset_source')})."
        )


def _cells(r: ReportRow) -> list[Any]:
    label = fill_label(r)
    fill = f"unknown ({r.fill_reason})" if label == "unknown" and r.fill_reason else label
    executed = None
    if label is not None and r.executed is not None:
        executed = f"{r.executed:,} of {r.volume:,}" if r.volume else f"{r.executed:,}"
    value = rial(r.fill_value) if r.fill_value is not None else None
    return [
        r.account,
        r.broker,
        r.isin,
        r.side,
        r.price,
        r.volume,
        r.first_send_ms,
        r.attempts,
        r.code,
        r.result,
        fill,
        executed,
        value,
    ]


def _dicts(rows: list[ReportRow]) -> list[dict[str, Any]]:
    """Each order's row, with its fill in the table's words (`fill`: a fill state, "not followed", or None)."""
    return [{**r.to_dict(), "fill": fill_label(r)} for r in rows]


def _plot(target: str, days: list[tuple[date, list[ReportRow]]], title: str) -> None:
    from daemon.cli._plot import draw  # matplotlib is imported there, and only for --plot

    draw(Path(target), days, title)


def _read(config: Config, day: date) -> list[dict[str, Any]]:
    try:
        return read_journal(config.state_dir, day)
    except OSError as exc:
        raise UserError(
            f"the journal {journal_path(config.state_dir, day)} cannot be read ({exc.strerror or exc}); "
            "check state_dir and its permissions."
        ) from None


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_DAYS:
        raise UserError(f"--days {text!r} is not a number of trading days from 1 to {MAX_DAYS}.")
    return count


def _day(text: str | None, config: Config, clock: SystemClock) -> date:
    if not text:
        return clock.now().astimezone(config.tz).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserError(f"--date {text!r} is not a date like 2026-11-28.") from None
