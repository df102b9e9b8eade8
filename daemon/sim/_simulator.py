"""Simulated brokers on loopback, so the daemon can be rehearsed, tested and benchmarked.

One process and one port serve any number of broker codes on any registered platform, each under its
own path prefix (Ephoenix's layout: `daemon.sim.ephoenix`). It knows nothing of the daemon's internals:
it speaks the brokers' HTTP, as documented in ephoenix-api.md and its siblings.

    async with Simulator.default(accounts=3) as sim:
        sim.set_open_at(sim.now() + timedelta(seconds=5))
        snippet = sim.config_snippet()   # market_data_url, brokers, accounts for config.yaml
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import structlog
import yaml
from aiohttp import web

from daemon.sim import ephoenix as _ephoenix  # noqa: F401  (registers the default platform)
from daemon.sim import exir as _exir  # noqa: F401  (registers Exir, with RLC beside it)
from daemon.sim import onlineplus as _onlineplus  # noqa: F401  (registers Online+, with the same RLC)

# isort: split
from daemon.sim import easytrader as _easytrader  # noqa: F401  (registers Mofid's easytrader, after Exir)
from daemon.sim._auth import CaptchaBook
from daemon.sim._clock import HostClock, SimClock
from daemon.sim._faults import Fault
from daemon.sim._fills import Execution, FillPlan, FillStep, Mark, parse_fill
from daemon.sim._http import build_app
from daemon.sim._log import RequestLog
from daemon.sim._market import Account, BookLevel, Instrument, Order
from daemon.sim._platform import DEFAULT_PLATFORM
from daemon.sim._platform import platform as platform_named
from daemon.sim._state import SimBroker, SimSettings, SimState, to_ns
from daemon.sim._transport import StampingTCPSite

DEFAULT_PASSWORD = "sim-pass"  # a rehearsal password for simulated accounts, never a real one
PASSWORD_ENV = "OPENING_BELL_SIM_PASSWORD"
DEFAULT_BROKERS = ("gs", "shahr", "bbi")
DEFAULT_BUYING_POWER = 5_000_000_000  # rial: enough for maxeq of any default instrument
DEFAULT_HOLDING = 10_000

# (isin, symbol, title, last, maxap, minap, maxeq): today's limits are +-3 % on the exchange's ticks.
DEFAULT_INSTRUMENTS = (
    ("IRO1FOLD0001", "فولاد", "فولاد مبارکه اصفهان", 5_420, 5_580, 5_260, 200_000),
    ("IRO1IKCO0001", "خودرو", "ایران خودرو", 2_950, 3_038, 2_862, 500_000),
    ("IRO1MSMI0001", "فملی", "ملی صنایع مس ایران", 7_130, 7_340, 6_920, 150_000),
    ("IRO1PNES0001", "شپنا", "پالایش نفت اصفهان", 4_870, 5_010, 4_724, 200_000),
)

log = structlog.get_logger("simulator")  # the host process configures structlog (the daemon: redaction)


@dataclass(frozen=True)
class ConfigSnippet:
    """What the daemon's config.yaml needs to use a running simulator, and what to export for it."""

    data: dict[str, Any]
    yaml: str
    env: dict[str, str] = field(default_factory=dict)


