"""`python -m daemon report`: per account, when its first order left against the open and how it ended."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import date

from daemon.cli import add_common
from daemon.cli.output import print_json, print_table
from daemon.clock import SystemClock
from daemon.config import load_config
from daemon.errors import UserError
from daemon.firing import journal_path, read_journal, summarize, window_info

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
]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="what happened at the open, from the day's journal")
    add_common(parser)
    parser.add_argument("--date", help="the trading day, YYYY-MM-DD (default: today in the exchange's time zone)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, clock: SystemClock | None = None) -> int:
    config = load_config(args.config)
    day = _day(args.date, config, clock or SystemClock())
    records = read_journal(config.state_dir, day)
    if not records:
        raise UserError(
            f"no journal for {day} in {journal_path(config.state_dir, day).parent}; check --date and state_dir."
        )
    rows = summarize(records)
    window = window_info(records)
    if args.json:
        print_json({"date": day.isoformat(), "window": window, "orders": [r.to_dict() for r in rows]})
        return 0
    print_table(
        HEADERS,
        [
            [r.account, r.broker, r.isin, r.side, r.price, r.volume, r.first_send_ms, r.attempts, r.code, r.result]
            for r in rows
        ],
    )
    accepted = sum(r.accepted for r in rows)
    others = Counter(r.state for r in rows if not r.accepted)
    detail = "".join(f", {n} {state}" for state, n in others.most_common())
    print(f"\n{accepted} of {len(rows)} orders accepted on {day}{detail}.")
    if window:
        print(
            f"clock offset {window.get('offset_ms')} ms (+- {window.get('uncertainty_ms')} ms, {window.get('offset_source')})."
        )
    return 0


def _day(text: str | None, config, clock: SystemClock) -> date:
    if not text:
        return clock.now().astimezone(config.tz).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserError(f"--date {text!r} is not a date like 2026-11-28.") from None
