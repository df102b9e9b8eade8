"""`python -m daemon fire`: arm, final check and fire once, now or at a given instant, then the report."""

from __future__ import annotations

import argparse
from datetime import datetime, time, timedelta

from daemon.cli import add_common
from daemon.clock import SystemClock
from daemon.config import Config, load_config
from daemon.errors import UserError
from daemon.executor import Executor
from daemon.journal import Journal, read_journal
from daemon.preflight import preflight
from daemon.output import print_json, print_table
from daemon.report import summarize
from daemon.services import Services


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("fire", help="send every account's order at the open (or --at / --now), once")
    add_common(parser)
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--at", metavar="HH:MM:SS.fff", help="the open instant today, on the broker's clock (exchange time zone)")
    when.add_argument("--now", action="store_true", help="fire as soon as the plans are armed")
    parser.add_argument("--accounts", nargs="+", metavar="NAME", help="only these accounts (default: all enabled)")
    parser.add_argument("--dry-run", action="store_true", help="build and print the plans and the clock estimate; send nothing")
    parser.set_defaults(afunc=run)


def open_instant(config: Config, at: str | None, now: datetime) -> datetime:
    """Today's open on the exchange's clock: --at, else the configured open; an instant already past is refused."""
    local_now = now.astimezone(config.tz)
    if at:
        try:
            moment = time.fromisoformat(at)
        except ValueError:
            raise UserError(f"--at {at!r} is not a time like 08:45:00.000.") from None
    else:
        moment = config.schedule.open
    instant = datetime.combine(local_now.date(), moment, tzinfo=config.tz)
    if instant <= local_now:
        raise UserError(f"the open {instant:%H:%M:%S} {config.timezone} has passed today; use --at with a later time or --now.")
    return instant


async def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, require_file=True)
    accounts = config.select_accounts(args.accounts)
    await preflight(config)
    clock = SystemClock()
    placeholder = clock.now() + timedelta(seconds=60)
    open_at = placeholder.astimezone(config.tz) if args.now else open_instant(config, args.at, clock.now())
    async with Services(config, clock) as services:
        journal = Journal(config.state_dir, open_at.astimezone(config.tz).date())
        executor = Executor(services, journal, day=open_at.astimezone(config.tz).date())
        try:
            plans = await executor.arm(accounts, open_at)
            if args.dry_run:
                return _print_dry_run(executor, args.json)
            if args.now:
                await executor.final_check()
                executor.retarget(executor.broker_now() + timedelta(milliseconds=200))
                await executor.fire()
            elif plans:
                await executor.run_after_arm()
            else:
                await executor.fire()
        finally:
            await executor.aclose()
    rows = summarize(read_journal(config.state_dir, executor.day))
    if args.json:
        print_json({"orders": [r.to_dict() for r in rows]})
    else:
        print_table(["account", "symbol", "volume", "first send vs open (ms)", "attempts", "code", "result"],
                    [[r.account, r.isin, r.volume, r.first_send_ms, r.attempts, r.code, r.result] for r in rows])
    return 0 if rows and all(r.accepted for r in rows) else 1


def _print_dry_run(executor: Executor, as_json: bool) -> int:
    plans = [{"account": p.account, "broker": p.broker, "isin": p.isin, "side": p.side, "price": p.price,
              "volume": p.volume, "slot": p.slot, "send_vs_open_ms": round((p.send_at_ns - p.open_monotonic_ns) / 1e6, 3)}
             for p in executor.plans]
    clocks = {b: {"offset_ms": round(c.estimate.offset_s * 1000, 3), "uncertainty_ms": round(c.estimate.uncertainty_s * 1000, 3),
                  "rtt_ms": round(c.rtt_ns / 1e6, 3), "source": c.estimate.source} for b, c in executor.clocks.items()}
    if as_json:
        print_json({"open_at": executor.open_at, "plans": plans, "clocks": clocks, "sent": 0})
        return 0
    print_table(list(plans[0]) if plans else ["account"], [list(p.values()) for p in plans])
    print()
    print_table(["broker", "offset (ms)", "uncertainty (ms)", "round trip (ms)", "source"],
                [[b, c["offset_ms"], c["uncertainty_ms"], c["rtt_ms"], c["source"]] for b, c in clocks.items()])
    print("\ndry run: nothing was sent.")
    return 0
