"""The real DayRunner against the simulator: one trading day's work in the order the scheduler calls it."""

from __future__ import annotations

from collections import Counter

import pytest

from daemon.clock import SystemClock
from daemon.firing import read_journal, summarize
from daemon.service import make_runner
from daemon.sim.ephoenix import OK
from daemon.simulator import PASSWORD_ENV, Simulator
from tests.simhelp import SimulatorSolver, plan_in, sim_config, sim_settings

pytest.importorskip("ddddocr")


async def test_a_day_warm_refresh_arm_fire_report(monkeypatch, tmp_path):
    monkeypatch.setenv(PASSWORD_ENV, "sim-pass")
    async with Simulator.default(accounts=4, brokers=["gs", "shahr"], settings=sim_settings()) as sim:
        config = sim_config(
            sim,
            state_dir=str(tmp_path / "state"),
            schedule={"window_s": 5},
            executor={"clock_source": "none", "final_check_s": 0.3},
            cache={"ttl": {"buying_power": 0.001}},
        )
        runner = make_runner(config, SystemClock(), solver=SimulatorSolver(sim))
        plan = plan_in(sim, config, open_in_s=3, window_s=5)
        try:
            await runner.warmup(plan)
            books_after_warmup = len(sim.request_log.records(route="tradingbook"))
            await runner.refresh(plan)  # buying power expired (tiny TTL): fetched again
            assert len(sim.request_log.records(route="tradingbook")) == books_after_warmup + 4
            await runner.arm(plan)
            armed_at = len(sim.request_log)
            await runner.refresh(plan)  # after the arm, refreshing stops
            assert len(sim.request_log) == armed_at
            await runner.fire(plan)
            await runner.report(plan)
        finally:
            await runner.aclose()
        assert len(sim.orders()) == 4
        assert all(r.accepted for r in summarize(read_journal(config.state_dir, plan.day)))
        logins = [
            r for r in sim.request_log.records(route="login") if r.error_code == OK
        ]  # a misread captcha is retried
        assert len(logins) == 4  # tokens reused from warmup on


async def test_armed_after_the_open_with_no_warmup_fires_each_account_once(monkeypatch, tmp_path):
    """A `run` restarted inside the window arms at once: a cold cache (logins at arm), the open already past."""
    monkeypatch.setenv(PASSWORD_ENV, "sim-pass")
    async with Simulator.default(accounts=4, brokers=["gs", "shahr"]) as sim:
        config = sim_config(
            sim,
            state_dir=str(tmp_path / "state"),
            schedule={"window_s": 20},
            executor={"clock_source": "none", "final_check_s": 0.3},
        )
        runner = make_runner(config, SystemClock(), solver=SimulatorSolver(sim))
        plan = plan_in(sim, config, open_in_s=-0.5, window_s=20)  # the open was half a second ago
        try:
            await runner.arm(plan)
            await runner.fire(plan)
            await runner.report(plan)
        finally:
            await runner.aclose()
        sends = Counter(r.username for r in sim.request_log.records(route="new_order"))
        assert sends == Counter({a.username: 1 for a in config.accounts})  # one NewOrder each, accepted at once
        orders = sim.orders()
        assert sorted(o.username for o in orders) == sorted(a.username for a in config.accounts)  # one each
        journal = read_journal(config.state_dir, plan.day)
        assert all(r.accepted for r in summarize(journal)) and len(summarize(journal)) == 4
        assert all(r["vs_open_ms"] > 0 for r in journal if r.get("kind") == "send")  # sent late, at once
        logins = [r for r in sim.request_log.records(route="login") if r.error_code == OK]
        assert len(logins) == 4  # each account logged in once, at arm
