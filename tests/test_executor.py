"""The open against the simulator on loopback: arm, final check, fire, journal."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import yaml

from daemon.executor import Executor
from daemon.firing import Journal, read_journal, summarize
from daemon.net import WireConnection
from daemon.simulator import PASSWORD_ENV, Simulator
from daemon.testing import SimulatorSolver
from daemon.warmup import warmup
from daemon.wiring import Wiring
from tests.processes import REPO_ROOT
from tests.simhelp import daemon_clock, needs_ocr, sim_config, sim_config_data, sim_settings, write_sim_config

pytestmark = [pytest.mark.sim(accounts=20, brokers=("gs", "shahr", "bbi"), loop_time=True), pytest.mark.looptime]

# a child `python -m daemon` lives in real time, so its simulator does too
CHILD = {"accounts": 20, "brokers": ("gs", "shahr", "bbi"), "real_time": True}

FAST = {"clock_source": "none", "final_check_s": 0.5, "answer_timeout_s": 2.0}


async def armed(sim: Simulator, tmp_path: Path, open_in_s: float = 2.5, accounts: int | None = None, **executor):
    config = sim_config(sim, state_dir=str(tmp_path / "state"), executor={**FAST, **executor}, schedule={"window_s": 5})
    services = Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim))
    chosen = config.accounts[:accounts] if accounts else config.accounts
    results = await warmup(services.clients(chosen), services.clock)
    assert all(r.ok for r in results)
    open_at = sim.now().astimezone(config.tz) + timedelta(seconds=open_in_s)
    sim.set_open_at(open_at)
    day = open_at.date()
    ex = Executor.from_wiring(services, Journal(config.state_dir, day), day=day)
    await ex.arm(chosen, open_at)
    return ex, services, chosen, config


async def test_every_account_gets_exactly_one_accepted_order(sim, tmp_path):
    ex, services, accounts, config = await armed(sim, tmp_path)
    async with services:
        try:
            await ex.run_after_arm()
        finally:
            await ex.aclose()
    orders = sim.orders()
    assert sorted(o.username for o in orders) == sorted(a.username for a in accounts)
    records = read_journal(config.state_dir, ex.day)
    rows = summarize(records)
    assert len(rows) == 20 and all(r.accepted for r in rows)
    new_orders = sim.request_log.records(route="new_order")
    assert not [r for r in new_orders if r.error_code == 1018], "the daemon caused a 1018 itself"
    # the journal and the simulator's log agree one to one
    sends = [r for r in records if r["kind"] == "send"]
    assert len(sends) == len(new_orders)
    by_user = {a.name: a.username for a in accounts}
    assert sorted(by_user[s["account"]] for s in sends) == sorted(r.username for r in new_orders)
    answers = [r for r in records if r["kind"] == "answer"]
    assert sorted(a["code"] or 0 for a in answers) == sorted(r.error_code or 0 for r in new_orders)
    assert all("sim-pass" not in orjson.dumps(r).decode() for r in records)
    token = (await services.cache.get_token(accounts[0].username, accounts[0].broker))["token"]
    assert token not in ex.journal.path.read_text()


async def test_orders_accepted_at_their_first_answer_cost_no_task_and_no_timer_each(sim, tmp_path, monkeypatch):
    """After the first-send loop the answers are read in the connections' callbacks under one shared timer: no
    follower task and no per-read timeout for an order its first answer ends; a 1017 still gets its follower."""
    ex, services, accounts, config = await armed(sim, tmp_path)
    loop = asyncio.get_running_loop()
    started: list[str] = []
    timers: list[str] = []
    call_at = loop.call_at

    def task_factory(loop, coro, **kwargs):
        started.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    def counting_call_at(when, callback, *args, **kwargs):
        timers.append(getattr(callback, "__qualname__", repr(callback)))
        return call_at(when, callback, *args, **kwargs)

    async with services:
        try:
            await ex.final_check()
            loop.set_task_factory(task_factory)
            monkeypatch.setattr(loop, "call_at", counting_call_at)
            await ex.fire()
        finally:
            loop.set_task_factory(None)
            monkeypatch.undo()
            await ex.aclose()
    assert len(sim.orders()) == 20 and all(r.accepted for r in ex.outcome())
    assert "Executor._follow" not in started and started.count("Journal._write_behind") <= 20
    assert timers.count("AnswerWatch._expire") == 1
    assert not [t for t in timers if "Timeout" in t]  # no asyncio.timeout per answer read


async def test_sends_before_the_open_are_retried_after_1017_without_self_caused_1018(sim, tmp_path):
    ex, services, accounts, config = await armed(sim, tmp_path, accounts=3, lead_ms=450)
    async with services:
        try:
            await ex.run_after_arm()
        finally:
            await ex.aclose()
    codes = [r.error_code for r in sorted(sim.request_log.records(route="new_order"), key=lambda r: r.time_ns)]
    assert codes.count(1017) >= 3 and 1018 not in codes
    assert len(sim.orders()) == 3
    for account in accounts:
        mine = sorted(r.time_ns for r in sim.request_log.records(route="new_order", username=account.username))
        assert all(b - a >= 300_000_000 for a, b in zip(mine, mine[1:]))  # the broker's spacing, as it saw it


async def test_an_unreachable_broker_does_not_delay_the_others(sim, tmp_path):
    ex, services, accounts, config = await armed(sim, tmp_path)
    closed_port = _closed_port()
    dead = [p for p in ex.plans if p.broker == "gs"]
    for plan in dead:  # the gs trading host stops accepting connections after the arm
        plan.conn.close()
        plan.conn = WireConnection(f"http://127.0.0.1:{closed_port}", daemon_clock(sim))
    async with services:
        try:
            await ex.final_check()
            await ex.fire()
        finally:
            await ex.aclose()
    records = read_journal(config.state_dir, ex.day)
    first_sends = {r["account"]: r for r in records if r["kind"] == "send" and r["attempt"] == 1}
    alive = [p for p in ex.plans if p.broker != "gs"]
    assert {p.account for p in alive} <= set(first_sends)
    late_ms = [(first_sends[p.account]["monotonic_ns"] - p.send_at_ns) / 1e6 for p in alive]
    assert max(late_ms) < 50, late_ms  # all written in the first loop, not after the dead ones' retries
    assert {o.broker for o in sim.orders()} == {"shahr", "bbi"}
    outcomes = {r["account"]: r for r in records if r["kind"] == "outcome"}
    assert all(not outcomes[p.account]["accepted"] for p in dead)


async def test_nothing_but_new_order_reaches_the_broker_after_the_final_check(sim, tmp_path):
    ex, services, accounts, config = await armed(sim, tmp_path, accounts=6)
    async with services:
        try:
            await ex.final_check()
            checked_ns = daemon_clock(sim).monotonic_ns()
            await ex.fire()
        finally:
            await ex.aclose()
    later = [r for r in sim.request_log.records() if r.monotonic_ns > checked_ns]
    assert later and {r.route for r in later} == {"new_order"}


async def test_final_check_replans_from_fresh_buying_power(sim, tmp_path):
    ex, services, accounts, config = await armed(sim, tmp_path, accounts=2)
    poor = sim.account(accounts[0].broker, accounts[0].username)
    poor.remain, poor.credit = 10, 0  # the balance was spent elsewhere after warmup
    async with services:
        try:
            await ex.run_after_arm()
        finally:
            await ex.aclose()
    rows = {r.account: r for r in summarize(read_journal(config.state_dir, ex.day))}
    assert rows[accounts[0].name].state == "not sent"
    assert rows[accounts[0].name].result == "not sent: volume not positive at the final check"
    assert rows[accounts[1].name].accepted
    assert not sim.request_log.records(route="new_order", username=accounts[0].username)


async def test_final_check_resizes_only_the_orders_whose_money_changed(sim, tmp_path):
    ex, services, accounts, config = await armed(sim, tmp_path, accounts=3)
    sized = {p.account: p.volume for p in ex.plans}
    spent = sim.account(accounts[0].broker, accounts[0].username)
    spent.remain, spent.credit = 100_000_000, 0  # part of the balance was spent after warmup
    before = len(sim.request_log)
    async with services:
        try:
            await ex.final_check()
            during = sim.request_log.records()[before:]
            await ex.fire()
        finally:
            await ex.aclose()
    volumes = {p.account: p.volume for p in ex.plans}
    assert 0 < volumes[accounts[0].name] < sized[accounts[0].name]  # resized from the fresh buying power
    assert all(volumes[a.name] == sized[a.name] for a in accounts[1:])  # the same money: the same order
    assert [r.route for r in during].count("tradingbook") >= 3  # every account's buying power read afresh
    assert [r.route for r in during].count("instruments") <= 1  # market data only for the resized one
    assert {o.username: o.volume for o in sim.orders()} == {a.username: volumes[a.name] for a in accounts}


async def test_a_restart_inside_the_window_never_sends_an_accepted_order_again(sim, tmp_path):
    ex, services, accounts, config = await armed(sim, tmp_path, accounts=3)
    async with services:
        try:
            await ex.run_after_arm()
        finally:
            await ex.aclose()
    assert len(sim.orders()) == 3
    sent_before = len(sim.request_log.records(route="new_order"))
    # a second run the same day (a restart) with one more account that has not fired yet
    config2 = sim_config(sim, state_dir=config.state_dir.as_posix(), executor=FAST, schedule={"window_s": 5})
    async with Wiring(config2, daemon_clock(sim), solver=SimulatorSolver(sim)) as services2:
        open_at = sim.now().astimezone(config.tz) + timedelta(seconds=1)
        ex2 = Executor.from_wiring(services2, Journal(config2.state_dir, ex.day), day=ex.day)
        try:
            await ex2.run_open(config2.accounts[:4], open_at)
        finally:
            await ex2.aclose()
    new = sim.request_log.records(route="new_order")[sent_before:]
    assert {r.username for r in new} == {config2.accounts[3].username}
    assert len(sim.orders()) == 4


@pytest.mark.slow
@pytest.mark.looptime(False)  # the Date header's ticks are measured in real time: that is the point
@pytest.mark.parametrize("skew_ms", [2000, -2000])
async def test_a_skewed_broker_clock_is_corrected(monkeypatch, tmp_path, skew_ms):
    simulator = Simulator.default(accounts=2, brokers=["gs"], settings=sim_settings(skew_ms=skew_ms))
    simulator.add_fault("tradingbook:jitter_ms=30")
    monkeypatch.setenv(PASSWORD_ENV, "sim-pass")
    async with simulator as sim:
        ex, services, accounts, config = await armed(sim, tmp_path, open_in_s=8, clock_source="date")
        async with services:
            try:
                await ex.run_after_arm()
            finally:
                await ex.aclose()
    clock = ex.clocks["gs"]
    error_ms = abs(clock.estimate.offset_s * 1000 - skew_ms)
    print(f"skew {skew_ms} ms: measured {clock.estimate.offset_s * 1000:.2f} ms, error {error_ms:.2f} ms")
    assert error_ms < 25  # target 10 ms; the margin absorbs a loaded CI machine
    assert len(sim.orders()) == 2


@needs_ocr
@pytest.mark.looptime(False)
@pytest.mark.sim(**CHILD)
async def test_fire_dry_run_sends_nothing(sim, tmp_path):
    path = write_sim_config(sim, tmp_path / "config.yaml", state_dir=str(tmp_path / "state"), executor=FAST)
    at = (sim.now().astimezone(sim_config(sim).tz) + timedelta(seconds=30)).strftime("%H:%M:%S.%f")[:-3]
    out, err, code = await _daemon(
        "fire", "--config", str(path), "--at", at, "--dry-run", "--json", "--accounts", "sim001-gs", "sim002-shahr"
    )
    assert code == 0, err
    data = orjson.loads(out)
    assert data["sent"] == 0 and sorted(p["account"] for p in data["plans"]) == ["sim001-gs", "sim002-shahr"]
    assert not sim.request_log.records(route="new_order")


@needs_ocr
@pytest.mark.looptime(False)
@pytest.mark.sim(**CHILD)
async def test_fire_now_and_report_commands(sim, tmp_path):
    path = write_sim_config(
        sim, tmp_path / "config.yaml", state_dir=str(tmp_path / "state"), executor=FAST, schedule={"window_s": 5}
    )
    out, err, code = await _daemon("fire", "--config", str(path), "--now", "--accounts", "sim001-gs", "sim002-shahr")
    assert code == 0, err
    assert "2 accepted of 2 orders." in out
    assert len(sim.orders()) == 2
    out, err, code = await _daemon("report", "--config", str(path), "--json")
    assert code == 0, err
    rows = orjson.loads(out)["orders"]
    assert [r["result"] for r in rows] == ["accepted", "accepted"]
    out, err, code = await _daemon("report", "--config", str(path), "--date", "2001-01-01")
    assert code == 2 and "no journal" in err


async def _daemon(*args: str) -> tuple[str, str, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), PASSWORD_ENV: "sim-pass"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return out.decode(), err.decode(), proc.returncode


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_ocr
@pytest.mark.looptime(False)
@pytest.mark.sim(**CHILD)
async def test_fire_dry_run_lists_every_account_the_unready_with_their_reason(sim, tmp_path, monkeypatch):
    data = sim_config_data(sim, state_dir=str(tmp_path / "state"), executor=FAST)
    data["accounts"] = data["accounts"][:2]
    data["accounts"][1] = {**data["accounts"][1], "password_env": "WRONG_PASSWORD"}
    monkeypatch.setenv("WRONG_PASSWORD", "not-the-password")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    out, err, code = await _daemon("fire", "--config", str(path), "--now", "--dry-run", "--json")
    assert code == 1, err
    plans = {p["account"]: p for p in orjson.loads(out)["plans"]}
    assert plans[data["accounts"][0]["name"]]["status"] == "ready"
    unready = plans[data["accounts"][1]["name"]]
    assert unready["status"].startswith("not ready: ") and "password" in unready["status"]
    assert "not-the-password" not in out + err
    assert not sim.orders() and not sim.request_log.records(route="new_order")


async def test_real_time_is_held_from_the_final_check_to_the_end_of_the_first_send_loop(sim, tmp_path, monkeypatch):
    """In fake time, with the OS calls recorded: FIFO and mlockall before the final check, the first sends inside,
    the old policy before any answer is read, munlockall (milliseconds) only once the window closed."""
    from daemon import executor as executor_module
    from daemon.net import OsCalls, RealtimeWindow

    ex, services, accounts, config = await armed(sim, tmp_path, accounts=4)
    events: list[str] = []
    calls = OsCalls(
        get_scheduler=lambda: os.SCHED_OTHER,
        get_priority=lambda: 0,
        set_scheduler=lambda policy, priority: events.append("fifo" if policy & os.SCHED_FIFO else "normal"),
        lock_memory=lambda: events.append("lock"),
        unlock_memory=lambda: events.append("unlock"),
    )
    ex.realtime = RealtimeWindow("on", 20, daemon_clock(sim), calls)
    check, fire_all, answer_of = ex.final_check, executor_module.fire_all, ex._answer_of

    async def final_check():
        events.append("check")
        await check()

    def sends(batch):
        events.append("send")
        return fire_all(batch)

    def answer(*args, **kwargs):
        events.append("follow")
        return answer_of(*args, **kwargs)

    monkeypatch.setattr(ex, "final_check", final_check)
    monkeypatch.setattr(executor_module, "fire_all", sends)
    monkeypatch.setattr(ex, "_answer_of", answer)
    async with services:
        try:
            await ex.run_after_arm()
        finally:
            await ex.aclose()
    assert all(r.accepted for r in ex.outcome())
    first_follow = events.index("follow")
    assert events[:3] == ["fifo", "lock", "check"]
    assert "send" in events[3:first_follow] and events[first_follow - 1] == "normal"
    assert events.count("fifo") == 1 and events.count("normal") == 1 and "send" not in events[first_follow:]
    assert events.count("unlock") == 1 and events.index("unlock") > events.index("follow")
