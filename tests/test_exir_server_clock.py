"""Exir's reads signed on the tenant's clock: a host clock seconds off the server's still warms up, because the
session moves the signature's second by what the answers' Date headers show (a second or more only)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from daemon.platforms.exir._server_clock import NS, ServerClock
from daemon.sim.exir import BAD_SIGNATURE, exir_state
from daemon.testing import LoopClock, SimulatorSolver, daemon_clock, running_simulator, sim_config, sim_settings
from daemon.warmup import warmup
from daemon.wiring import Wiring

T0 = datetime(2026, 11, 21, 5, 0, 10, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * NS


def date_of(ns: int) -> str:
    return format_datetime(datetime.fromtimestamp(ns // NS, tz=UTC), usegmt=True)


def test_a_server_seconds_ahead_moves_the_signed_second():
    clock = ServerClock()
    clock.note(date_of(T0_NS + 3 * NS), T0_NS, T0_NS + 20_000_000)
    assert clock.second(T0_NS + 10_000_000) == T0_NS // NS + 3


def test_a_server_behind_moves_it_back():
    clock = ServerClock()
    clock.note(date_of(T0_NS - 2 * NS), T0_NS, T0_NS)
    assert clock.second(T0_NS + 100_000_000) == T0_NS // NS - 2


def test_less_than_a_second_apart_signs_on_the_host_clock():
    clock = ServerClock()
    clock.note(date_of(T0_NS), T0_NS + 400_000_000, T0_NS + 400_000_000)  # Date's whole second, host 0.4 s in
    assert clock.offset_ns == 0 and clock.second(T0_NS + 999_000_000) == T0_NS // NS


@pytest.mark.parametrize("header", [None, "", "not a date"])
def test_an_unreadable_date_changes_nothing(header):
    clock = ServerClock()
    clock.note(date_of(T0_NS + 5 * NS), T0_NS, T0_NS)
    clock.note(header, T0_NS, T0_NS)
    assert clock.offset_ns != 0


@pytest.mark.looptime
@pytest.mark.parametrize("skew_ms", [3000, -3000])
async def test_a_broker_clock_seconds_off_still_warms_up(tmp_path, skew_ms):
    """The simulator allows a signature one second off (its default); its clock is 3 s from the daemon's: every
    read signed on the daemon's own clock would be refused. Warmup reads buying power, fees and holdings."""
    clock = LoopClock()
    async with running_simulator(
        accounts=2, brokers=[("khobregan", "exir")], settings=sim_settings(skew_ms=skew_ms), clock=clock
    ) as sim:
        assert exir_state(sim).settings.signature_skew_s == 1
        config = sim_config(sim, state_dir=str(tmp_path / "state"), cache={"dir": str(tmp_path / "cache")})
        async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
            results = await warmup(services.clients(config.accounts), services.clock)
        refused = [r for r in sim.request_log.records() if r.error_code == BAD_SIGNATURE]
    assert all(r.ok for r in results), [r.to_dict() for r in results]
    assert refused == []
