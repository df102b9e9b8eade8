"""Two group runners in one process against the simulator: a member that dies after the arm has its accounts
taken over, warmed and armed late by the other, which fires them with its own; nothing is fired twice."""

from __future__ import annotations

from collections import Counter

import pytest

from daemon.clock import SystemClock
from daemon.service import make_runner
from daemon.simulator import PASSWORD_ENV, Simulator
from tests.simhelp import SimulatorSolver, plan_in, sim_config, sim_settings

pytest.importorskip("ddddocr")


@pytest.mark.slow
async def test_accounts_of_a_member_dead_after_the_arm_are_armed_late_and_fired_once(
    monkeypatch, tmp_path, redis_url
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "sim-pass")
    async with Simulator.default(accounts=6, brokers=["gs", "shahr"], settings=sim_settings()) as sim:

        def runner(name: str):
            config = sim_config(
                sim,
                state_dir=str(tmp_path / name),
                schedule={"window_s": 1},
                cache={"backend": "redis", "redis_url": redis_url},
                client={"cross_check": False},
                group={"enabled": True, "lease_ttl_s": 1.0, "heartbeat_s": 0.2, "member_name": name},
                executor={"clock_source": "none", "final_check_s": 0.3},
            )
            return make_runner(config, SystemClock(), solver=SimulatorSolver(sim))

        alive, doomed = runner("alive"), runner("doomed")
        try:
            await doomed.start()
            await alive.start()
            await alive.group.tick()  # both have seen each other now: each holds its share
            await doomed.group.tick()
            await alive.group.tick()
            assert alive.accounts and doomed.accounts
            plan = plan_in(sim, alive.config, open_in_s=7, window_s=1)
            await alive.warmup(plan)
            await doomed.warmup(plan)
            await alive.arm(plan)
            await doomed.arm(plan)
            lost = {a.name for a in doomed.accounts}
            await doomed.group.stop(release=False)  # dies after its arm: its leases run out in Redis
            await alive.fire(plan)  # takes them over before the cutoff, arms them late, fires all
        finally:
            await alive.aclose()
            await doomed.aclose()
    sends = Counter(r.username for r in sim.request_log.records(route="new_order"))
    assert len(sends) == 6 and set(sends.values()) == {1}
    assert len(alive.config.accounts) == 6 and lost and len(sim.orders()) == 6
