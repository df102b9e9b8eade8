"""A running, seeded simulator for a test, and configs that point the daemon at it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from daemon.clock import Clock
from daemon.config import Config, validate_config
from daemon.days import DayPlan
from daemon.sim import SimSettings
from daemon.sim_config import sim_config_data as build_config_data
from daemon.simulator import DEFAULT_PASSWORD, PASSWORD_ENV, Simulator

SIM_SEED = 12
"""The seed of every simulator these helpers start: its fault draws, captchas and serial numbers come out the
same in every run, so a fault at rate 0.5 cannot pass one run and fail the next."""


def sim_settings(**fields: Any) -> SimSettings:
    """Simulator settings for a test: `fields`, seeded with SIM_SEED unless `seed` is among them."""
    return SimSettings(**{"seed": SIM_SEED, **fields})


@asynccontextmanager
async def running_simulator(
    accounts: int = 2,
    brokers: Sequence[str] = ("gs", "shahr"),
    *,
    settings: SimSettings | None = None,
    clock: Clock | None = None,
    export_password: bool = True,
    **kwargs: Any,
) -> AsyncIterator[Simulator]:
    """`Simulator.default(accounts, brokers)` listening on 127.0.0.1, seeded with SIM_SEED unless `settings`
    carries a seed of its own; with `export_password` its accounts' password is in PASSWORD_ENV (where
    `sim_config` tells the daemon to read it) until the simulator stops, then the variable is as it was."""
    settings = settings or sim_settings()
    if settings.seed is None:
        settings.seed = SIM_SEED
    simulator = Simulator.default(accounts=accounts, brokers=list(brokers), settings=settings, clock=clock, **kwargs)
    before = os.environ.get(PASSWORD_ENV)
    if export_password:
        os.environ[PASSWORD_ENV] = kwargs.get("password", DEFAULT_PASSWORD)
    try:
        async with simulator:
            yield simulator
    finally:
        if export_password:
            if before is None:
                os.environ.pop(PASSWORD_ENV, None)
            else:
                os.environ[PASSWORD_ENV] = before


def sim_config_data(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    """A config dict for a running simulator (`daemon.sim_config`'s builder): its brokers and accounts, a fast
    captcha spacing, real-time priority off (several daemons and the simulator share a test machine's cores; the
    real-time tests ask for it); each override replaces a top-level key, or is merged into it when both are
    dicts."""
    captcha = {"solver": "ocr", "spacing_s": 0.05, "cooldown_s": 1.0, "throttle_waits": 5}
    overrides["captcha"] = (
        {**captcha, **overrides.get("captcha", {})}
        if isinstance(overrides.get("captcha", {}), dict)
        else overrides["captcha"]
    )
    executor = overrides.get("executor", {})
    if isinstance(executor, dict):  # a test's processes share two cores with the simulator: no SCHED_FIFO unless asked
        overrides["executor"] = {"realtime": "off", **executor}
    return build_config_data(sim.config_snippet().data, **overrides)


def sim_config(sim: Simulator, **overrides: Any) -> Config:
    """`sim_config_data` validated, as the daemon would load it."""
    return validate_config(sim_config_data(sim, **overrides))


def write_sim_config(sim: Simulator, path: Path, **overrides: Any) -> Path:
    """`sim_config_data` written to `path` as YAML, mode 0600 (the daemon refuses a config others can read)."""
    path.write_text(yaml.safe_dump(sim_config_data(sim, **overrides), allow_unicode=True))
    path.chmod(0o600)
    return path


def squeezed_day_data(
    sim: Simulator,
    *,
    warmup_in_s: float,
    open_in_s: float,
    arm_before_s: float,
    window_s: float,
    refresh_s: float,
    close_in_s: float | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A config dict whose trading day runs in seconds from now: warmup and open `warmup_in_s` and `open_in_s`
    ahead, every weekday a trading day, in a zone where it is about noon (the day never crosses midnight).
    The simulator opens at that instant too. Order tracking runs to a close `close_in_s` ahead when that is given,
    else it is off (unless `tracking` is among the overrides): noon is near the market's default close."""
    now = sim.now()
    offset = 12 - now.hour
    zone = f"Etc/GMT{-offset:+d}" if offset else "UTC"
    local = now.astimezone(ZoneInfo(zone))
    open_at = local + timedelta(seconds=open_in_s)
    sim.set_open_at(open_at)
    schedule = {
        "warmup": f"{local + timedelta(seconds=warmup_in_s):%H:%M:%S.%f}",
        "open": f"{open_at:%H:%M:%S.%f}",
        "arm_before_s": arm_before_s,
        "window_s": window_s,
        "refresh_s": refresh_s,
        "trading_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "official_holidays": False,
    }
    if close_in_s is not None:
        schedule["close"] = f"{local + timedelta(seconds=close_in_s):%H:%M:%S.%f}"
    overrides.setdefault("tracking", {"enabled": close_in_s is not None})
    return sim_config_data(sim, timezone=zone, schedule=schedule, **overrides)


def plan_in(sim: Simulator, config: Config, open_in_s: float, window_s: float) -> DayPlan:
    """Today's plan for a runner driven by hand: warmup now, the open `open_in_s` ahead (the simulator's too)."""
    now = sim.now().astimezone(config.tz)
    open_at = now + timedelta(seconds=open_in_s)
    sim.set_open_at(open_at)
    return DayPlan(open_at.date(), now, now, open_at, open_at + timedelta(seconds=window_s))
