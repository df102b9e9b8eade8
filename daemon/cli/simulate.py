"""`simulate`: run simulated brokers (Ephoenix by default) on this machine and print the config that points at them."""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import shlex
import signal
import sys
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from daemon.cli import add_common
from daemon.clock import SystemClock
from daemon.config import ScheduleSettings
from daemon.errors import UserError
from daemon.sim import (
    DEFAULT_BROKERS,
    DEFAULT_PASSWORD,
    DEFAULT_PLATFORM,
    LimiterSettings,
    OrderRules,
    SimSettings,
    Simulator,
    parse_fill,
    platform,
    platform_names,
    reserved_names,
)

TEHRAN = ZoneInfo("Asia/Tehran")
US = 1_000_000
DAY_US = 86_400 * US
WARMUP_GAP_US = 24 * 60 * US  # warmup to arm when the default 08:20 does not fit, as the defaults space them
_TIME = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$")
_BROKER = re.compile(r"^[a-z0-9]+$")
_LIMIT = re.compile(r"^(\d+)/(\d+(?:\.\d+)?)$")
SNIPPET_START = "# ---- config.yaml snippet for the simulator ----"
SNIPPET_END = "# ---- end of snippet ----"


SIMULATE_BROKERS = ",".join([*DEFAULT_BROKERS, "khobregan:exir", "hafez:onlineplus", "mofid:easytrader"])
"""The three Ephoenix brokers, an Exir tenant (khobregan, broker id 116), an Online+ tenant (hafez) and Mofid on
easytrader, so every wired platform is there to try."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "simulate",
        help="run a simulated Ephoenix broker on this machine",
        description="Serve simulated brokers (by default three on Ephoenix, an Exir and an Online+ tenant and Mofid on "
        "easytrader: captcha, login, orders, market data) on one port, "
        "print the config snippet that points the daemon at them, and run until Ctrl-C or SIGTERM.",
    )
    add_common(parser, json=False)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8800, help="port to listen on; 0 picks a free one (default: 8800)")
    parser.add_argument(
        "--accounts", type=int, default=3, help="simulated accounts, spread over the brokers (default: 3)"
    )
    parser.add_argument(
        "--brokers",
        default=SIMULATE_BROKERS,
        metavar="CODE[:PLATFORM],...",
        help="broker codes, comma-separated, each on a platform (default platform: ephoenix; "
        f"known: {', '.join(platform_names())}); default: {SIMULATE_BROKERS}",
    )
    parser.add_argument(
        "--open-at",
        metavar="HH:MM:SS[.fff]",
        help="when NewOrder starts accepting, Asia/Tehran time today on the simulator clock "
        "(default: 5 seconds after start, rounded up to the second)",
    )
    parser.add_argument(
        "--skew-ms", type=float, default=0.0, help="simulator clock minus host clock, in ms (default: 0)"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="ROUTE[@BROKER]:OPTION[,OPTION...]",
        help="latency or failure injection, repeatable; e.g. new_order:delay_ms=20,jitter_ms=5 "
        "or login:status=503,rate=0.1 (kinds: status=N html malformed truncated drop no_image; "
        "after = answer lost after processing)",
    )
    parser.add_argument(
        "--fill",
        action="append",
        default=[],
        metavar="ISIN=RATIO@DELAY[:PRICE][,...]",
        help="execute every accepted order of ISIN: floor(volume x RATIO) of it from DELAY after the open on "
        "(s, ms or m), at PRICE (default: the order's own), repeatable, one per instrument; e.g. "
        "IRO1FOLD0001=0.6@5s or IRO1FOLD0001=0.4@2s,1@60s:5570",
    )
    parser.add_argument("--request-log", type=Path, metavar="FILE", help="append every request as a JSON line to FILE")
    rules = parser.add_argument_group("broker behaviour")
    rules.add_argument(
        "--login-limit",
        default="150/60",
        metavar="CALLS/SECONDS",
        help="captcha+login calls one broker takes in a window before HTTP 429 (default: 150/60)",
    )
    rules.add_argument("--login-cooldown-s", type=float, default=420.0, help="how long the 429s last (default: 420)")
    rules.add_argument("--retry-after", action="store_true", help="send Retry-After with each 429")
    rules.add_argument(
        "--spacing-ms", type=float, default=300.0, help="least time between an account's orders (default: 300)"
    )
    rules.add_argument("--spacing-per-isin", action="store_true", help="count the spacing per account and ISIN")
    rules.add_argument(
        "--order-response",
        choices=("flat", "nested"),
        default="flat",
        help="accepted NewOrder shape: flat (errorCode 0, ids at the top) or nested (ids under result)",
    )
    rules.add_argument(
        "--rejection-status",
        type=int,
        choices=(200, 400),
        default=200,
        help="HTTP status of a refused order (default: 200)",
    )
    rules.add_argument(
        "--min-order-value", type=int, default=5_000_000, help="smallest order value in rial (default: 5000000)"
    )
    rules.add_argument("--token-ttl-s", type=int, default=3600, help="token lifetime in seconds (default: 3600)")
    parser.add_argument(
        "--password", default=DEFAULT_PASSWORD, help="the simulated accounts' password (default: sim-pass)"
    )
    parser.add_argument("--seed", type=int, help="make captchas, serial numbers and fault draws repeatable")
    parser.set_defaults(afunc=run)


def parse_open_at(text: str, now: datetime) -> datetime:
    """HH:MM:SS[.fff] as Tehran wall time on the day `now` falls on in Tehran."""
    match = _TIME.match(text.strip())
    if not match:
        raise UserError(f"--open-at {text!r} is not a time; write HH:MM:SS or HH:MM:SS.fff, e.g. 08:45:00.")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3])
    micro = int((match[4] or "0").ljust(6, "0"))
    if hour > 23 or minute > 59 or second > 59:
        raise UserError(f"--open-at {text!r} is not a time of day; hours go to 23, minutes and seconds to 59.")
    day = now.astimezone(TEHRAN).date()
    return datetime.combine(day, time(hour, minute, second, micro), tzinfo=TEHRAN)


def default_open_at(now: datetime) -> datetime:
    """Five seconds from `now`, rounded up to the whole second."""
    later = now + timedelta(seconds=5)
    return datetime.fromtimestamp(math.ceil(later.timestamp()), later.tzinfo)


def parse_brokers(text: str) -> list[tuple[str, str]]:
    """`gs,bbi:ephoenix` as (code, platform) pairs; a bare code is on the default platform."""
    pairs = []
    for item in (b.strip() for b in text.split(",")):
        if not item:
            continue
        code, _, on = item.partition(":")
        pairs.append((code.strip(), on.strip() or DEFAULT_PLATFORM))
    bad = [code for code, _ in pairs if not _BROKER.match(code) or code in reserved_names()]
    if not pairs or bad:
        raise UserError(
            f"--brokers {text!r} must list broker codes in lowercase letters and digits, like gs,shahr,bbi."
        )
    unknown = sorted({on for _, on in pairs if on not in platform_names()})
    if unknown:
        raise UserError(
            f"--brokers {text!r} names platform {unknown[0]!r}, which the simulator does not have; "
            f"use one of {', '.join(platform_names())}."
        )
    return pairs


def build_simulator(args: argparse.Namespace) -> Simulator:
    brokers = parse_brokers(args.brokers)
    if args.accounts < 0:
        raise UserError("--accounts must be 0 or more.")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a port number (0-65535).")
    settings = SimSettings(
        rules=OrderRules(
            spacing_ms=args.spacing_ms,
            spacing_scope="account_isin" if args.spacing_per_isin else "account",
            min_order_value=args.min_order_value,
        ),
        login_limit=_login_limit(args.login_limit, args.login_cooldown_s, args.retry_after),
        token_ttl_s=args.token_ttl_s,
        order_response=args.order_response,
        rejection_status=args.rejection_status,
        skew_ms=args.skew_ms,
        seed=args.seed,
        request_log_path=args.request_log,
    )
    if args.spacing_ms < 0 or args.token_ttl_s <= 0:
        raise UserError("--spacing-ms must be 0 or more and --token-ttl-s more than 0.")
    sim = Simulator.default(
        accounts=args.accounts, brokers=brokers, settings=settings, clock=SystemClock(), password=args.password
    )
    for text in args.fault:
        try:
            sim.add_fault(text)
        except ValueError as exc:
            raise UserError(f"--fault: {exc}.") from None
    _add_fills(sim, args.fill)
    now = sim.now()
    sim.set_open_at(parse_open_at(args.open_at, now) if args.open_at else default_open_at(now))
    return sim


def _add_fills(sim: Simulator, texts: list[str]) -> None:
    """Each `--fill` as the plan of its instrument; a bad one, an unknown ISIN or one given twice is a UserError."""
    given: set[str] = set()
    for text in texts:
        try:
            isin, plan = parse_fill(text)
        except ValueError as exc:
            raise UserError(f"--fill: {exc}.") from None
        if isin not in sim.instruments:
            raise UserError(
                f"--fill {text!r} names {isin}, which the simulator does not trade; use one of "
                f"{', '.join(sim.instruments)}."
            )
        if isin in given:
            raise UserError(f"--fill names {isin} twice; give one --fill per instrument, with all its steps.")
        given.add(isin)
        sim.set_fill(isin, plan)


def _login_limit(text: str, cooldown_s: float, retry_after: bool) -> LimiterSettings:
    match = _LIMIT.match(text.strip())
    if not match or int(match[1]) < 1 or float(match[2]) <= 0 or cooldown_s < 0:
        raise UserError(
            f"--login-limit {text!r} must be CALLS/SECONDS like 150/60, and --login-cooldown-s not negative."
        )
    return LimiterSettings(
        window_s=float(match[2]), max_calls=int(match[1]), cooldown_s=cooldown_s, retry_after=retry_after
    )


async def run(args: argparse.Namespace) -> int:
    sim = build_simulator(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:  # before anything is printed: whoever reads the snippet may signal at once
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await sim.start(args.host, args.port)
        except OSError as exc:
            if exc.filename:
                raise UserError(f"--request-log {exc.filename} cannot be written ({exc.strerror}).") from None
            raise UserError(
                f"cannot listen on {args.host}:{args.port} ({exc.strerror}); choose another --port or --host."
            ) from None
        try:
            _announce(sim, args.host)
            await stop.wait()
        finally:
            await sim.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0


def schedule_snippet(open_at: datetime) -> dict[str, Any]:
    """`timezone` and `schedule` for a config whose open is the simulator's, so a plain `fire` or `run` aims there.

    The open is Tehran wall time, as the simulator's is. Only `open` is given, unless the default warmup
    (08:20), arm (60 s before) or window (30 s after) would not fit that open in one day: then the setting
    that does not fit is given too (an open at 00:00:00 exactly leaves no room for a warmup: only `open`).
    """
    open_us = _us_of_day(open_at.astimezone(TEHRAN).time())
    defaults = ScheduleSettings()
    warmup: str | None = None
    arm_before_s: float | None = None
    window_s: float | None = None
    arm_us = round(defaults.arm_before_s * US)
    if open_us > 0 and open_us - arm_us <= _us_of_day(defaults.warmup):  # 08:20 is not before the arm
        warmup_us = max(0, open_us - arm_us - WARMUP_GAP_US)
        warmup = _clock_text(warmup_us)
        if open_us - arm_us <= warmup_us:  # an open in the day's first minute: arm halfway from midnight
            arm_before_s = open_us / 2 / US
    if open_us + round(defaults.window_s * US) >= DAY_US:  # an open in the day's last 30 s: end before midnight
        window_s = (DAY_US - open_us) / 2 / US
    given = {"warmup": warmup, "open": _clock_text(open_us), "arm_before_s": arm_before_s, "window_s": window_s}
    schedule = {key: value for key, value in given.items() if value is not None}
    return {"timezone": "Asia/Tehran", "schedule": schedule}


def _us_of_day(moment: time) -> int:
    return (moment.hour * 3600 + moment.minute * 60 + moment.second) * US + moment.microsecond


def _clock_text(us: int) -> str:
    """HH:MM:SS, with .fff or .ffffff only when the instant has them."""
    seconds, micro = divmod(us, US)
    text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if not micro:
        return text
    return f"{text}.{micro // 1000:03d}" if micro % 1000 == 0 else f"{text}.{micro:06d}"


def snippet_yaml(sim: Simulator) -> str:
    """The simulator's config snippet with the schedule of its open (see `schedule_snippet`) in front."""
    text = sim.config_snippet().yaml
    if sim.settings.open_at is None:
        return text
    schedule = yaml.safe_dump(schedule_snippet(sim.settings.open_at), sort_keys=False, allow_unicode=True, width=200)
    return schedule + text


