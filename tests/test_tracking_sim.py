"""Order tracking against the simulator, through the real scheduler and runner in fake time: a morning whose
Exir orders the exchange fills after the open (one in part, one in full), followed to the close."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from daemon.firing import read_journal, summarize
from daemon.scheduler import ClockAlarm, DayScheduler
from daemon.service import make_runner
from daemon.tracking import Cadence
from tests.simhelp import SimulatorSolver, daemon_clock, sim_config

KH = "khobregan"
ORDER_ROUTES = ("new_order", "batch")
pytestmark = [pytest.mark.sim(accounts=4, brokers=((KH, "exir"), "gs"), loop_time=True), pytest.mark.looptime]


def morning(sim, tmp_path, close: str, then_every_s: int):
    """A day opening at 08:45 on the simulator's fake clock, tracked every 30 s until 09:00, then every
    `then_every_s` until `close`: the daemon's clock, its config and the open."""
    clock = daemon_clock(sim)
    config = sim_config(
        sim,
        state_dir=str(tmp_path / "state"),
        cache={"dir": str(tmp_path / "cache")},
        executor={"clock_source": "none", "final_check_s": 1.0},
        schedule={"warmup": "07:40", "open": "08:45", "arm_before_s": 60, "window_s": 30, "refresh_s": 600,
                  "close": close},
        tracking={"every_s": 30, "until": "09:00", "then_every_s": then_every_s},
    )  # fmt: skip
    open_at = clock.now().astimezone(config.tz).replace(hour=8, minute=45, second=0, microsecond=0)
    sim.set_open_at(open_at)
    return clock, config, open_at


async def test_the_tracker_finds_the_fills_the_report_shows_them_and_its_reads_stay_within_the_cadence(sim, tmp_path):
    clock, config, open_at = morning(sim, tmp_path, close="10:00", then_every_s=600)
    window_end, close = open_at + timedelta(seconds=30), open_at.replace(hour=10, minute=0)
    runner = make_runner(config, clock, solver=SimulatorSolver(sim))
    scheduler = DayScheduler(config, runner, clock, ClockAlarm(clock))
    try:
        scheduler.start()
        await clock.sleep_until(open_at + timedelta(minutes=2, seconds=10))
        part, whole = sorted(sim.orders(KH), key=lambda o: o.username)
        sim.fill(part, part.volume // 3)  # the exchange trades a third of one order
        await clock.sleep_until(open_at + timedelta(minutes=20))
        sim.fill(whole)  # and the other in full
        await clock.sleep_until(close + timedelta(minutes=5))
        await scheduler.stop()
    finally:
        await runner.aclose()

    rows = {r.account: r for r in summarize(read_journal(config.state_dir, open_at.date()))}
    names = {a.username: a.name for a in config.accounts}
    assert all(r.accepted for r in rows.values()) and len(rows) == 4
    partly, full = rows[names[part.username]], rows[names[whole.username]]
    assert (partly.fill_state, partly.executed, partly.volume) == ("partly filled", part.volume // 3, part.volume)
    assert partly.fill_value == partly.executed * part.price
    assert (full.fill_state, full.executed) == ("filled", whole.volume)
    ephoenix = [r for r in rows.values() if r.broker == "gs"]
    assert [r.fill_state for r in ephoenix] == ["queued", "queued"]  # nothing traded there: followed to the close
    fills = [r for r in read_journal(config.state_dir, open_at.date()) if r["kind"] == "fill"]
    seen = [(f["fill_state"], f["executed"]) for f in fills if f["account"] == partly.account]
    assert seen == [("queued", 0), ("partly filled", part.volume // 3)]  # one record per change
    first_partial = next(f for f in fills if f["account"] == partly.account and f["executed"])
    assert first_partial["fill_at"].startswith(f"{open_at.date()}T08:47:30")  # the beat after the fill

    # reads: one list per account and beat, never more than the cadence's beats, and nothing placed meanwhile
    cadence = Cadence.of_day(open_at.date(), config.tz, window_end, close, 30, config.tracking.until, 600)
    bound = cadence.bound(window_end, close)
    assert bound == 29 + 6 + 1
    after = [r for r in sim.request_log.records() if r.time_ns >= int(window_end.timestamp() * 1e9)]
    reads = Counter(r.username for r in after if r.route == "orders")
    assert all(0 < reads[a.username] <= bound for a in config.accounts)
    assert all(reads[a.username] == bound for a in config.accounts if a.broker == "gs")  # followed every beat
    assert reads[whole.username] == 29 + 2  # 08:45:30 ... 08:59:30, 09:00, and 09:10, which saw it filled at 09:05
    assert [r for r in after if r.route in ORDER_ROUTES] == []
    assert len(sim.orders()) == 4  # nothing sent again


async def test_a_fill_plan_of_the_simulator_is_followed_to_filled_and_tracking_ends_with_it(sim, tmp_path):
    """The simulator's per-instrument setting (40 % two minutes after the open at one price, the rest at +25 min at
    another): every account's order goes queued -> partly filled -> filled with the broker's average price (Ephoenix
    from executedAmount, Exir from averageTradedPrice), and once all are filled the tracker stops reading."""
    clock, config, open_at = morning(sim, tmp_path, close="12:30", then_every_s=300)
    (isin,) = {o.isin for a in config.accounts for o in a.orders}
    band = sim.state.market.instruments[isin]
    first, rest = band.maxap - 10, band.maxap - 20  # the fills' own prices, under the orders' limit
    sim.set_fill(isin, f"0.4@2m:{first}", f"1@25m:{rest}")
    runner = make_runner(config, clock, solver=SimulatorSolver(sim))
    scheduler = DayScheduler(config, runner, clock, ClockAlarm(clock))
    try:
        scheduler.start()
        await clock.sleep_until(open_at.replace(hour=12, minute=35))
        await scheduler.stop()
    finally:
        await runner.aclose()

    day = open_at.date()
    rows = summarize(read_journal(config.state_dir, day))
    assert len(rows) == 4 and all(r.accepted for r in rows)
    for row in rows:
        part = row.volume * 4 // 10
        assert (row.fill_state, row.executed) == ("filled", row.volume)
        assert row.average_price == pytest.approx((part * first + (row.volume - part) * rest) / row.volume)
        assert row.fill_value == pytest.approx(part * first + (row.volume - part) * rest)
        seen = [
            (f["fill_state"], f["executed"])
            for f in read_journal(config.state_dir, day)
            if f["kind"] == "fill" and f["account"] == row.account
        ]
        assert seen == [("queued", 0), ("partly filled", part), ("filled", row.volume)]
    last_read = max(r.time_ns for r in sim.request_log.records(route="orders"))
    assert last_read < int((open_at + timedelta(minutes=31)).timestamp() * 1e9)  # every order ended: no more reads
