"""`python -m daemon schedule`: the coming warmups, arms, opens and windows, and the closed days between.

Times are shown in the exchange's zone and in this machine's, because an operator abroad (or a server
on UTC) has to see at a glance when the daemon will wake.
"""

from __future__ import annotations

import argparse
from datetime import datetime, tzinfo
from typing import Any

from daemon.cli import add_common
from daemon.cli.output import print_json, print_table
from daemon.clock import Clock, SystemClock
from daemon.config import load_config
from daemon.days import AgendaDay, agenda, jalali, time_of_day

MAX_DAYS = 366
"""`--days` at most: a year of trading days and more, and a bound on how long listing them can take."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schedule",
        help="the coming trading days' events and the closed days between",
        description="List warmup, arm, open and window_end for the coming trading days, in the exchange's time and local time.",
    )
    add_common(parser)
    parser.add_argument(
        "--days",
        type=_positive,
        default=5,
        metavar="N",
        help=f"how many trading days to show, up to {MAX_DAYS} (default: 5)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, clock: Clock | None = None, local_tz: tzinfo | None = None) -> int:
    """`local_tz` None means this machine's zone (TZ or /etc/localtime), looked up per instant for DST."""
    config = load_config(getattr(args, "config", None))
    now = (clock or SystemClock()).now()
    days = agenda(config, now, args.days)
    if getattr(args, "json", False):
        print_json(
            {
                "timezone": config.timezone,
                "now": _iso(now.astimezone(config.tz)),
                "days": [_day_json(d, local_tz) for d in days],
            }
        )
        return 0
    rows: list[list[Any]] = []
    for entry in days:
        head = [entry.day.isoformat(), jalali(entry.day), f"{entry.day:%a}"]
        if entry.closed is not None:
            rows.append([*head, f"closed: {entry.closed}", None, None])
        for event in entry.events:
            local = event.at.astimezone(local_tz)
            rows.append(
                [*head, event.kind, time_of_day(event.at), f"{local:%Y-%m-%d} {time_of_day(local)} {local.tzname()}"]
            )
    print_table(["date", "jalali", "day", "event", config.timezone, "local"], rows)
    return 0


def _day_json(entry: AgendaDay, local_tz: tzinfo | None) -> dict[str, Any]:
    return {
        "date": entry.day.isoformat(),
        "jalali": jalali(entry.day),
        "weekday": f"{entry.day:%A}",
        "closed": entry.closed,
        "events": [{"kind": e.kind, "at": _iso(e.at), "local": _iso(e.at.astimezone(local_tz))} for e in entry.events],
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"wants a whole number of days from 1 to {MAX_DAYS}, not {text!r}")
    return value
