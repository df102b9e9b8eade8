"""Exir wired through the daemon (issue 14 item 4): warmup sizes on the broker's wages, the real executor fires
Exir and Ephoenix accounts in one open against the simulator, 1005 is spaced by sendOrderDelay, the signature
made before the wait is the one sent, the broker's clock offset moves the signature's second, the journal,
report, metrics and the sealed cache hold the Exir session without leaking it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from daemon import metrics
from daemon.clock import SystemClock
from daemon.executor import Executor
from daemon.firing import Journal, read_journal, summarize
from daemon.net import wait_until_monotonic
from daemon.platforms.exir import ExirToken
from daemon.sim.exir import BAD_SIGNATURE, TOO_SOON, exir_state
from daemon.simulator import Simulator
from daemon.sizing import Limits, buy_volume
from daemon.testing import SimulatorSolver, daemon_clock
from daemon.warmup import warmup
from daemon.wiring import Wiring
from tests.processes import run_daemon
from tests.simhelp import sim_config, write_sim_config

KH, AG, GS = "khobregan", "agah", "gs"
HOT, COLD = "IRO1FOLD0001", "IRO1IKCO0001"  # FOLD: band [5260, 5580], maxeq 200000
FAST = {"clock_source": "none", "final_check_s": 0.5, "answer_timeout_s": 2.0}
MIXED = ((KH, "exir"), (GS, "ephoenix"), (AG, "exir"))

pytestmark = pytest.mark.sim(accounts=6, brokers=MIXED, real_time=True)


def exir_accounts(config) -> list:
    return [a for a in config.accounts if a.broker in (KH, AG)]


def make_config(sim: Simulator, tmp_path: Path, executor: dict | None = None, window_s: float = 5, **more):
    return sim_config(
        sim,
        state_dir=str(tmp_path / "state"),
        cache={"dir": str(tmp_path / "cache"), **more.pop("cache", {})},
        executor={**FAST, **(executor or {})},
        schedule={"window_s": window_s},
        **more,
    )


async def fire(
    sim: Simulator,
    config,
    accounts,
    open_at: datetime | None = None,
    open_in_s: float = 2.5,
    warm=None,
    armed=None,
    clock=None,
):
    """Warmup, then one open through the real executor; `warm(services)` runs after the warmup, `armed(executor,
    services)` between the arm and the final check. `clock`: the host's by default, `daemon_clock(sim)` in fake time."""
    async with Wiring(config, clock or SystemClock(), solver=SimulatorSolver(sim)) as services:
        warmed = await warmup(services.clients(accounts), services.clock)
        assert all(r.ok for r in warmed), [r.to_dict() for r in warmed]
        if warm is not None:
            warm(services)
        open_at = open_at or sim.now().astimezone(config.tz) + timedelta(seconds=open_in_s)
        sim.set_open_at(open_at)
        day = open_at.date()
        ex = Executor.from_wiring(services, Journal(config.state_dir, day), day=day)
        try:
            await ex.arm(accounts, open_at)
            if armed is not None:
                await armed(ex, services)
            await ex.run_after_arm()
        finally:
            await ex.aclose()
    return ex, warmed


def new_orders(sim: Simulator, username: str | None = None) -> list:
    return sorted(sim.request_log.records(route="new_order", username=username), key=lambda r: r.time_ns)


