"""A whole open against the embedded simulator: no broker account needed, under a minute.

The simulator runs in this process on loopback with its clock skewed, so the demo shows every part
doing its real work: captcha logins read by the OCR solver, warmup into a private cache, the broker's
clock measured, the plans armed and fired at the open, and the report read back from the journal.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from daemon.clock import Clock
from daemon.config import Config, validate_config
from daemon.executor import Executor
from daemon.firing import Journal, ReportRow
from daemon.sim_config import sim_config_data
from daemon.simulator import PASSWORD_ENV, SimSettings, Simulator
from daemon.warmup import AccountWarmup, warmup
from daemon.wiring import Wiring

DEMO_PASSWORD = "demo-pass-not-secret"
DEMO_BROKERS: tuple[str | tuple[str, str], ...] = (
    "gs",
    "shahr",
    "bbi",
    ("khobregan", "exir"),
    ("hafez", "onlineplus"),
    ("mofid", "easytrader"),
)
"""Three Ephoenix brokers, one Exir tenant, one Online+ tenant and Mofid on easytrader: every platform fires in
the one open."""
ORDER_ROUTES = ("new_order", "batch")
"""The simulator's routes that place an order (easytrader's batch of the draft made at the arm)."""


@dataclass
class DemoResult:
    config: Config
    warmup: list[AccountWarmup]
    rows: list[ReportRow]
    skew_ms: float
    measured_offset_ms: float | None
    arrivals_ms: list[float]  # each account's first order at the simulator, after the open (its own stamps)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.accepted for r in self.rows)

    def summary(self) -> dict[str, Any]:
        first = [r.first_send_ms for r in self.rows if r.first_send_ms is not None]
        return {
            "accounts": len(self.warmup),
            "accepted": sum(r.accepted for r in self.rows),
            "orders": len(self.rows),
            "broker_skew_ms": self.skew_ms,
            "measured_offset_ms": self.measured_offset_ms,
            "offset_error_ms": None
            if self.measured_offset_ms is None
            else round(abs(self.measured_offset_ms - self.skew_ms), 3),
            "first_send_vs_open_ms": _spread(first),
            "arrival_after_open_ms": _spread(self.arrivals_ms),
        }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"min": round(ordered[0], 3), "p50": round(statistics.median(ordered), 3), "max": round(ordered[-1], 3)}


def demo_config(sim: Simulator, workdir: Path, spacing_s: float) -> Config:
    data = sim_config_data(
        sim.config_snippet().data,
        state_dir=workdir / "state",
        cache_dir=workdir / "cache",
        captcha={"solver": "ocr", "spacing_s": spacing_s},
        executor={"final_check_s": 2.0},
        schedule={"window_s": 10},
    )
    return validate_config(data, source="demo config")


async def run_demo(
    clock: Clock,
    accounts: int = 20,
    skew_ms: float = 1500.0,
    lead_s: float = 8.0,
    spacing_s: float = 0.2,
    workdir: Path | None = None,
) -> DemoResult:
    """Simulator up, warmup, open `lead_s` after the warmup on the simulator's (skewed) clock, fire, report."""
    own_dir = None if workdir else tempfile.TemporaryDirectory(prefix="opening-bell-demo-")
    root = Path(workdir or own_dir.name)  # type: ignore[union-attr]
    os.environ[PASSWORD_ENV] = DEMO_PASSWORD
    sim = Simulator.default(
        accounts=accounts,
        brokers=list(DEMO_BROKERS),
        settings=SimSettings(skew_ms=skew_ms),
        clock=clock,
        password=DEMO_PASSWORD,
    )
    try:
        async with sim:
            config = demo_config(sim, root, spacing_s)
            async with Wiring(config, clock) as services:
                warmed = await warmup(services.clients(config.accounts), services.clock)
                open_at = (sim.now() + timedelta(seconds=lead_s)).astimezone(config.tz)
                sim.set_open_at(open_at)
                day = open_at.date()
                executor = Executor.from_wiring(services, Journal(config.state_dir, day), day=day)
                rows = await executor.run_open(list(config.accounts), open_at)
            clocks = list(executor.clocks.values())
            offset = round(statistics.median(c.estimate.offset_s for c in clocks) * 1000, 3) if clocks else None
            host_open_ns = int(open_at.timestamp() * 1e9) - int(skew_ms * 1e6)
            first_arrival: dict[str | None, int] = {}
            for record in (r for route in ORDER_ROUTES for r in sim.request_log.records(route=route)):
                first_arrival[record.username] = min(record.time_ns, first_arrival.get(record.username, record.time_ns))
            arrivals = [(ns - host_open_ns) / 1e6 for ns in first_arrival.values()]
        return DemoResult(config, warmed, rows, skew_ms, offset, arrivals)
    finally:
        if own_dir is not None:
            own_dir.cleanup()
