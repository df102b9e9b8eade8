"""`python -m daemon group`: the processes sharing this config's Redis, and which one owns which account until when."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import timedelta

from daemon.cli import add_common
from daemon.cli.output import print_json, print_table
from daemon.clock import SystemClock
from daemon.config import load_config
from daemon.errors import UserError
from daemon.service import Group


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("group", help="which process of the group owns which account, and until when")
    add_common(parser)
    parser.set_defaults(afunc=run)


async def run(args: argparse.Namespace, clock: SystemClock | None = None) -> int:
    config = load_config(args.config)
    if config.cache.backend != "redis":
        raise UserError(
            "group shows leases kept in Redis; set cache.backend: redis and cache.redis_url (and group.enabled)."
        )
    from daemon.store import StoreUnavailable, connect, redact_url  # redis-py: not in every command's process

    clock = clock or SystemClock()
    url = str(config.cache.redis_url)
    client = connect(url)
    view = Group(client, config.group, config.select_accounts(), clock, where=redact_url(url))
    try:
        members = await view.members()
        leases = await view.leases()
    except StoreUnavailable as exc:
        raise UserError(f"cannot read the group: {exc.strerror}; check cache.redis_url and that Redis runs.") from None
    finally:
        await client.aclose()
    now = clock.now().astimezone(config.tz)
    held = {m.id: sum(1 for lease in leases if lease.owner == m.id) for m in members}

    def until(seconds: float | None) -> str | None:
        return None if seconds is None else (now + timedelta(seconds=seconds)).strftime("%H:%M:%S")

    if args.json:
        print_json(
            {
                "members": [{**asdict(m), "leases": held[m.id]} for m in members],
                "leases": [{**lease.to_dict(), "expires_at": until(lease.expires_in_s)} for lease in leases],
            }
        )
        return 0
    if members:
        print_table(
            ["member", "host", "pid", "host group", "leases"],
            [[m.id, m.host, m.pid, m.host_group, held[m.id]] for m in members],
        )
    else:
        print("No live member: no `daemon run` with group.enabled is connected to this Redis.")
    print()
    print_table(
        ["account", "host group", "owner", "lease ends", "in (s)"],
        [
            [
                lease.account,
                lease.host_group,
                lease.owner or "(none)",
                until(lease.expires_in_s),
                None if lease.expires_in_s is None else round(lease.expires_in_s, 1),
            ]
            for lease in leases
        ],
    )
    return 0