# ---- warmup --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wages_known, expected_fee", [(True, "0.004"), (False, "0.005")])
async def test_an_exir_buy_is_sized_on_the_broker_s_wages_and_the_cross_check_agrees(
    sim, tmp_path, wages_known, expected_fee
):
    """The market charges 0.4 %, the config says 0.3712 %: sized on the config's rate an Exir buy would overspend
    and be refused; on the wages (or the 0.005 fallback when they name no rate) it fits and is accepted."""
    sim.state.market.rules.buy_fee = Decimal("0.004")
    exir_state(sim).settings.wages_known = wages_known
    config = make_config(sim, tmp_path)
    accounts = exir_accounts(config)[:2]
    for account in accounts:
        held = sim.account(account.broker, account.username)
        held.remain, held.credit = 6_000_000, 0
    limits = Limits(1, 200_000, 5260, 5580)
    with capture_logs() as logs:
        ex, warmed = await fire(sim, config, accounts)
    expected = buy_volume(6_000_000, 5580, Decimal(expected_fee), limits)
    assert expected < buy_volume(6_000_000, 5580, config.fees.buy, limits)  # the config's rate would oversize
    assert [o.volume for r in warmed for o in r.orders] == [expected, expected]
    assert not [e for e in logs if e["event"] == "crosscheck.disagree"]
    assert any(e["event"] == "fees.fallback" for e in logs) is not wages_known
    assert len(sim.request_log.records(route="wages")) >= 2  # the rate came from the broker, per account
    assert sorted((o.username, o.volume) for o in sim.orders()) == sorted((a.username, expected) for a in accounts)
    assert all(r.accepted for r in summarize(read_journal(config.state_dir, ex.day)))


# ---- the open -------------------------------------------------------------------------------------------------


async def test_exir_and_ephoenix_accounts_fire_in_one_open_each_accepted_once(sim, tmp_path):
    config = make_config(sim, tmp_path)
    registry = metrics.enable(SystemClock())
    try:
        ex, _ = await fire(sim, config, list(config.accounts))
    finally:
        metrics.disable()
    assert sorted(o.username for o in sim.orders()) == sorted(a.username for a in config.accounts)
    assert {sim.platform_of(o.broker) for o in sim.orders()} == {"exir", "ephoenix"}
    records = read_journal(config.state_dir, ex.day)
    rows = summarize(records)
    assert len(rows) == 6 and all(r.accepted and r.attempts == 1 for r in rows)
    exir_rows = [r for r in rows if r.broker in (KH, AG)]
    booked = {o.username: o.serial_number for o in sim.orders()}
    by_name = {a.name: a.username for a in config.accounts}
    assert all(r.serial_number == 30_000_000 + booked[by_name[r.account]] for r in exir_rows)  # the answer's id
    sends = [r for r in records if r["kind"] == "send"]
    assert len(sends) == len(new_orders(sim)) == 6
    # nothing of an Exir session in the journal: no seed, no cookie value
    text = ex.journal.path.read_text()
    async with Wiring(config, SystemClock()) as services:
        for account in exir_accounts(config):
            token = ExirToken.unpack((await services.cache.get_token(account.username, account.broker))["token"])
            assert token.nt not in text and all(value not in text for _, value, _ in token.cookies)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for m in registry.registry.collect() for s in m.samples
    }
    assert samples[("opening_bell_orders_total", (("code", "0"), ("result", "accepted")))] == 6
    assert ("opening_bell_clock_offset_seconds", (("broker", KH),)) in samples
    exir_name = exir_accounts(config)[0].name
    assert ("opening_bell_fire_first_send_seconds", (("account", exir_name), ("isin", HOT))) in samples


async def test_an_exir_account_s_orders_are_spaced_by_send_order_delay_not_the_shorter_executor_spacing(sim, tmp_path):
    """Two orders of one Exir account, the executor's spacing 100 ms, the login's sendOrderDelay 400 ms: the second
    order leaves 400 ms (and the margin) after the first, so the broker answers neither with 1005."""
    entry = next(a for a in sim.config_snippet().data["accounts"] if a["broker"] == KH)
    entry["orders"] = [{**entry["orders"][0], "isin": isin} for isin in (HOT, COLD)]
    config = make_config(sim, tmp_path, executor={"spacing_ms": 100, "spacing_margin_ms": 20}, accounts=[entry])
    (account,) = config.accounts
    ex, _ = await fire(sim, config, [account])
    mine = new_orders(sim, account.username)
    assert [r.error_code for r in mine] == [0, 0]
    assert mine[1].time_ns - mine[0].time_ns >= 400_000_000
    assert {p.spacing_ns for p in ex.plans} == {420_000_000}


