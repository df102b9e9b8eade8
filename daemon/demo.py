"""A whole open against the embedded simulator: no broker account needed, under a minute.

The simulator runs in this process on loopback with its clock skewed, so the demo shows every part
doing its real work: captcha logins read by the OCR solver, warmup into a private cache, the broker's
clock measured, the plans armed and fired at the open, and the report read back from the journal. A couple of
seconds after its open the simulator's exchange fills part of some orders (on the platforms whose order lists
show fills); the demo's tracker then follows the orders on a short cadence until it has seen those fills
(bounded), as the service does after the window, and the report ends with what each order became. With a
notification URL the fire summary and the fill summary go there.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.clock import Clock
from daemon.config import Config, validate_config
from daemon.executor import Executor
from daemon.firing import Journal, ReportRow
from daemon.logs import get_logger
from daemon.notify import Notifications
from daemon.sim_config import sim_config_data
from daemon.simulator import PASSWORD_ENV, SimSettings, Simulator
from daemon.tracking import Tracker
from daemon.warmup import AccountWarmup, warmup
from daemon.wiring import Wiring

log = get_logger("demo")

DEMO_PASSWORD = "demo-pass-not-secret"
# the simulator's draws (captchas, serial numbers): the same demo each run, unless --seed says otherwise
DEMO_SEED = 1405
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
FILL_AFTER_S = 2.0
"""The simulator's exchange fills part of some orders this long after its open."""
FILLED_BROKERS = ("khobregan", "hafez", "mofid")
"""The brokers whose orders the demo's exchange fills (`sim.fill`): per broker its first order by half, its second in
full; the Ephoenix brokers' orders stay queued, so the report shows that state too."""
TRACK_EVERY_S = 1.0
TRACK_BEATS = 15
"""The demo's tracking: a read of every account's orders each second, at most this many, then the close's."""


@dataclass
class DemoResult:
    config: Config
    warmup: list[AccountWarmup]
    rows: list[ReportRow]
    skew_ms: float
    measured_offset_ms: float | None
    arrivals_ms: list[float]  # each account's first order at the simulator, after the open (its own stamps)
    fills_made: int = 0  # orders the simulator's exchange filled (in part or in full)
    tracking_beats: int = 0
    notified: list[tuple[str, str]] = field(default_factory=list)  # (event, destination) delivered
    notify_failed: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.accepted for r in self.rows) and not self.notify_failed

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
            "fills_made": self.fills_made,
            "orders_seen_filled": sum(bool(r.executed) for r in self.rows),
            "filled_shares": sum(r.executed or 0 for r in self.rows),
            "filled_rial": round(sum(r.fill_value or 0 for r in self.rows)),
            "tracking_beats": self.tracking_beats,
            "notified": [event for event, _ in self.notified],
        }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"min": round(ordered[0], 3), "p50": round(statistics.median(ordered), 3), "max": round(ordered[-1], 3)}


def demo_config(sim: Simulator, workdir: Path, spacing_s: float, notify_url: str | None = None) -> Config:
    data = sim_config_data(
        sim.config_snippet().data,
        state_dir=workdir / "state",
        cache_dir=workdir / "cache",
        captcha={"solver": "ocr", "spacing_s": spacing_s},
        executor={"final_check_s": 2.0},
        schedule={"window_s": 10},
        notify={"urls": [notify_url] if notify_url else [], "on": ["fire_summary", "fill_summary", "unknown_order"]},
    )
    return validate_config(data, source="demo config")


