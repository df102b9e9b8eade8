"""The broker simulator: one process and one port serving brokers of every registered platform over one market.

The shared market (instruments, accounts, buying power, orders, the clock, faults, the request log) is
in the private modules; each platform's routes, codes and JSON are in its own module (`ephoenix`, `exir`,
`onlineplus`, `easytrader`), which registers a `SimPlatform`; `rlc` is the market data Exir, Online+ and easytrader price from. It imports
nothing of the daemon: it speaks the brokers' HTTP, nothing else. Orders execute by a per-instrument fill plan
(`sim.set_fill(isin, "0.6@5s")`) or by hand (`sim.fill(order, 400)`, `sim.cancel(order)`), read at request time.

    async with Simulator.default(accounts=3, brokers=["gs", ("bbi", "ephoenix")]) as sim:
        sim.set_open_at(sim.now() + timedelta(seconds=5))
        snippet = sim.config_snippet()   # market_data_url, brokers, accounts for config.yaml
"""

from __future__ import annotations

from daemon.sim import ephoenix, exir, onlineplus, rlc

# isort: split
# registered after the platforms above, so names list in the order the platforms came
from daemon.sim import easytrader
from daemon.sim._auth import CaptchaBook, LimiterSettings, b64url_decode
from daemon.sim._captcha_image import render_captcha
from daemon.sim._clock import HostClock, SimClock
from daemon.sim._faults import Fault, FaultPlan, parse_fault
from daemon.sim._fills import Execution, FillPlan, FillStep, Mark, Trade, parse_fill
from daemon.sim._log import RequestLog, RequestRecord
from daemon.sim._market import (
    BUY,
    SELL,
    TEHRAN,
    Account,
    BookLevel,
    Instrument,
    Market,
    Order,
    OrderRequest,
    OrderRules,
    Refusal,
    created_at,
)
from daemon.sim._platform import (
    DEFAULT_PLATFORM,
    SimPlatform,
    platform,
    platform_names,
    register_platform,
    reserved_names,
    route_names,
    unregister_platform,
)
from daemon.sim._simulator import (
    DEFAULT_BROKERS,
    DEFAULT_BUYING_POWER,
    DEFAULT_INSTRUMENTS,
    DEFAULT_PASSWORD,
    PASSWORD_ENV,
    ConfigSnippet,
    Simulator,
)
from daemon.sim._state import SimBroker, SimSettings, to_ns

__all__ = [
    "BUY",
    "DEFAULT_BROKERS",
    "DEFAULT_BUYING_POWER",
    "DEFAULT_INSTRUMENTS",
    "DEFAULT_PASSWORD",
    "DEFAULT_PLATFORM",
    "PASSWORD_ENV",
    "SELL",
    "TEHRAN",
    "Account",
    "BookLevel",
    "CaptchaBook",
    "ConfigSnippet",
    "Execution",
    "Fault",
    "FaultPlan",
    "FillPlan",
    "FillStep",
    "HostClock",
    "Instrument",
    "LimiterSettings",
    "Mark",
    "Market",
    "Order",
    "OrderRequest",
    "OrderRules",
    "Refusal",
    "RequestLog",
    "RequestRecord",
    "SimBroker",
    "SimClock",
    "SimPlatform",
    "SimSettings",
    "Simulator",
    "Trade",
    "b64url_decode",
    "created_at",
    "easytrader",
    "ephoenix",
    "exir",
    "onlineplus",
    "parse_fault",
    "parse_fill",
    "platform",
    "platform_names",
    "register_platform",
    "render_captcha",
    "rlc",
    "reserved_names",
    "route_names",
    "to_ns",
    "unregister_platform",
]