@pytest.mark.sim(accounts=6, brokers=MIXED, loop_time=True)
@pytest.mark.looptime
async def test_1005_is_retried_after_send_order_delay(sim, tmp_path):
    """Another client of the account sent an order 150 ms before the open (the market refused it as closed, and
    the broker counts it): the executor's first send meets 1005 and is sent again no sooner than sendOrderDelay
    after it, though the executor's own spacing is shorter; one order is booked. In fake time: on a loaded
    machine the other client's order could otherwise reach the broker after the open."""
    config = make_config(sim, tmp_path, executor={"spacing_ms": 100, "spacing_margin_ms": 20})
    account = exir_accounts(config)[0]
    open_at = sim.now().astimezone(config.tz) + timedelta(seconds=3)

    other: list[asyncio.Future] = []

    async def other_client(ex: Executor, services) -> None:
        before_open = ex.plans[0].open_monotonic_ns - 150_000_000

        async def send() -> None:
            await wait_until_monotonic(before_open, services.clock)
            await services.client(account).session.new_order(HOT, "buy", 5580, 1000)

        other.append(asyncio.ensure_future(send()))

    ex, _ = await fire(sim, config, [account], open_at=open_at, armed=other_client, clock=daemon_clock(sim))
    await other[0]
    codes = [(r.error_code, r.time_ns) for r in new_orders(sim, account.username)]
    assert [c for c, _ in codes] == [1017, TOO_SOON, 0]
    assert codes[2][1] - codes[1][1] >= 400_000_000
    (row,) = summarize(read_journal(config.state_dir, ex.day))
    assert row.accepted and row.attempts == 2
    assert len(sim.orders(username=account.username)) == 1


class RecordingSigned:
    """A plan's SignedRequest that notes when each second's bytes were asked for (the monotonic instant)."""

    def __init__(self, inner, clock) -> None:
        self.inner, self.clock, self.asked = inner, clock, []

    def at(self, utc_second: int) -> bytes:
        self.asked.append((self.clock.monotonic_ns(), utc_second))
        return self.inner.at(utc_second)


def recording_requests(accounts, recorders: dict[str, RecordingSigned]):
    """A `warm` step: each account's codec hands the executor recording requests (the final check's are the ones
    sent), kept in `recorders` by account."""

    def record(services) -> None:
        for account in accounts:
            codec = services.client(account).codec
            build = codec.order_request

            def recording(*args, build=build, name=account.name):
                recorders[name] = RecordingSigned(build(*args), services.clock)
                return recorders[name]

            codec.order_request = recording

    return record


async def test_the_signature_made_before_the_wait_is_the_one_sent_and_verified_with_no_skew_allowed(sim, tmp_path):
    exir_state(sim).settings.signature_skew_s = 0
    config = make_config(sim, tmp_path, executor={"lead_ms": 0})
    accounts = exir_accounts(config)
    whole = sim.now().replace(microsecond=0) + timedelta(seconds=4)
    open_at = (whole + timedelta(milliseconds=5)).astimezone(config.tz)  # just after a second's edge
    recorders: dict[str, RecordingSigned] = {}
    ex, _ = await fire(sim, config, accounts, open_at=open_at, warm=recording_requests(accounts, recorders))
    assert sorted(o.username for o in sim.orders()) == sorted(a.username for a in accounts)
    assert all(r.error_code == 0 for r in new_orders(sim))
    sends = {r["account"]: r for r in read_journal(config.state_dir, ex.day) if r["kind"] == "send"}
    for plan in ex.plans:
        asked = recorders[plan.account].asked
        sent_at = sends[plan.account]["monotonic_ns"]
        assert asked and asked[0][0] < plan.send_at_ns <= sent_at  # made before the wait
        assert {second for _, second in asked} == {int(whole.timestamp())}  # the open's second, never rebuilt