class Simulator:
    """A running (or ready to run) simulated market; every setter works while it serves requests."""

    def __init__(self, settings: SimSettings | None = None, clock: SimClock | None = None) -> None:
        self.settings = settings or SimSettings()
        self.clock = clock or HostClock()
        self.state = SimState(self.settings, self.clock)
        self.base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._passwords: dict[tuple[str, str], str] = {}

    @classmethod
    def default(
        cls,
        accounts: int = 3,
        brokers: Sequence[str | tuple[str, str]] = DEFAULT_BROKERS,
        *,
        settings: SimSettings | None = None,
        clock: SimClock | None = None,
        password: str = DEFAULT_PASSWORD,
        buying_power: int = DEFAULT_BUYING_POWER,
        platform: str = DEFAULT_PLATFORM,
    ) -> Simulator:
        """A ready market: the default instruments, and `accounts` accounts spread over `brokers`.

        A broker is a code on `platform`, or a (code, platform) pair for a market of several platforms.
        """
        sim = cls(settings, clock)
        if not brokers:
            raise ValueError("the simulator needs at least one broker code")
        pairs = [(b, platform) if isinstance(b, str) else (b[0], b[1]) for b in brokers]
        for code, on in pairs:
            sim.add_broker(code, platform=on)
        codes = [code for code, _ in pairs]
        for n, (isin, symbol, title, last, maxap, minap, maxeq) in enumerate(DEFAULT_INSTRUMENTS):
            sim.add_instrument(
                isin,
                symbol,
                title,
                last=last,
                maxap=maxap,
                minap=minap,
                maxeq=maxeq,
                book=_default_book(last, maxap, minap, queued=n == 0),
            )
        for i in range(accounts):
            sim.add_account(
                codes[i % len(codes)],
                f"{12_345_600 + i:010d}",
                password,
                buying_power=buying_power,
                holdings={row[0]: DEFAULT_HOLDING for row in DEFAULT_INSTRUMENTS},
            )
        return sim

    # ---- running ---------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = any free port) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        await self.state.log.open()
        runner = web.AppRunner(build_app(self.state), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = StampingTCPSite(runner, host, port, self.state.arrivals)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            await self.state.log.close()
            raise
        self._runner = runner
        url_host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host) or (
            f"[{host}]" if ":" in host else host
        )
        self.base_url = f"http://{url_host}:{site.bound_port}"
        log.info("simulator listening", url=self.base_url, bound_to=host, brokers=sorted(self.state.brokers))
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.state.log.close()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- the market ------------------------------------------------------------------------------
    def add_broker(
        self, code: str, captcha_format: Literal["png", "jpeg"] | None = None, *, platform: str = DEFAULT_PLATFORM
    ) -> SimBroker:
        """A broker code to serve on `platform`; captchas alternate PNG / JPEG by order of adding unless
        `captcha_format` says. A ValueError names an unknown platform or a code already on another one."""
        return self.state.add_broker(code, captcha_format, platform)

    def add_account(
        self,
        broker: str,
        username: str,
        password: str,
        *,
        buying_power: int = DEFAULT_BUYING_POWER,
        credit: int = 0,
        holdings: dict[str, int] | None = None,
    ) -> Account:
        """An account at `broker` (added if new) whose buying power is `buying_power` rial, `credit` of it credit."""
        if broker not in self.state.brokers:
            self.add_broker(broker)
        self._passwords[(broker, username)] = password
        return self.state.market.add_account(
            Account(
                broker=broker,
                username=username,
                password=password,
                remain=buying_power - credit,
                credit=credit,
                holdings=dict(holdings or {}),
            )
        )

    def account(self, broker: str, username: str) -> Account:
        found = self.state.market.account(broker, username)
        if found is None:
            raise KeyError(f"no account {username!r} at broker {broker!r}")
        return found

    @property
    def accounts(self) -> list[Account]:
        return list(self.state.market.accounts.values())

    def add_instrument(
        self,
        isin: str,
        symbol: str,
        title: str = "",
        *,
        last: int,
        maxap: int,
        minap: int,
        mineq: int = 1,
        maxeq: int = 100_000,
        book: list[BookLevel] | None = None,
    ) -> Instrument:
        return self.state.market.add_instrument(
            Instrument(
                isin=isin,
                symbol=symbol,
                title=title or symbol,
                last=last,
                maxap=maxap,
                minap=minap,
                mineq=mineq,
                maxeq=maxeq,
                book=list(book or []),
            )
        )

    @property
    def instruments(self) -> dict[str, Instrument]:
        return self.state.market.instruments

    def orders(self, broker: str | None = None, username: str | None = None) -> list[Order]:
        return [
            o
            for o in self.state.market.orders.values()
            if (broker is None or o.broker == broker) and (username is None or o.username == username)
        ]

    # ---- fills -----------------------------------------------------------------------------------
    def set_fill(self, isin: str, *steps: FillStep | FillPlan | str | tuple[float, float]) -> FillPlan | None:
        """From now on, accepted orders of `isin` execute by this plan: FillSteps, a FillPlan, `(ratio, delay_s)`
        pairs, or the text form (`"0.6@5s"`, `"0.4@2s,1@60s:5570"`; see daemon.sim._fills). No steps: no plan,
        nothing of `isin` executes unless marked. A ValueError says what is wrong."""
        if isin not in self.state.market.instruments:
            raise ValueError(f"the simulator has no instrument {isin!r}")
        if not steps:
            self.settings.fills.pop(isin, None)
            return None
        if len(steps) == 1 and isinstance(steps[0], FillPlan):
            plan = steps[0]
        else:
            parts: list[FillStep] = []
            for step in steps:
                if isinstance(step, FillStep):
                    parts.append(step)
                elif isinstance(step, str):
                    parts.extend(parse_fill(f"{isin}={step}")[1].steps)
                elif isinstance(step, tuple):
                    parts.append(FillStep(delay_s=float(step[1]), ratio=float(step[0])))
                else:
                    raise ValueError(f"a fill step is a FillStep, a (ratio, delay_s) pair or text, not {step!r}")
            plan = FillPlan(tuple(parts))
        self.settings.fills[isin] = plan
        return plan

    def fill(self, order: Order, quantity: int | None = None, price: int | None = None) -> Mark:
        """Mark `order` executed now, as the exchange would: `quantity` in all (the whole order by default), what this
        adds at `price` (the order's own by default). Every platform's rows show it from now on."""
        return self.state.market.mark_fill(order, self.state.now_ns(), quantity, price)

    def cancel(self, order: Order) -> Execution:
        """The broker ends `order` now (cancelled, expired, rejected after booking): every platform's rows show it
        cancelled with what it executed so far; a ValueError when it has nothing left to cancel."""
        if not self.state.is_live(order):
            raise ValueError(f"order {order.serial_number} has nothing left to cancel")
        return self.state.market.end(order, self.state.now_ns(), self.state.open_ns())

    def execution(self, order: Order) -> Execution:
        """What `order` has executed by now on the simulator's clock."""
        return self.state.execution(order)

    # ---- time ------------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The simulator's clock: the host clock plus the skew."""
        return self.state.now()

    def set_open_at(self, when: datetime | None) -> None:
        """From `when` on the simulator's clock NewOrder is accepted; None opens the market now."""
        if when is not None:
            to_ns(when)  # refuses a naive datetime
        self.settings.open_at = when

    def set_skew(self, ms: float) -> None:
        """How far the simulator's clock runs ahead of the host clock (negative: behind)."""
        self.settings.skew_ms = float(ms)

    # ---- faults, tokens, log ---------------------------------------------------------------------
    def add_fault(self, fault: Fault | str) -> Fault:
        """A fault in force from the next request: a Fault or its text form (see daemon.sim._faults)."""
        return self.state.faults.add(fault)

    def clear_faults(self, route: str | None = None) -> None:
        self.state.faults.clear(route)

    def revoke_tokens(self, broker: str | None = None, username: str | None = None) -> int:
        """Make every token issued so far to the matching accounts get 401; returns how many accounts."""
        matched = [
            a
            for a in self.state.market.accounts.values()
            if (broker is None or a.broker == broker) and (username is None or a.username == username)
        ]
        for account in matched:
            account.token_generation += 1
        return len(matched)

    @property
    def captchas(self) -> CaptchaBook:
        """`captchas.answer(salt)` tells the digits a captcha shows: for tests and demos without OCR."""
        return self.state.captchas

    @property
    def request_log(self) -> RequestLog:
        return self.state.log

    # ---- pointing the daemon at it ---------------------------------------------------------------
    def broker_urls(self, code: str) -> dict[str, str]:
        """The `brokers.<code>` entry of the daemon's config, as the broker's platform writes it."""
        base = self._running_url()
        return platform_named(self.state.brokers[code].platform).broker_config(base, code)

    def platform_of(self, code: str) -> str:
        return self.state.brokers[code].platform

    @property
    def market_data_url(self) -> str:
        """Ephoenix's shared market data, which the daemon reads for every broker."""
        return f"{self._running_url()}/marketdata"

    def config_snippet(self, password_env: str = PASSWORD_ENV, isin: str | None = None) -> ConfigSnippet:
        """The config.yaml part that points the daemon here: market data, brokers, one buy order per account.

        Accounts read their password from `password_env`; `env` says what to export (all simulated
        accounts made by `default` share one password, so one variable serves; otherwise each gets its own).
        """
        target = isin or next(iter(self.state.market.instruments), None)
        if target is None:
            raise ValueError("the simulator has no instruments to put in the accounts' orders")
        distinct = set(self._passwords.values())
        env: dict[str, str] = {}
        accounts = []
        for n, account in enumerate(self.state.market.accounts.values(), start=1):
            variable = password_env if len(distinct) <= 1 else f"{password_env}_{n}"
            env[variable] = account.password
            accounts.append(
                {
                    "name": f"sim{n:03d}-{account.broker}",
                    "broker": account.broker,
                    "username": account.username,
                    "password_env": variable,
                    "orders": [{"isin": target, "side": "buy", "price": "max", "volume": "auto"}],
                }
            )
        data = {
            "market_data_url": self.market_data_url,
            "brokers": {code: self.broker_urls(code) for code in self.state.brokers},
            "accounts": accounts,
        }
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=200)
        return ConfigSnippet(data=data, yaml=text, env=env)

    def _running_url(self) -> str:
        if self.base_url is None:
            raise RuntimeError("start the simulator first: its URLs depend on the port it gets")
        return self.base_url


def _default_book(last: int, maxap: int, minap: int, queued: bool) -> list[BookLevel]:
    """A buy queue at the upper limit for the hot symbol; a two-sided book around the last price otherwise."""
    tick = 10 if last >= 5_000 else 1
    if queued:
        return [
            BookLevel(maxap, 288_479_554, 1_776),
            BookLevel(maxap - tick, 33_952, 3),
            BookLevel(maxap - 2 * tick, 13_166, 3),
        ]
    return [
        BookLevel(last - tick * (row + 1), 50_000 * (row + 1), 12 + row, last + tick * row, 40_000 * (row + 1), 9 + row)
        for row in range(3)
        if minap <= last - tick * (row + 1) and last + tick * row <= maxap
    ]