def _announce(sim: Simulator, host: str) -> None:
    snippet = sim.config_snippet()
    open_at = sim.settings.open_at
    reach = "loopback only" if host in ("127.0.0.1", "::1", "localhost") else "REACHABLE FROM OTHER MACHINES"
    titles = {code: platform(broker.platform).title for code, broker in sim.state.brokers.items()}
    if len(set(titles.values())) == 1:
        which = f"{next(iter(titles.values()))} brokers {', '.join(titles)}"
    else:
        which = "brokers " + ", ".join(f"{code} ({title})" for code, title in titles.items())
    lines = [f"Simulated {which} at {sim.base_url} (bound to {host}: {reach})."]
    if open_at is not None:
        wall = open_at.astimezone(TEHRAN).isoformat(timespec="milliseconds")[11:23]
        lines.append(
            f"The market opens at {wall} Asia/Tehran on the simulator clock "
            f"(skew {sim.settings.skew_ms:+g} ms); NewOrder answers 1017 before that."
        )
    for isin, plan in sim.settings.fills.items():
        steps = ", ".join(
            f"{step.ratio:.0%} at +{step.delay_s:g} s" + (f" for {step.price}" if step.price else "")
            for step in plan.steps
        )
        lines.append(f"Orders of {isin} execute {steps} after the open.")
    lines.append("Before starting the daemon, export the simulated accounts' password:")
    lines += [f"  export {name}={shlex.quote(value)}" for name, value in snippet.env.items()]
    lines += [SNIPPET_START, snippet_yaml(sim).rstrip("\n"), SNIPPET_END, "Stop with Ctrl-C (or SIGTERM)."]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