async def test_a_wake_late_across_a_second_s_edge_sends_that_second_s_signature(sim, tmp_path):
    """The open 3 ms before a second's edge, the loop held busy from 10 ms before the send to 10 ms past it: the
    executor wakes in the next second, and the bytes it sends are signed for that second (made once, after the
    wait), so the broker, allowing no skew, accepts them."""
    exir_state(sim).settings.signature_skew_s = 0
    config = make_config(sim, tmp_path, executor={"lead_ms": 0})
    accounts = exir_accounts(config)
    edge = sim.now().replace(microsecond=0) + timedelta(seconds=4)
    open_at = (edge - timedelta(milliseconds=3)).astimezone(config.tz)
    recorders: dict[str, RecordingSigned] = {}

    async def hold_the_loop_across_the_edge(ex: Executor, services) -> None:
        send_at = min(p.send_at_ns for p in ex.plans)
        mono = services.clock.monotonic_ns

        def busy() -> None:  # a callback that keeps the loop past the instant: the wake is late, by construction
            while mono() < send_at + 10_000_000:
                pass

        asyncio.get_running_loop().call_later((send_at - 10_000_000 - mono()) / 1e9, busy)

    ex, _ = await fire(
        sim,
        config,
        accounts,
        open_at=open_at,
        warm=recording_requests(accounts, recorders),
        armed=hold_the_loop_across_the_edge,
    )
    assert all(r.error_code == 0 for r in new_orders(sim)), [r.error_code for r in new_orders(sim)]
    assert sorted(o.username for o in sim.orders()) == sorted(a.username for a in accounts)
    sends = {r["account"]: r for r in read_journal(config.state_dir, ex.day) if r["kind"] == "send"}
    for plan in ex.plans:
        assert sends[plan.account]["monotonic_ns"] >= plan.send_at_ns + 10_000_000  # woken late
        seconds = [second for _, second in recorders[plan.account].asked]
        assert seconds[0] == int(edge.timestamp()) - 1 and seconds[-1] == int(edge.timestamp())  # re-signed once
        assert seconds.count(int(edge.timestamp())) == 1


@pytest.mark.slow
async def test_the_broker_clock_offset_moves_the_signature_s_second(tmp_path, monkeypatch):
    """The simulator's clock runs 2.5 s ahead and, from just before the first send, allows no skew at all: signed on
    our clock the order is refused (9003, terminal); with the offset measured (`date`) the signature is for the
    broker's second and accepted. (The slow path signs on our clock: the simulator tolerates 5 s until the final
    check is done.)"""
    from tests.simhelp import running_simulator, sim_settings

    settings = None

    async def strict_before_the_send(ex: Executor, services) -> None:
        async def strict() -> None:
            await wait_until_monotonic(min(p.send_at_ns for p in ex.plans) - 100_000_000, services.clock)
            settings.signature_skew_s = 0

        pending.append(asyncio.ensure_future(strict()))

    pending: list[asyncio.Future] = []
    async with running_simulator(accounts=2, brokers=[(KH, "exir")], settings=sim_settings(skew_ms=2500)) as sim:
        settings = exir_state(sim).settings
        settings.signature_skew_s = 5
        unmeasured = make_config(sim, tmp_path / "a")
        first, second = unmeasured.accounts
        ex, _ = await fire(sim, unmeasured, [first], armed=strict_before_the_send)
        assert settings.signature_skew_s == 0
        (row,) = summarize(read_journal(unmeasured.state_dir, ex.day))
        assert not row.accepted and row.code == BAD_SIGNATURE
        settings.signature_skew_s = 5
        sim.set_open_at(None)
        measured = make_config(sim, tmp_path / "b", executor={"clock_source": "date"})
        ex, _ = await fire(sim, measured, [measured.accounts[1]], open_in_s=8, armed=strict_before_the_send)
        assert settings.signature_skew_s == 0
        assert abs(ex.clocks[KH].estimate.offset_s - 2.5) < 0.05
        (row,) = summarize(read_journal(measured.state_dir, ex.day))
        assert row.accepted, row
        assert [o.username for o in sim.orders()] == [second.username]


