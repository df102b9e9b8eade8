"""The report of a real open: the simulator's accounts fired in fake time, the tracker's fill records added as it
writes them, then `python -m daemon report` in a child process (table, `--json`, `--plot`)."""

from __future__ import annotations

import os
import stat
from datetime import timedelta

import orjson
import pytest

from daemon.executor import Executor
from daemon.firing import Journal, read_journal, summarize
from daemon.simulator import PASSWORD_ENV
from daemon.testing import SimulatorSolver
from daemon.warmup import warmup
from daemon.wiring import Wiring
from tests.processes import run_daemon
from tests.simhelp import daemon_clock, sim_config, write_sim_config

pytestmark = [pytest.mark.sim(accounts=3, brokers=("gs", "shahr"), loop_time=True), pytest.mark.looptime]

FAST = {"clock_source": "none", "final_check_s": 0.5, "answer_timeout_s": 2.0}


async def fired(sim, tmp_path):
    """Three accounts armed and fired at an open 2.5 s ahead; the config written for the child report."""
    overrides = {"state_dir": str(tmp_path / "state"), "executor": FAST, "schedule": {"window_s": 5}}
    config = sim_config(sim, **overrides)
    services = Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim))
    assert all(r.ok for r in await warmup(services.clients(config.accounts), services.clock))
    open_at = sim.now().astimezone(config.tz) + timedelta(seconds=2.5)
    sim.set_open_at(open_at)
    ex = Executor.from_wiring(services, Journal(config.state_dir, open_at.date()), day=open_at.date())
    async with services:
        try:
            await ex.arm(config.accounts, open_at)
            await ex.run_after_arm()
        finally:
            await ex.aclose()
    return config, ex.day, write_sim_config(sim, tmp_path / "config.yaml", **overrides)


async def test_a_fired_morning_with_fills_reads_back_through_the_command(sim, tmp_path):
    config, day, path = await fired(sim, tmp_path)
    rows = summarize(read_journal(config.state_dir, day))
    assert len(rows) == 3 and all(r.accepted for r in rows)
    tracker = Journal(config.state_dir, day)  # what the tracker writes after the window, the last record counting
    executed = {
        rows[0].account: (100, "filled"),
        rows[1].account: (40, "partly filled"),
        rows[2].account: (0, "queued"),
    }
    for row in rows:
        shares, state = executed[row.account]
        price = float(row.price) if shares else None
        tracker.record(
            "fill",
            account=row.account,
            broker=row.broker,
            isin=row.isin,
            side=row.side,
            serial_number=row.serial_number,
            tracking_number=row.tracking_number,
            volume=row.volume,
            executed=min(shares, row.volume),
            average_price=price,
            fill_value=None if price is None else min(shares, row.volume) * price,
            fill_state=state if shares < row.volume else "filled",
            fill_at=(sim.now() + timedelta(minutes=10)).isoformat(),
        )
    await tracker.flush()
    env = {PASSWORD_ENV: "sim-pass"}
    plot = tmp_path / "open.png"
    done = run_daemon(
        "report", "--config", str(path), "--date", day.isoformat(), "--json", "--plot", str(plot), env=env
    )
    assert done.returncode == 0, done.stderr
    data = orjson.loads(done.stdout)
    assert [o["account"] for o in data["orders"]] == [r.account for r in rows]
    assert all(o["first_send_ms"] is not None and o["first_answer_ms"] >= o["first_send_ms"] for o in data["orders"])
    want_shares = sum(min(executed[r.account][0], r.volume) for r in rows)
    assert data["summary"]["accepted"] == 3 and data["summary"]["shares_filled"] == want_shares
    assert data["summary"]["rial_filled"] == sum(
        min(executed[r.account][0], r.volume) * r.price for r in rows if executed[r.account][0]
    )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and stat.S_IMODE(os.stat(plot).st_mode) == 0o600
    table = run_daemon("report", "--config", str(path), "--date", day.isoformat(), env=env)
    assert table.returncode == 0, table.stderr
    assert f"3 of 3 orders accepted on {day}.\n" in table.stdout
    assert "sim-pass" not in table.stdout + done.stdout
