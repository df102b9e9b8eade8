"""`python -m daemon demo`: a full open against the embedded simulator, for a first look and a rehearsal."""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.cli import add_common
from daemon.cli.output import print_json, print_table
from daemon.clock import SystemClock
from daemon.config import validate_config
from daemon.demo import DEMO_SEED, run_demo
from daemon.errors import ConfigError, UserError
from daemon.logs import register_secret
from daemon.notify import Notifications


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="a whole open against the embedded simulator (no broker account needed)")
    add_common(parser)
    parser.add_argument(
        "--accounts",
        type=int,
        default=20,
        help="simulated accounts over six brokers: three Ephoenix, one Exir, one Online+ and Mofid on easytrader (default 20)",
    )
    parser.add_argument(
        "--skew-ms", type=float, default=1500.0, help="how far the simulated broker's clock is off (default 1500)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEMO_SEED,
        help=f"the simulator's draws (captchas, serial numbers); the same seed, the same demo (default {DEMO_SEED})",
    )
    parser.add_argument(
        "--dir", type=Path, help="keep the demo's cache, journal and config here (default: a temporary folder)"
    )
    parser.add_argument(
        "--notify",
        metavar="URL",
        help='an apprise URL (README "Notifications") that gets the fire summary and the fill summary',
    )
    parser.set_defaults(afunc=run)


async def check_notify_url(url: str) -> None:
    """A URL apprise cannot use (or no apprise) is one sentence before the simulator starts; the URL is a secret."""
    if not url.strip():
        raise UserError("--notify needs an apprise URL, e.g. json://127.0.0.1:8080/hook or tgram://TOKEN/CHAT.")
    register_secret(url)  # a URL may carry a bot token: never in the output
    try:
        notify = Notifications.from_config(validate_config({"notify": {"urls": [url]}}), SystemClock())
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("notify.urls[0]", "--notify")) from None
    if notify is not None:
        await notify.aclose()


async def run(args: argparse.Namespace) -> int:
    if not 1 <= args.accounts <= 2000:
        raise UserError("--accounts must be between 1 and 2000.")
    if args.notify is not None:
        await check_notify_url(args.notify)
    if not args.json:
        print(
            f"Starting a simulated broker on 127.0.0.1 with {args.accounts} accounts; its clock is "
            f"{args.skew_ms:+.0f} ms off. Logging in (captchas read by OCR), warming up, then the open...",
            flush=True,
        )
    result = await run_demo(
        SystemClock(),
        accounts=args.accounts,
        skew_ms=args.skew_ms,
        workdir=args.dir,
        notify_url=args.notify,
        seed=args.seed,
    )
    summary = result.summary()
    if args.json:
        print_json(
            {
                "summary": summary,
                "orders": [r.to_dict() for r in result.rows],
                "warmup": [w.to_dict() for w in result.warmup],
            }
        )
        return 0 if result.ok else 1
    print()
    print_table(
        [
            "account",
            "broker",
            "price",
            "volume",
            "first send vs open (ms)",
            "answer after open (ms)",
            "attempts",
            "result",
            "fill",
            "executed",
            "fill value (rial)",
        ],
        [
            [
                r.account,
                r.broker,
                r.price,
                r.volume,
                r.first_send_ms,
                r.first_answer_ms,
                r.attempts,
                r.result,
                r.fill_state or "-",
                r.executed,
                None if r.fill_value is None else f"{round(r.fill_value):,}",
            ]
            for r in result.rows
        ],
    )
    print()
    print(f"{summary['accepted']} of {summary['orders']} orders accepted.")
    if summary["measured_offset_ms"] is not None:
        print(
            f"Broker clock: off by {summary['broker_skew_ms']:+.0f} ms, measured {summary['measured_offset_ms']:+.1f} ms "
            f"(error {summary['offset_error_ms']:.1f} ms)."
        )
    if summary["arrival_after_open_ms"]:
        a = summary["arrival_after_open_ms"]
        print(
            f"First orders reached the broker {a['min']:.2f} to {a['max']:.2f} ms after the open (median {a['p50']:.2f} ms)."
        )
    print(
        f"After the open: {summary['orders_seen_filled']} orders filled in part or in full, "
        f"{summary['filled_shares']:,} shares for {summary['filled_rial']:,} rial "
        f"(the simulator filled {summary['fills_made']}; {summary['tracking_beats']} reads of each account's orders)."
    )
    if args.notify is not None:
        told = ", ".join(summary["notified"]) or "nothing"
        print(f"Notified: {told}." + ("" if not result.notify_failed else " The URL refused a message (see the log)."))
    return 0 if result.ok else 1
