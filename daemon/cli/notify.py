"""`python -m daemon notify --test`: one test message to every `notify.urls` destination, now."""

from __future__ import annotations

import argparse

from daemon.cli import add_common
from daemon.cli.output import print_json, print_table
from daemon.clock import SystemClock
from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.notify import Notifications


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("notify", help="send a test message to every notify.urls destination")
    add_common(parser)
    parser.add_argument("--test", action="store_true", required=True, help="send the test message (required)")
    parser.set_defaults(afunc=run)


async def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, require_file=True)
    notify = Notifications.from_config(config, SystemClock())
    if notify is None:
        raise ConfigError('notify.urls is empty; add the URL of a service to send to (README "Notifications").')
    results = await notify.send_test()
    if args.json:
        print_json(
            {"destinations": [{"destination": name, "sent": error is None, "error": error} for name, error in results]}
        )
    else:
        print_table(["destination", "result"], [[name, error or "sent"] for name, error in results])
    return 0 if all(error is None for _, error in results) else 1
