"""`python -m daemon warmup`: the whole warmup once, with a table of what is ready."""

from __future__ import annotations

import argparse

from daemon.cli import add_common
from daemon.cli.output import print_json, print_table
from daemon.clock import SystemClock
from daemon.config import load_config
from daemon.preflight import preflight
from daemon.warmup import warmup
from daemon.wiring import Wiring


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("warmup", help="log in, fetch buying power and limits, compute volumes, all into the cache")
    add_common(parser)
    parser.add_argument("--accounts", nargs="+", metavar="NAME", help="only these accounts (default: all enabled)")
    parser.set_defaults(afunc=run)


async def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, require_file=True)
    await preflight(config)
    accounts = config.select_accounts(args.accounts)
    async with Wiring(config, SystemClock()) as services:
        results = await warmup(services.clients(accounts), services.clock)
        stats = await services.cache.stats()
    if args.json:
        print_json({"accounts": [r.to_dict() for r in results], "cache": stats})
    else:
        rows = []
        for r in results:
            for o in r.orders or [None]:
                rows.append(
                    [
                        r.account,
                        r.broker,
                        r.token_valid_until,
                        r.buying_power,
                        o.symbol or o.isin if o else None,
                        o.price if o else None,
                        o.volume if o else None,
                        r.error or (o.status if o else "ok"),
                    ]
                )
        print_table(
            ["account", "broker", "token valid until", "buying power", "symbol", "price", "volume", "status"], rows
        )
        print()
        print_table(
            ["type", "entries", "valid", "hits", "misses"],
            [[t, s.get("entries"), s.get("valid"), s.get("hits"), s.get("misses")] for t, s in stats.items()],
        )
    return 0 if all(r.ok for r in results) else 1
