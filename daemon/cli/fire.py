"""`python -m daemon fire`: arm, final check and fire once, now or at a given instant, then the report."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime, time, timedelta

from daemon.cli import add_common
from daemon.cli.output import print_json, print_table
from daemon.clock import SystemClock
from daemon.config import Config, load_config
from daemon.errors import UserError
from daemon.executor import Executor
from daemon.firing import Journal, ReportRow
from daemon.preflight import preflight
from daemon.wiring import Wiring


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("fire", help="send every account's order at the open (or --at / --now), once")
    add_common(parser)
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--at", metavar="HH:MM:SS.fff", help="the open instant today, on the broker's clock (exchange time zone)"
    )
    when.add_argument("--now", action="store_true", help="fire as soon as the plans are armed")
    parser.add_argument("--accounts", nargs="+", metavar="NAME", help="only these accounts (default: all enabled)")
    parser.add_argument(
        "--dry-run", action="store_true", help="build and print the plans and the clock estimate; send nothing"
    )
    parser.set_defaults(afunc=run)


def open_instant(config: Config, at: str | None, now: datetime) -> datetime:
    """Today's open on the exchange's clock: --at, else the configured open. An instant whose window is still
    open (a restart after a crash at the open) is kept: the window resumes. One whose window has closed is refused."""
    local_now = now.astimezone(config.tz)
    if at:
        try:
            moment = time.fromisoformat(at)
        except ValueError:
            raise UserError(f"--at {at!r} is not a time like 08:45:00.000.") from None
    else:
        moment = config.schedule.open
    instant = datetime.combine(local_now.date(), moment, tzinfo=config.tz)
    if instant + timedelta(seconds=config.schedule.window_s) <= local_now:
        raise UserError(
            f"the fire window of the open {instant:%H:%M:%S} {config.timezone} has closed today; "
            f"use --at with a later time or --now."
        )
    return instant


async def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, require_file=True)
    accounts = config.select_accounts(args.accounts)
    await preflight(config)
    clock = SystemClock()
    placeholder = clock.now() + timedelta(seconds=60)
    open_at = placeholder.astimezone(config.tz) if args.now else open_instant(config, args.at, clock.now())
    day = open_at.astimezone(config.tz).date()
    async with Wiring(config, clock) as services:
        journal = Journal(config.state_dir, day)
        executor = Executor.from_wiring(services, journal, day=day)
        if not (args.dry_run or args.now):
            rows = await executor.run_open(accounts, open_at)
            services.log_requests(accounts, "fire.requests")
            return print_summary(rows, journal, args.json)
        try:  # the two variants of the open: armed only, or fired at once instead of at the open
            await executor.arm(accounts, open_at)
            if args.dry_run:
                return _print_dry_run(executor, args.json)
            await executor.final_check()
            executor.retarget(executor.broker_now() + timedelta(milliseconds=200))
            await executor.fire()
            services.log_requests(accounts, "fire.requests")
        finally:
            await executor.aclose()
    return print_summary(executor.outcome(), journal, args.json)


def print_summary(rows: list[ReportRow], journal: Journal, as_json: bool) -> int:
    """The window's rows (with anything the disk did not take); 0 only when every order was accepted and the
    journal is whole."""
    problem = None
    if journal.write_failures:
        problem = (
            f"the journal {journal.path} could not be written {journal.write_failures} time(s)"
            + (f"; {journal.unwritten} line(s) are still not on disk" if journal.unwritten else "")
            + ": a restart today could not rely on it."
        )
    if as_json:
        print_json({"orders": [r.to_dict() for r in rows], "journal_problem": problem})
    else:
        print_table(
            ["account", "symbol", "side", "volume", "first send vs open (ms)", "attempts", "code", "result"],
            [[r.account, r.isin, r.side, r.volume, r.first_send_ms, r.attempts, r.code, r.result] for r in rows],
        )
        counts = Counter(r.state for r in rows)
        print("\n" + ", ".join(f"{n} {state}" for state, n in counts.most_common()) + f" of {len(rows)} orders.")
        if problem:
            print(f"journal: {problem}")
    return 0 if rows and all(r.accepted for r in rows) and problem is None else 1


def _print_dry_run(executor: Executor, as_json: bool) -> int:
    """Every selected order: the armed plans, and the ones not ready with their reason; 1 when any is not."""
    plans = [
        {
            "account": p.account,
            "broker": p.broker,
            "isin": p.isin,
            "side": p.side,
            "price": p.price,
            "volume": p.volume,
            "slot": p.slot,
            "send_vs_open_ms": round((p.send_at_ns - p.open_monotonic_ns) / 1e6, 3),
            "status": "ready",
        }
        for p in executor.plans
    ]
    plans += [
        {
            "account": s.account,
            "broker": None,
            "isin": s.isin,
            "side": s.side,
            "price": None,
            "volume": None,
            "slot": None,
            "send_vs_open_ms": None,
            "status": ("done: " if s.done else "not ready: ") + s.reason.removeprefix("not ready: "),
        }
        for s in executor.skipped
    ]
    clocks = {
        b: {
            "offset_ms": round(c.estimate.offset_s * 1000, 3),
            "uncertainty_ms": round(c.estimate.uncertainty_s * 1000, 3),
            "rtt_ms": round(c.rtt_ns / 1e6, 3),
            "source": c.estimate.source,
        }
        for b, c in executor.clocks.items()
    }
    unready = sum(1 for p in plans if str(p["status"]).startswith("not ready"))
    code = 1 if unready or not plans else 0
    if as_json:
        print_json({"open_at": executor.open_at, "plans": plans, "clocks": clocks, "sent": 0, "unready": unready})
        return code
    print_table(list(plans[0]) if plans else ["account"], [list(p.values()) for p in plans])
    print()
    print_table(
        ["broker", "offset (ms)", "uncertainty (ms)", "round trip (ms)", "source"],
        [[b, c["offset_ms"], c["uncertainty_ms"], c["rtt_ms"], c["source"]] for b, c in clocks.items()],
    )
    print(f"\ndry run: nothing was sent; {len(plans) - unready} of {len(plans)} orders ready.")
    return code
