"""`cache stats | clean | clear [TYPE] | list TYPE | show TYPE KEY | keygen`: look into the cache and tidy it.

A config file is optional here: without one the defaults apply and the cache is `.cache` in the
current directory.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import orjson

from daemon.cache import ALIASES, TYPES, Cache, resolve_type
from daemon.cli import add_common
from daemon.cli.output import format_table, print_json, print_table
from daemon.clock import SystemClock
from daemon.config import load_config
from daemon.errors import UserError
from daemon.logs import redact, scrub
from daemon.preflight import require_cache_dir
from daemon.store import generate_key, write_new_key

TYPE_HELP = f"one of {', '.join(TYPES)} (or {', '.join(ALIASES)})"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("cache", help="inspect and tidy the cache", description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="cache_action", metavar="ACTION")
    actions.required = True

    def action(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=help)
        add_common(sub)
        sub.set_defaults(afunc=handler)
        return sub

    action("stats", _stats, "entries, validity, size and hit rate (across runs) per type")
    action("clean", _clean, "remove expired entries")
    clear = action("clear", _clear, "remove every entry, or every entry of one type")
    clear.add_argument("type", nargs="?", metavar="TYPE", help=TYPE_HELP)
    clear.add_argument("--yes", action="store_true", help="do not ask before clearing every type")
    listing = action("list", _list, "the entries of one type")
    listing.add_argument("type", metavar="TYPE", help=TYPE_HELP)
    show = action("show", _show, "one entry with its data (secrets shown as *** unless --reveal)")
    show.add_argument("type", metavar="TYPE", help=TYPE_HELP)
    show.add_argument("key", metavar="KEY", help="the entry's key, as `cache list TYPE` shows it")
    show.add_argument("--reveal", action="store_true", help="print the token itself (decrypted when sealed)")
    keygen = action("keygen", _keygen, "print a new key for encrypting cached tokens (cache.token_key_*)")
    keygen.add_argument("--out", metavar="FILE", type=Path, help="write it to FILE (created 0600, never overwritten)")


def _open(args: argparse.Namespace) -> tuple[Cache, tzinfo]:
    config = load_config(args.config)
    require_cache_dir(config)
    return Cache.from_config(config, SystemClock()), config.tz


def _when(value: datetime | None, tz: tzinfo) -> str | None:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %z") if value else None


async def _stats(args: argparse.Namespace) -> int:
    cache, tz = _open(args)
    async with cache:
        stats = await cache.stats()
    if args.json:
        print_json({"dir": cache.location, "types": stats})
        return 0
    rows = [
        [
            name,
            s["entries"],
            s["valid"],
            s["expired"],
            s["hits"],
            s["misses"],
            None if s["hit_rate"] is None else f"{s['hit_rate']:.1%}",
            s["bytes"],
            _when(s["soonest_expiry"], tz),
        ]
        for name, s in stats.items()
    ]
    print_table(["type", "entries", "valid", "expired", "hits", "misses", "hit rate", "bytes", "soonest expiry"], rows)
    return 0


async def _clean(args: argparse.Namespace) -> int:
    cache, _tz = _open(args)
    async with cache:
        removed = await cache.clean_expired()
    _report(args, removed, f"expired entr{'y' if removed == 1 else 'ies'}", cache.location)
    return 0


async def _clear(args: argparse.Namespace) -> int:
    ctype = resolve_type(args.type) if args.type else None
    cache, _tz = _open(args)
    if ctype is None and not args.yes and not _confirmed(f"Remove every cache entry in {cache.location}? [y/N] "):
        sys.stdout.write("Nothing removed.\n")
        return 1
    async with cache:
        removed = await cache.clear(ctype.name if ctype else None)
    what = f"{ctype.name} " if ctype else ""
    _report(args, removed, f"{what}entr{'y' if removed == 1 else 'ies'}", cache.location, type=ctype and ctype.name)
    return 0


def _confirmed(question: str) -> bool:
    if not sys.stdin.isatty():
        raise UserError("cache clear without a type removes every entry; add --yes to do that when not at a terminal.")
    try:
        return input(question).strip().lower() in {"y", "yes"}
    except EOFError:
        return False


def _report(args: argparse.Namespace, removed: int, what: str, location: str, **extra: Any) -> None:
    if args.json:
        print_json({"removed": removed, "dir": location, **extra})
    else:
        sys.stdout.write(f"Removed {removed} {what} from {location}.\n")


async def _list(args: argparse.Namespace) -> int:
    ctype = resolve_type(args.type)
    cache, tz = _open(args)
    async with cache:
        infos = await cache.list(ctype.name)
    if args.json:
        print_json([i.to_dict() for i in infos])
    elif not infos:
        sys.stdout.write(f"No {ctype.name} entries in {cache.location}.\n")
    else:
        rows = [
            [i.key, _when(i.created_at, tz), _when(i.expires_at, tz), "yes" if i.valid else "no", i.bytes]
            for i in infos
        ]
        print_table(["key", "created", "expires", "valid", "bytes"], rows)
    return 0


async def _show(args: argparse.Namespace) -> int:
    ctype = resolve_type(args.type)
    cache, tz = _open(args)
    async with cache:
        info = await cache.show(ctype.name, args.key, decrypt=args.reveal)
    if info is None:
        raise UserError(
            f"there is no {ctype.name} entry with key {args.key!r} in {cache.location}; "
            f"`cache list {ctype.name}` shows the keys."
        )
    if not args.reveal:
        info = replace(info, data=redact(info.data))
    if args.json:
        _print_shown(orjson.dumps(info.to_dict(), option=orjson.OPT_INDENT_2).decode(), args.reveal)
        return 0
    rows: list[list[Any]] = [
        ["type", info.type],
        ["key", info.key],
        ["created", _when(info.created_at, tz)],
        ["expires", _when(info.expires_at, tz)],
        ["valid", "yes" if info.valid else "no"],
        ["bytes", info.bytes],
    ]
    rows += [[name, value] for name, value in info.identity.items()]
    rows += [[f"data.{name}", _cell(value)] for name, value in (info.data or {}).items()]
    _print_shown(format_table(["field", "value"], rows), args.reveal)
    return 0


def _print_shown(text: str, reveal: bool) -> None:
    """`--reveal` is the one place a token may be printed, even one this process knows as a secret."""
    sys.stdout.write((text if reveal else scrub(text)) + "\n")


def _cell(value: Any) -> Any:
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else value


async def _keygen(args: argparse.Namespace) -> int:
    """No config needed: the key is printed (or written to a new 0600 file) and nothing else is touched."""
    if args.out is None:
        key = generate_key()
        if args.json:
            print_json({"key": key})
        else:
            sys.stdout.write(key + "\n")
        return 0
    write_new_key(args.out)
    if args.json:
        print_json({"file": str(args.out)})
    else:
        sys.stdout.write(f"Wrote a new token key to {args.out} (mode 0600); set cache.token_key_file to it.\n")
    return 0
