"""`python -m daemon run`: the service, every trading day, until SIGTERM (see `daemon.service._loop`).

Logs go to stdout as JSON lines, where journald records them. The day's work is done by a `DayRunner`
made by `daemon.service:make_runner(config, clock)`, imported only here and only when the service starts;
`$OPENING_BELL_RUNNER` (`module:function`) names another factory, which is how the tests run the real
service with a recording runner.
"""

from __future__ import annotations

import argparse
import importlib
import os
from typing import Any

from daemon import metrics
from daemon.cli import add_common
from daemon.clock import Clock, SystemClock
from daemon.errors import UserError
from daemon.scheduler import one_line
from daemon.service import RunnerFactory, ServiceLoop

RUNNER_ENV = "OPENING_BELL_RUNNER"
DEFAULT_RUNNER = "daemon.service:make_runner"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run as a service: warm up, arm, fire and report every trading day",
        description="Run until SIGTERM: every trading day warm up, keep fresh, arm, fire at the open and report. "
        "SIGHUP reloads the config. Logs are JSON lines on stdout.",
    )
    add_common(parser, json=False)
    parser.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics at http://HOST:PORT/metrics")
    parser.set_defaults(afunc=run, logs_to_stderr=False)


async def run(args: argparse.Namespace, clock: Clock | None = None) -> int:
    factory = load_runner_factory(os.environ.get(RUNNER_ENV) or DEFAULT_RUNNER)
    clock = clock or SystemClock()
    service = ServiceLoop(getattr(args, "config", None), clock, factory)
    if not getattr(args, "metrics", None):
        return await service.run()
    async with metrics.serve(args.metrics, clock):
        return await service.run()


def load_runner_factory(spec: str) -> RunnerFactory:
    """`module:function` to the function; a spec that does not load is one sentence, not a traceback."""
    module_name, _, name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UserError(
            f"the day runner {spec!r} cannot be loaded ({one_line(exc)}); set {RUNNER_ENV} to module:function or install the complete package."
        ) from None
    if not callable(factory):
        raise UserError(f"the day runner {spec!r} is not a function; set {RUNNER_ENV} to module:function.")
    return factory  # type: ignore[no-any-return]
