"""Faults at the open: a stepped wall clock, lost and failed answers, and never a duplicate order."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from daemon.executor import Executor
from daemon.firing import Journal, read_journal, summarize
from daemon.simulator import Simulator
from daemon.testing import SimulatorSolver, daemon_clock
from daemon.warmup import warmup
from daemon.wiring import Wiring
from tests.simhelp import sim_config

pytestmark = [pytest.mark.sim(accounts=6, brokers=("gs", "shahr"), loop_time=True), pytest.mark.looptime]


class SteppedClock:
    """The simulator's clock as the daemon's, with a wall clock an NTP step can move (the monotonic one never)."""

    def __init__(self, under) -> None:
        self.under = under
        self.virtual = getattr(under, "virtual", False)  # waits sleep to the instant on a loop-time clock
        self.step_ns = 0

    def time_ns(self) -> int:
        return self.under.time_ns() + self.step_ns

    def now(self):
        return self.under.now() + timedelta(microseconds=self.step_ns / 1000)

    def monotonic_ns(self) -> int:
        return self.under.monotonic_ns()

    async def sleep_until(self, when) -> None:
        while (left := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(left)


async def fire_once(sim: Simulator, tmp_path, clock=None, accounts: int = 4, between=None, **executor):
    config = sim_config(
        sim,
        state_dir=str(tmp_path / "state"),
        schedule={"window_s": 6},
        executor={"clock_source": "none", "final_check_s": 0.3, "answer_timeout_s": 1.0, **executor},
    )
    clock = clock or daemon_clock(sim)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        chosen = config.accounts[:accounts]
        assert all(r.ok for r in await warmup(services.clients(chosen), services.clock))
        open_at = sim.now().astimezone(config.tz) + timedelta(seconds=2)
        sim.set_open_at(open_at)
        ex = Executor.from_wiring(services, Journal(config.state_dir, open_at.date()), day=open_at.date())
        try:
            await ex.arm(chosen, open_at)
            if between:
                between()
            await ex.run_after_arm()
        finally:
            await ex.aclose()
    return ex, config, chosen


@pytest.mark.parametrize("step_s", [5.0, -5.0])
async def test_a_wall_clock_step_after_the_arm_does_not_move_the_fire_instant(sim, tmp_path, step_s):
    clock = SteppedClock(daemon_clock(sim))

    def ntp_step():
        clock.step_ns = int(step_s * 1e9)

    ex, config, accounts = await fire_once(sim, tmp_path, clock=clock, between=ntp_step)
    rows = summarize(read_journal(config.state_dir, ex.day))
    assert all(r.accepted and r.attempts == 1 for r in rows)
    assert all(abs(r.first_send_ms) < 1000 for r in rows)  # at the open, not 5 s early (1017) or late (load may add ms)
    assert not [r for r in sim.request_log.records(route="new_order") if r.error_code == 1017]


async def test_5xx_answers_in_the_window_are_retried_without_duplicates(sim, tmp_path):
    sim.add_fault("new_order:status=503,rate=0.5")
    ex, config, accounts = await fire_once(sim, tmp_path, accounts=6, max_attempts=8)
    orders = sim.orders()
    assert sorted(o.username for o in orders) == sorted(a.username for a in accounts)  # each exactly once
    assert [r.status for r in sim.request_log.records(route="new_order")].count(503) >= 1


async def test_an_order_whose_answer_is_lost_is_found_not_sent_again(sim, tmp_path):
    sim.add_fault("new_order:drop,after")  # booked, then the connection closes without an answer
    ex, config, accounts = await fire_once(sim, tmp_path, accounts=3)
    assert len(sim.orders()) == 3
    assert len(sim.request_log.records(route="new_order")) == 3  # one send each: no resend, no duplicate
    rows = summarize(read_journal(config.state_dir, ex.day))
    assert all(r.accepted for r in rows)
    assert all(
        "found at the broker" in r
        for r in [o["reason"] for o in read_journal(config.state_dir, ex.day) if o["kind"] == "outcome"]
    )


async def test_a_broken_answer_body_is_checked_before_a_resend(sim, tmp_path):
    sim.add_fault("new_order:malformed,after")
    ex, config, accounts = await fire_once(sim, tmp_path, accounts=2)
    assert len(sim.orders()) == 2
    assert len(sim.request_log.records(route="new_order")) == 2


async def test_a_slow_final_check_is_cut_short_and_the_open_is_kept(sim, tmp_path):
    def slow_broker():
        sim.add_fault("tradingbook:delay_ms=3000")  # the final check's reads hang past the open

    ex, config, accounts = await fire_once(sim, tmp_path, accounts=3, between=slow_broker, final_check_s=1.0)
    rows = summarize(read_journal(config.state_dir, ex.day))
    assert all(r.accepted and r.attempts == 1 for r in rows)
    assert all(abs(r.first_send_ms) < 1000 for r in rows)  # not 3 s late behind the slow reads (load may add ms)
