"""`python -m daemon run` with the real runner against the simulator: a trading day squeezed into seconds."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest
import yaml

from daemon.simulator import PASSWORD_ENV, Simulator
from tests.conftest import daemon_env
from tests.simhelp import sim_settings, squeezed_day_data

pytest.importorskip("ddddocr")


async def test_the_service_warms_arms_fires_and_reports_by_itself(tmp_path):
    async with Simulator.default(accounts=4, brokers=["gs", "shahr"], settings=sim_settings()) as sim:
        data = squeezed_day_data(
            sim, warmup_in_s=1, open_in_s=7, arm_before_s=3, window_s=2, refresh_s=1,
            state_dir=str(tmp_path / "state"), cache={"dir": str(tmp_path / "cache")},
            executor={"clock_source": "none", "final_check_s": 0.5},
        )
        config_path = tmp_path / "config.yaml"
        config_path.write_text(yaml.safe_dump(data, allow_unicode=True))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "run", "--config", str(config_path),
            env=daemon_env({PASSWORD_ENV: "sim-pass"}), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
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
        assert code == 0
        assert events[-1]["accepted"] == 4
        assert len(sim.orders()) == 4
        names = [e["event"] for e in events]
        assert names.index("day.warmed") < names.index("executor.armed") < names.index("executor.window_closed")
        assert "sim-pass" not in json.dumps(events)
