"""Issue 17's proof of a restart during tracking: a real `python -m daemon run` child against the simulator, a
trading day squeezed into seconds, SIGKILLed while it follows the orders and started again at once.

The simulator (in this process) fills the Exir order in three steps after the open, one before the kill and two
after; the Ephoenix order stays queued, so tracking runs to the close. Asserted from the journal and from the
simulator's own request log: the fill records continue across the restart (each change once, nothing repeated),
no order is sent again, the order lists are read at most once per beat of the cadence per account, and no request
that places an order reaches the simulator during tracking.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.config import validate_config
from daemon.days import day_plan
from daemon.firing import read_journal, summarize
from daemon.simulator import PASSWORD_ENV, Simulator
from daemon.tracking import Cadence
from tests.processes import daemon_env
from tests.simhelp import sim_settings, squeezed_day_data

pytest.importorskip("ddddocr")

KH = "khobregan"
ORDER_ROUTES = ("new_order", "batch")
EVERY_S = 1.0
WAIT_S = 60.0  # for any one log line: a loaded CI machine is slow, the test never sleeps for it


class Run:
    """One `python -m daemon run` child: its JSON log lines, read as they come, awaitable by predicate."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.err = b""
        self._changed = asyncio.Condition()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, config_path: Path) -> Run:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            "run",
            "--config",
            str(config_path),
            env=daemon_env({PASSWORD_ENV: "sim-pass"}),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        async for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        self.err = await self.proc.stderr.read()
        async with self._changed:
            self._changed.notify_all()

    async def until(self, wanted: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The first log line `wanted` accepts (already seen or still to come)."""
        async with asyncio.timeout(WAIT_S):
            async with self._changed:
                while True:
                    found = next((e for e in self.events if wanted(e)), None)
                    if found is not None:
                        return found
                    assert not self._reader.done(), f"the daemon ended before {what}: {self.err.decode()[-2000:]}"
                    await self._changed.wait()

    async def stop(self, sig: int) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(30):
            code = await self.proc.wait()
            await self._reader
        return code

    async def kill_if_running(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)


def change(account: str, state: str, executed: int | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        e.get("event") == "tracking.change"
        and e.get("account") == account
        and e.get("now") == state
        and (executed is None or e.get("executed") == executed)
    )


async def test_a_run_killed_during_tracking_resumes_from_the_journal_and_sends_nothing_again(tmp_path):
    async with Simulator.default(accounts=2, brokers=[(KH, "exir"), "gs"], settings=sim_settings()) as sim:
        data = squeezed_day_data(
            sim,
            warmup_in_s=1,
            open_in_s=14,
            arm_before_s=3,
            window_s=2,
            refresh_s=1,
            close_in_s=50,
            state_dir=str(tmp_path / "state"),
            cache={"dir": str(tmp_path / "cache")},
            executor={"clock_source": "none", "final_check_s": 0.5},
            tracking={"every_s": EVERY_S, "until": "23:00", "then_every_s": 60},  # every second to the close
        )
        config = validate_config(data)
        config_path = tmp_path / "config.yaml"
        config_path.write_text(yaml.safe_dump(data, allow_unicode=True))
        config_path.chmod(0o600)
        names = {a["username"]: a["name"] for a in data["accounts"]}
        first = await Run.start(config_path)
        second: Run | None = None
        try:
            await first.until(lambda e: e.get("event") == "report.day", "the report")
            (order,) = sim.orders(KH)
            exir = names[order.username]
            third = order.volume // 3
            await first.until(change(exir, "queued"), "the Exir order read queued")
            sim.fill(order, third)
            await first.until(change(exir, "partly filled", third), "the first fill seen")
            first.proc.send_signal(signal.SIGKILL)
            assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
            killed_at = sim.now()
            sim.fill(order, 2 * third)  # while no daemon runs
            second = await Run.start(config_path)
            await second.until(lambda e: e.get("event") == "track started", "tracking resumed")
            await second.until(change(exir, "partly filled", 2 * third), "the second fill seen")
            sim.fill(order)
            await second.until(change(exir, "filled", order.volume), "the order seen filled")
            done = await second.until(lambda e: e.get("event") == "tracking.done", "the close")
            assert await second.stop(signal.SIGTERM) == 0
        finally:
            await first.kill_if_running()
            if second is not None:
                await second.kill_if_running()

    day = datetime.fromisoformat(done["timestamp"]).astimezone(config.tz).date()
    plan = day_plan(config, day)
    records = read_journal(config.state_dir, day)
    fills = [r for r in records if r["kind"] == "fill"]
    assert [(f["fill_state"], f["executed"]) for f in fills if f["account"] == exir] == [
        ("queued", 0),
        ("partly filled", third),
        ("partly filled", 2 * third),  # written by the restarted process: the journal continues
        ("filled", order.volume),
    ]
    ephoenix = next(n for n in names.values() if n != exir)
    assert [(f["fill_state"], f["executed"]) for f in fills if f["account"] == ephoenix] == [("queued", 0)]
    rows = {r.account: r for r in summarize(records)}
    assert (rows[exir].fill_state, rows[ephoenix].fill_state) == ("filled", "queued")
    assert all(r.accepted and r.attempts == 1 for r in rows.values())

    names_seen = [e["event"] for e in second.events]
    assert "started after the fire window: tracking the day's orders" in names_seen
    assert not {"warmup started", "arm started", "executor.armed"} & set(names_seen)  # straight to tracking
    assert done["at_close"] is True
    assert len(sim.orders()) == 2  # nothing sent again

    assert plan.close is not None
    cadence = Cadence.of_day(day, config.tz, plan.window_end, plan.close, EVERY_S, config.tracking.until, 60)
    window_end_ns = int(plan.window_end.timestamp() * 1e9)
    during = [r for r in sim.request_log.records() if r.time_ns >= window_end_ns]
    assert [r for r in during if r.route in ORDER_ROUTES] == []  # tracking never places anything
    reads = Counter(r.username for r in during if r.route == "orders")
    bound = cadence.bound(plan.window_end, plan.close + timedelta(seconds=1))
    assert all(0 < reads[u] <= bound for u in names), (reads, bound)
    assert killed_at < plan.close
    assert "sim-pass" not in json.dumps(first.events + second.events)


def test_the_squeezed_day_has_tracking_only_when_asked():
    async def data(close_in_s: float | None) -> dict[str, Any]:
        async with Simulator.default(accounts=1, brokers=["gs"], settings=sim_settings()) as sim:
            return squeezed_day_data(
                sim, warmup_in_s=1, open_in_s=5, arm_before_s=1, window_s=1, refresh_s=1, close_in_s=close_in_s
            )

    off, on = validate_config(asyncio.run(data(None))), validate_config(asyncio.run(data(30)))
    today = datetime.now(on.tz).date()
    assert day_plan(off, today).close is None
    plan = day_plan(on, today)
    assert plan.close is not None and plan.close - plan.open == timedelta(seconds=25)
