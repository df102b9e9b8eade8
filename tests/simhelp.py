"""Helpers for tests that run the daemon against the simulator on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import yaml

from daemon.config import Config, validate_config
from daemon.simulator import DEFAULT_PASSWORD, PASSWORD_ENV, Simulator


def sim_config_data(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    """A config dict for a running simulator: its brokers and accounts, a fast captcha spacing."""
    data = dict(sim.config_snippet().data)
    data["captcha"] = {"solver": "ocr", "spacing_s": 0.05, "cooldown_s": 1.0, "throttle_waits": 5}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def sim_config(sim: Simulator, **overrides: Any) -> Config:
    return validate_config(sim_config_data(sim, **overrides))


def write_sim_config(sim: Simulator, path, **overrides: Any):
    path.write_text(yaml.safe_dump(sim_config_data(sim, **overrides), allow_unicode=True))
    path.chmod(0o600)
    return path


@asynccontextmanager
async def running_sim(monkeypatch: Any, accounts: int, brokers: tuple[str, ...] = ("gs", "shahr", "bbi"),
                      **kwargs: Any) -> AsyncIterator[Simulator]:
    """A default simulator on loopback, its accounts' password exported the way `sim_config` reads it."""
    simulator = Simulator.default(accounts=accounts, brokers=list(brokers), **kwargs)
    await simulator.start()
    monkeypatch.setenv(PASSWORD_ENV, DEFAULT_PASSWORD)
    try:
        yield simulator
    finally:
        await simulator.stop()
