"""A group of `python -m daemon run` processes on one Redis against one simulator: a trading day squeezed into
seconds. The simulator's request log is the judge: every account fired exactly once, every account logged in
exactly once, whether all three processes live or one is killed after its warmup and before the arm."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.sim.ephoenix import MARKET_CLOSED, OK, TOO_SOON
from daemon.simulator import PASSWORD_ENV, Simulator
from tests.processes import daemon_env
from tests.simhelp import sim_settings, squeezed_day_data

pytest.importorskip("ddddocr")

ACCOUNTS = 30


def squeezed_day(sim: Simulator, tmp_path: Path, redis_url: str, warmup_in_s: float, open_in_s: float) -> Path:
    """A config for a day whose warmup is `warmup_in_s` from now and whose open is `open_in_s` from now."""
    data = squeezed_day_data(
        sim,
        warmup_in_s=warmup_in_s,
        open_in_s=open_in_s,
        arm_before_s=2.5,
        window_s=2,
        refresh_s=30,
        cache={"backend": "redis", "redis_url": redis_url},
        group={"enabled": True, "lease_ttl_s": 1.5, "heartbeat_s": 0.25},
        client={"cross_check": False},
        executor={"clock_source": "none", "final_check_s": 0.5},
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


class Member:
    """One `daemon run` of the group, with its own state directory (as on its own host) and its log events."""

    def __init__(self, name: str, config: Path, tmp_path: Path) -> None:
        self.name = name
        self.config = config
        self.state = tmp_path / f"state-{name}"
        self.events: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = daemon_env(
            {
                PASSWORD_ENV: "sim-pass",
                "OPENING_BELL__GROUP__MEMBER_NAME": self.name,
                "OPENING_BELL__STATE_DIR": str(self.state),
            }
        )
        with open(self.config.parent / f"{self.name}.stderr", "wb") as stderr:  # a file: a full pipe never blocks it
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "daemon",
                "run",
                "--config",
                str(self.config),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))

    async def wait_for(self, event: str) -> dict[str, Any]:
        """The first log event of that name; this process's stdout is read as it comes."""
        while True:
            found = [e for e in self.events if e.get("event") == event]
            if found:
                return found[0]
            if self.reader is not None and self.reader.done():
                raise AssertionError(f"{self.name} ended before {event}")
            await asyncio.sleep(0.05)  # polling the collected lines, not waiting for time to pass

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(30):
            code = await self.proc.wait()
            if self.reader is not None:
                await self.reader
        return code


async def run_group(
    sim: Simulator, tmp_path: Path, redis_url: str, open_in_s: float, kill: str | None = None
) -> list[Member]:
    """Three members through one squeezed day; `kill` is SIGKILLed once its warmup is done (before the arm).

    The members start on a day an hour away and get the squeezed day by SIGHUP once all three run, so how
    long a busy machine takes to start three Pythons never eats into the day."""
    config = squeezed_day(sim, tmp_path, redis_url, warmup_in_s=3600, open_in_s=3700)
    members = [Member(f"m{i}", config, tmp_path) for i in (1, 2, 3)]
    try:
        async with asyncio.timeout(90):
            for member in members:
                await member.start()
            for member in members:
                await member.wait_for("service started")
            squeezed_day(sim, tmp_path, redis_url, warmup_in_s=2, open_in_s=open_in_s)
            for member in members:
                member.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            for member in members:
                await member.wait_for("config reloaded")
            if kill is not None:
                victim = next(m for m in members if m.name == kill)
                warmed = await victim.wait_for("day.warmed")
                assert warmed["ready"] > 0 and not victim.named("executor.armed")
                assert await victim.stop(signal.SIGKILL) == -signal.SIGKILL
            for member in members:
                if member.name != kill:
                    await member.wait_for("report.day")
        for member in members:
            if member.name != kill:
                assert await member.stop() == 0, member.events[-5:]
    finally:
        for member in members:
            (tmp_path / f"{member.name}.events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in member.events))
            if member.proc is not None and member.proc.returncode is None:
                member.proc.kill()
                await member.proc.wait()
    return members


def fired_once_each(sim: Simulator) -> None:
    records = sim.request_log.records(route="new_order")
    accepted = Counter(r.username for r in records if r.error_code == OK)
    assert len(accepted) == ACCOUNTS and set(accepted.values()) == {1}, accepted
    # a busy machine may put a first send a hair before the open: the broker's "not yet" is retried, never booked
    refused = Counter(r.error_code for r in records if r.error_code != OK)
    assert set(refused) <= {MARKET_CLOSED, TOO_SOON}, refused
    logins = Counter(r.username for r in sim.request_log.records(route="login") if r.error_code == OK)
    assert len(logins) == ACCOUNTS and set(logins.values()) == {1}, logins  # one login per account, group-wide
    assert len(sim.orders()) == ACCOUNTS


@pytest.mark.slow
async def test_three_processes_share_thirty_accounts_and_fire_each_once(tmp_path, redis_url) -> None:
    async with Simulator.default(accounts=ACCOUNTS, brokers=["gs", "shahr", "bbi"], settings=sim_settings()) as sim:
        members = await run_group(sim, tmp_path, redis_url, open_in_s=14)  # room for a slow warmup on a busy machine
        fired_once_each(sim)
        armed = {m.name: m.named("executor.armed") for m in members}
        plans = {name: sum(e["plans"] for e in events) for name, events in armed.items()}
        assert all(plans.values()) and sum(plans.values()) == ACCOUNTS, plans  # each process fired its share
        assert sum(m.named("report.day")[0]["accepted"] for m in members) == ACCOUNTS


@pytest.mark.slow
async def test_killing_one_process_before_the_arm_still_fires_every_account_once(tmp_path, redis_url) -> None:
    async with Simulator.default(accounts=ACCOUNTS, brokers=["gs", "shahr", "bbi"], settings=sim_settings()) as sim:
        # the takeover (kill after the warmup, lease ttl) must land before the late-arm cutoff (open - 3.5 s)
        members = await run_group(sim, tmp_path, redis_url, open_in_s=20, kill="m2")
        fired_once_each(sim)
        survivors = [m for m in members if m.name != "m2"]
        assert sum(m.named("report.day")[0]["accepted"] for m in survivors) == ACCOUNTS
        assert any(
            m.named("group.leases_changed") and len(m.named("day.warmed")) > 1 for m in survivors
        )  # took over, warmed
