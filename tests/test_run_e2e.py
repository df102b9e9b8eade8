"""`python -m daemon run` with the real runner against the simulator: a trading day squeezed into seconds."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.simulator import PASSWORD_ENV, Simulator
from tests.processes import daemon_env
from tests.simhelp import sim_settings, squeezed_day_data

pytest.importorskip("ddddocr")


async def run_one_day(tmp_path: Path, data: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Start `python -m daemon run` on `data`, follow its log lines to the day's report, SIGTERM it:
    its exit code and every event it logged."""
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        "run",
        "--config",
        str(config_path),
        env=daemon_env({PASSWORD_ENV: "sim-pass"}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    events = []
    try:
        async with asyncio.timeout(60):
            while True:
                line = await proc.stdout.readline()
                assert line, (await proc.stderr.read()).decode()[-2000:]
                event = json.loads(line)
                events.append(event)
                if event.get("event") == "report.day":
                    break
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return code, events


async def test_the_service_warms_arms_fires_and_reports_by_itself(tmp_path):
    async with Simulator.default(accounts=4, brokers=["gs", "shahr"], settings=sim_settings()) as sim:
        data = squeezed_day_data(
            sim,
            warmup_in_s=1,
            open_in_s=14,
            arm_before_s=3,
            window_s=2,
            refresh_s=1,  # a slow start may still warm
            state_dir=str(tmp_path / "state"),
            cache={"dir": str(tmp_path / "cache")},
            executor={"clock_source": "none", "final_check_s": 0.5},
        )
        code, events = await run_one_day(tmp_path, data)
        assert code == 0
        assert events[-1]["accepted"] == 4
        assert len(sim.orders()) == 4
        names = [e["event"] for e in events]
        assert names.index("day.warmed") < names.index("executor.armed") < names.index("executor.window_closed")
        assert "sim-pass" not in json.dumps(events)


@pytest.mark.parametrize(
    ("open_in_s", "arm_before_s", "window_s"),
    [
        (4, 8, 3),  # restarted between the arm time and the open: armed at once, fired at the open
        (-0.5, 3, 10),  # restarted after the open: armed and fired at once, inside the window
    ],
    ids=["before-the-open", "after-the-open"],
)
async def test_run_restarted_inside_the_window_fires_each_account_once(tmp_path, open_in_s, arm_before_s, window_s):
    """systemd restarts `run` after the arm time: no warmup, a cold cache (logins at arm), today's orders sent."""
    async with Simulator.default(accounts=4, brokers=["gs", "shahr"]) as sim:
        data = squeezed_day_data(
            sim,
            warmup_in_s=open_in_s - arm_before_s - 1,
            open_in_s=open_in_s,
            arm_before_s=arm_before_s,
            window_s=window_s,
            refresh_s=1,
            state_dir=str(tmp_path / "state"),
            cache={"dir": str(tmp_path / "cache")},
            executor={"clock_source": "none", "final_check_s": 0.5},
        )
        code, events = await run_one_day(tmp_path, data)
        assert code == 0
        usernames = sorted(account["username"] for account in data["accounts"])
        assert sorted(order.username for order in sim.orders()) == usernames  # exactly one order per account
        assert events[-1]["accepted"] == 4
        names = [e["event"] for e in events]
        assert names.count("started inside the fire window: arming now") == 1
        assert "day.warmed" not in names and "warmup started" not in names
        assert names.index("started inside the fire window: arming now") < names.index("executor.armed")
        assert names.index("executor.armed") < names.index("executor.window_closed") < names.index("report.day")
        assert "sim-pass" not in json.dumps(events)
