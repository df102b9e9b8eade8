"""`python -m daemon ...`: argparse subcommands that wire the modules together; no business rules here.

Each subcommand lives in its own module of this package (`daemon/cli/fire.py`, ...) with `register(subparsers)`, which sets
`func(args) -> int` (sync) or `afunc(args) -> int` (async) on its parser.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence

from daemon import __version__
from daemon.errors import UserError
from daemon.logs import configure_logging, scrub

COMMAND_MODULES = (
    "daemon.cli.cache",
    "daemon.cli.schedule",
    "daemon.cli.warmup",
    "daemon.cli.fire",
    "daemon.cli.report",
    "daemon.cli.demo",
    "daemon.cli.simulate",
    "daemon.cli.run",
    "daemon.cli.group",
    "daemon.cli.notify",
)


class _Parser(argparse.ArgumentParser):
    """argparse that ends bad arguments with one sentence and exit code 2, like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {_one_line(message)}.\n")


def _one_line(text: str) -> str:
    """argparse quotes some of the user's words and not others (unrecognized arguments): escape what would break the line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="opening-bell", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"opening-bell {__version__}")
    parser.add_argument("--config", help="config file (default: $OPENING_BELL_CONFIG or config.yaml)")
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error (default: info)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def add_common(parser: argparse.ArgumentParser, json: bool = True) -> None:
    """Options every subcommand accepts after its name too (`daemon warmup --config F`)."""
    parser.add_argument("--config", default=argparse.SUPPRESS, help="config file")
    parser.add_argument("--log-level", default=argparse.SUPPRESS, help="debug, info, warning or error")
    if json:
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(args.log_level, stream=sys.stderr if getattr(args, "logs_to_stderr", True) else sys.stdout)
        if getattr(args, "afunc", None):
            return asyncio.run(args.afunc(args))
        return args.func(args)
    except UserError as exc:
        # a path from the command line may hold bytes that are not UTF-8 (surrogates): shown escaped, never a crash
        message = scrub(str(exc)).encode("utf-8", "backslashreplace").decode("utf-8")
        sys.stderr.write(f"error: {message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted.\n")
        return 130
