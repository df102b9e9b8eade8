"""The simulator's old import path, kept so `from daemon.simulator import Simulator` goes on working.

The simulator lives in `daemon.sim`; this face re-exports what this module offered before.
"""

from __future__ import annotations

from daemon.sim import (
    DEFAULT_BROKERS,
    DEFAULT_BUYING_POWER,
    DEFAULT_INSTRUMENTS,
    DEFAULT_PASSWORD,
    PASSWORD_ENV,
    BookLevel,
    ConfigSnippet,
    LimiterSettings,
    OrderRules,
    SimSettings,
    Simulator,
)

__all__ = [
    "DEFAULT_BROKERS",
    "DEFAULT_BUYING_POWER",
    "DEFAULT_INSTRUMENTS",
    "DEFAULT_PASSWORD",
    "PASSWORD_ENV",
    "BookLevel",
    "ConfigSnippet",
    "LimiterSettings",
    "OrderRules",
    "SimSettings",
    "Simulator",
]