# ---- the cache and report commands ----------------------------------------------------------------------------


async def test_the_exir_session_is_a_sealed_token_entry_that_cache_commands_never_leak(sim, tmp_path, monkeypatch):
    key = run_daemon("cache", "keygen").stdout.strip()
    monkeypatch.setenv("OPENING_BELL_TOKEN_KEY", key)
    path = write_sim_config(
        sim,
        tmp_path / "config.yaml",
        state_dir=str(tmp_path / "state"),
        cache={"dir": str(tmp_path / "cache"), "token_key_env": "OPENING_BELL_TOKEN_KEY"},
        executor=FAST,
        schedule={"window_s": 5},
    )
    from daemon.config import load_config

    config = load_config(path)
    account = exir_accounts(config)[0]
    await fire(sim, config, [account])
    async with Wiring(config, SystemClock()) as services:
        token = ExirToken.unpack((await services.cache.get_token(account.username, account.broker))["token"])
    secrets = [token.nt, *(value for _, value, _ in token.cookies)]
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert not [s for s in secrets if s.encode() in on_disk]  # sealed: no seed nor cookie in the file
    env = {"OPENING_BELL_TOKEN_KEY": key}
    listing = run_daemon("cache", "list", "tokens", "--config", str(path), "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    keys = [entry["key"] for entry in orjson.loads(listing.stdout)]
    (entry_key,) = [k for k in keys if account.username in k]
    for extra in ((), ("--json",)):
        shown = run_daemon("cache", "show", "tokens", entry_key, "--config", str(path), *extra, env=env)
        assert shown.returncode == 0, shown.stderr
        assert not [s for s in secrets if s in shown.stdout + shown.stderr]
    revealed = run_daemon("cache", "show", "tokens", entry_key, "--config", str(path), "--reveal", "--json", env=env)
    assert token.nt in revealed.stdout  # --reveal is the one way to see it (decrypted)
    report = run_daemon("report", "--config", str(path), "--json", env=env)
    assert report.returncode == 0, report.stderr
    (row,) = orjson.loads(report.stdout)["orders"]
    assert (row["account"], row["result"]) == (account.name, "accepted")
    assert not [s for s in secrets if s in report.stdout + report.stderr]


# ---- a SIGKILL inside the window -------------------------------------------------------------------------------


async def test_a_fire_killed_when_the_broker_booked_its_first_exir_order_is_reconciled_from_orderbook_report(
    sim, tmp_path, caplog
):
    """Two Exir accounts with two orders each; `fire --at T` is SIGKILLed the moment the simulator has booked the
    first of them (before its answer is written), and started again at once: the restart finds what was booked in
    orderbookReport (no second send), sends the rest once, and `report` agrees with the broker's books."""
    import logging

    from tests.crashhelp import fire_killed_at_first_order

    caplog.set_level(logging.CRITICAL, "aiohttp.server")  # the killed daemon's half-read request is expected
    entries = [a for a in sim.config_snippet().data["accounts"] if a["broker"] in (KH, AG)][:2]
    for entry in entries:
        entry["orders"] = [{**entry["orders"][0], "isin": isin} for isin in (HOT, COLD)]
    path = write_sim_config(
        sim,
        tmp_path / "config.yaml",
        state_dir=str(tmp_path / "state"),
        cache={"dir": str(tmp_path / "cache")},
        executor={"clock_source": "none", "final_check_s": 0.3, "answer_timeout_s": 1.0},
        schedule={"window_s": 8},
        accounts=entries,
    )
    killed = await fire_killed_at_first_order(sim, path, tmp_path / "fifos")
    killed.assert_each_order_booked_once(sim, (HOT, COLD))
    # nothing booked was sent again: a refused send is only 1005 (the restart cannot know when the killed
    # process last sent, so its first send may come inside sendOrderDelay; it is resent after it)
    assert [r.error_code for r in new_orders(sim) if r.error_code != 0] in ([], [TOO_SOON], [TOO_SOON] * 2)