def fill_some(sim: Simulator) -> int:
    """The simulator's exchange trades: per broker of FILLED_BROKERS half of its first order, all of its second."""
    made = 0
    for broker in FILLED_BROKERS:
        orders = sorted(sim.orders(broker), key=lambda o: o.serial_number)
        if orders:
            sim.fill(orders[0], max(1, orders[0].volume // 2))
        if len(orders) > 1:
            sim.fill(orders[1])
        made += min(len(orders), 2)
    return made


async def fill_after_open(sim: Simulator, clock: Clock, open_at: datetime) -> int:
    await clock.sleep_until(open_at + timedelta(seconds=FILL_AFTER_S))
    return fill_some(sim)


async def track(tracker: Tracker, clock: Clock, expected: int) -> int:
    """Beats every TRACK_EVERY_S until the tracker has seen `expected` orders with fills (or TRACK_BEATS passed),
    then the close's beat, which sends the fill summary; how many beats were made."""
    beats = 0
    next_at = clock.now()
    while beats < TRACK_BEATS:
        await clock.sleep_until(next_at)
        beats += 1
        if await tracker.beat():
            return beats
        if sum(bool(r.executed) for r in tracker.rows()) >= expected:
            break
        next_at += timedelta(seconds=TRACK_EVERY_S)
    await tracker.beat(final=True)
    return beats + 1


async def run_demo(
    clock: Clock,
    accounts: int = 20,
    skew_ms: float = 1500.0,
    lead_s: float = 8.0,
    spacing_s: float = 0.2,
    workdir: Path | None = None,
    notify_url: str | None = None,
    seed: int | None = DEMO_SEED,
) -> DemoResult:
    """Simulator up, warmup, open `lead_s` after the warmup on the simulator's (skewed) clock, fire, track the
    fills, report; `notify_url` (apprise) gets the fire and the fill summaries. `seed` fixes the simulator's draws
    (captchas, serial numbers), so two demos meet the same captchas; None draws afresh."""
    own_dir = None if workdir else tempfile.TemporaryDirectory(prefix="opening-bell-demo-")
    root = Path(workdir or own_dir.name)  # type: ignore[union-attr]
    os.environ[PASSWORD_ENV] = DEMO_PASSWORD
    sim = Simulator.default(
        accounts=accounts,
        brokers=list(DEMO_BROKERS),
        settings=SimSettings(skew_ms=skew_ms, seed=seed),
        clock=clock,
        password=DEMO_PASSWORD,
    )
    notify: Notifications | None = None
    try:
        async with sim:
            config = demo_config(sim, root, spacing_s, notify_url)
            notify = Notifications.from_config(config, clock)  # before any login: a bad URL costs nothing
            async with Wiring(config, clock) as services:
                warmed = await warmup(services.clients(config.accounts), services.clock)
                open_at = (sim.now() + timedelta(seconds=lead_s)).astimezone(config.tz)
                sim.set_open_at(open_at)
                day = open_at.date()
                executor = Executor.from_wiring(services, Journal(config.state_dir, day), day=day)
                filling = asyncio.create_task(fill_after_open(sim, clock, open_at))
                try:
                    rows = await executor.run_open(list(config.accounts), open_at)
                    fills_made = await filling
                finally:
                    filling.cancel()
                if notify is not None:
                    notify.fire_summary(day, rows)
                tracker = Tracker(
                    config.state_dir,
                    day,
                    config.tz,
                    clock,
                    lambda: [services.client(a) for a in config.accounts],
                    notify=notify,
                )
                beats = await track(tracker, clock, fills_made)
                rows = [r for r in tracker.rows() if r.account in {a.name for a in config.accounts}]
            if notify is not None and not await notify.outbox.drain(30):
                log.warning("demo.notify_slow", consequence="messages still queued were dropped")
            clocks = list(executor.clocks.values())
            offset = round(statistics.median(c.estimate.offset_s for c in clocks) * 1000, 3) if clocks else None
            host_open_ns = int(open_at.timestamp() * 1e9) - int(skew_ms * 1e6)
            first_arrival: dict[str | None, int] = {}
            for record in (r for route in ORDER_ROUTES for r in sim.request_log.records(route=route)):
                first_arrival[record.username] = min(record.time_ns, first_arrival.get(record.username, record.time_ns))
            arrivals = [(ns - host_open_ns) / 1e6 for ns in first_arrival.values()]
        sent = list(notify.outbox.sent) if notify is not None else []
        failed = list(notify.outbox.failed) if notify is not None else []
        return DemoResult(config, warmed, rows, skew_ms, offset, arrivals, fills_made, beats, sent, failed)
    finally:
        if notify is not None:
            await notify.aclose()
        if own_dir is not None:
            own_dir.cleanup()
