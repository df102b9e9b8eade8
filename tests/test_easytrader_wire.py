"""Mofid (easytrader) wired through the daemon (issue 16 item 5): the full OAuth login and same-login at warmup, the
captcha after a failure, the order's draft made at the arm and journaled, one batchCreate of it at the open beside
Ephoenix and Exir accounts, 8706 retried spaced, a lost batch answer looked up and never resent, a resized order's
draft replaced at the final check, the executor firing on server-time's offset, a SIGKILL inside the window never
sending a draft twice, and a full morning through the runner in fake time far under the hourly cap."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from daemon.clock import SystemClock
from daemon.days import DayPlan
from daemon.executor import Executor
from daemon.firing import Journal, journaled_drafts, read_journal, summarize
from daemon.platforms.easytrader import EasytraderToken
from daemon.service import make_runner
from daemon.sim.easytrader import MARKET_CLOSED, easytrader_state
from daemon.simulator import Simulator
from daemon.testing import LoopClock, SimulatorSolver, daemon_clock
from daemon.warmup import warmup
from daemon.wiring import Wiring
from tests.simhelp import sim_config, write_sim_config

MOFID, GS, KH = "mofid", "gs", "khobregan"
HOT, COLD = "IRO1FOLD0001", "IRO1IKCO0001"
FAST = {"clock_source": "none", "final_check_s": 0.5, "answer_timeout_s": 2.0}
LOGIN_ROUTES = ["authorize", "login_page", "login", "authorize", "token", "same_login"]
MIXED = ((MOFID, "easytrader"), (GS, "ephoenix"), (KH, "exir"))

pytestmark = pytest.mark.sim(accounts=6, brokers=MIXED, real_time=True)


def make_config(sim: Simulator, tmp_path: Path, executor: dict | None = None, window_s: float = 5, **more):
    return sim_config(
        sim,
        state_dir=str(tmp_path / "state"),
        cache={"dir": str(tmp_path / "cache"), **more.pop("cache", {})},
        executor={**FAST, **(executor or {})},
        schedule={"window_s": window_s},
        **more,
    )


def mofid_accounts(config) -> list:
    return [a for a in config.accounts if a.broker == MOFID]


def routes(sim: Simulator, username: str | None = None, *names: str) -> list[str | None]:
    return [
        r.route
        for r in sorted(sim.request_log.records(broker=MOFID, username=username), key=lambda r: r.time_ns)
        if not names or r.route in names
    ]


def batches(sim: Simulator, username: str | None = None) -> list:
    return sorted(sim.request_log.records(route="batch", username=username), key=lambda r: r.time_ns)


async def fire(sim: Simulator, config, accounts, open_in_s: float = 2.5, armed=None, clock=None):
    """Warmup, then one open through the real executor; `armed(executor, services)` runs between the arm and the
    final check."""
    clock = clock or SystemClock()
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        warmed = await warmup(services.clients(accounts), services.clock)
        assert all(r.ok for r in warmed), [r.to_dict() for r in warmed]
        open_at = sim.now().astimezone(config.tz) + timedelta(seconds=open_in_s)
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
        budgets = {a.name: services.client(a).requests.summary() for a in accounts if a.broker == MOFID}
    return ex, budgets


# ---- login through the daemon --------------------------------------------------------------------------------


async def test_warmup_logs_in_with_oauth_and_same_login_then_a_captcha_after_a_wrong_password(sim, tmp_path):
    """The daemon's warmup: the whole OAuth chain (PKCE checked by the simulator) and same-login before any read; a
    wrong password is final (not retried), and the next login, now behind the BotDetect captcha, is solved."""
    config = make_config(sim, tmp_path, captcha={"spacing_s": 0})
    (account,) = mofid_accounts(config)[:1]
    wrong = account.model_copy(update={"password": "not-the-password", "password_env": None})
    async with Wiring(config, SystemClock(), solver=SimulatorSolver(sim)) as services:
        (failed,) = await warmup([services.client(wrong)], services.clock)
    assert not failed.ok and routes(sim, account.username).count("login") == 1  # wrong credentials: no retry
    assert "captcha" not in routes(sim, account.username)
    with capture_logs() as logs:
        async with Wiring(config, SystemClock(), solver=SimulatorSolver(sim)) as services:
            (warmed,) = await warmup([services.client(account)], services.clock)
    assert warmed.ok, warmed.to_dict()
    seen = routes(sim)  # the login page and captcha are anonymous: the broker's whole log
    second = seen[seen.index("login") + 1 :]
    # a new browser's page shows no captcha, the post answers "captcha required", the page again with the BotDetect
    # image, solved and posted with its fields; then the code, the token (PKCE) and same-login before any read
    assert second == [
        *["authorize", "login_page", "login"],
        *["authorize", "login_page", "captcha", "login", "authorize", "token", "same_login", "money"],
    ]
    assert not [e for e in logs if "not-the-password" in str(e)]


# ---- the open -------------------------------------------------------------------------------------------------


async def test_mofid_ephoenix_and_exir_fire_in_one_open_the_draft_made_at_arm_and_batched_once(sim, tmp_path):
    config = make_config(sim, tmp_path)
    accounts = list(config.accounts)
    armed_drafts: list[int] = []

    async def count_drafts(ex, services):
        armed_drafts.append(len(sim.request_log.records(route="draft")))

    ex, budgets = await fire(sim, config, accounts, armed=count_drafts)
    assert sorted(o.username for o in sim.orders()) == sorted(a.username for a in accounts)
    assert {sim.platform_of(o.broker) for o in sim.orders()} == {"easytrader", "ephoenix", "exir"}
    rows = summarize(read_journal(config.state_dir, ex.day))
    assert len(rows) == 6 and all(r.accepted and r.attempts == 1 for r in rows)
    mofid = mofid_accounts(config)
    assert armed_drafts == [len(mofid)]  # one draft per Mofid order, made at the arm, none since
    records = read_journal(config.state_dir, ex.day)
    drafts = journaled_drafts(records)
    for account in mofid:
        draft = drafts[(account.name, HOT, "buy")]
        intent = next(r for r in records if r["kind"] == "intent" and r["account"] == account.name)
        assert intent["prepared"] == draft.prepared  # journaled before the send, and the intent names it
        (batch,) = batches(sim, account.username)
        assert sim.request_log.records(route="new_order", username=account.username) == []
        assert easytrader_state(sim).drafts[draft.prepared].quantity == draft.volume == intent["volume"]
        assert budgets[account.name]["by_kind"]["batch"] == 1  # the executor charged what it sent
        # every request the simulator can tie to the account was counted by the daemon too (it also counts the
        # cold login's anonymous hops, which the simulator cannot tell apart)
        tied = len(sim.request_log.records(broker=MOFID, username=account.username))
        assert tied <= budgets[account.name]["requests"] <= tied + 4
    text = ex.journal.path.read_text()
    async with Wiring(config, SystemClock()) as services:
        for account in mofid:
            token = EasytraderToken.unpack((await services.cache.get_token(account.username, account.broker))["token"])
            assert token.access_token not in text


async def test_8706_before_the_open_is_retried_after_the_spacing_and_places_one_order(sim, tmp_path):
    """Sent 400 ms before the open (lead_ms), the batch is answered 8706; it is sent again after the spacing (no
    lookup needed: the answer said nothing was placed) and placed once."""
    config = make_config(sim, tmp_path, executor={"lead_ms": 400, "spacing_ms": 300, "max_attempts": 5})
    account = mofid_accounts(config)[0]
    ex, _ = await fire(sim, config, [account])
    sent = batches(sim, account.username)
    assert [r.error_code for r in sent][:1] == [MARKET_CLOSED] and sent[-1].error_code == 0
    gaps = [b.monotonic_ns - a.monotonic_ns for a, b in zip(sent, sent[1:])]
    assert all(gap >= 310_000_000 for gap in gaps), gaps  # the spacing and its margin (320 ms), less jitter
    assert len(sim.orders(username=account.username)) == 1
    (row,) = summarize(read_journal(config.state_dir, ex.day))
    assert row.accepted and row.attempts == len(sent) >= 2


async def test_a_lost_batch_answer_is_looked_up_in_today_s_orders_and_never_resent(sim, tmp_path):
    sim.add_fault("batch@mofid:drop,after")  # placed, then the connection closes unanswered
    config = make_config(sim, tmp_path)
    account = mofid_accounts(config)[0]
    ex, _ = await fire(sim, config, [account])
    assert len(batches(sim, account.username)) == 1
    assert len(sim.orders(username=account.username)) == 1
    records = read_journal(config.state_dir, ex.day)
    lookups = [r for r in records if r["kind"] == "lookup"]
    assert lookups and lookups[-1]["presence"] == "found" and lookups[-1]["reason"] == "lost answer"
    (row,) = summarize(records)
    assert row.accepted and row.attempts == 1 and "found at the broker" in row.result


async def test_the_final_check_replaces_the_draft_of_a_resized_order_and_batches_the_new_one(sim, tmp_path):
    config = make_config(sim, tmp_path)
    account = mofid_accounts(config)[0]
    held = sim.account(MOFID, account.username)

    async def halve(ex, services):
        held.remain, held.credit = 300_000_000, 0  # 300 M rial: about 53 500 at 5580, under mxqo (200 000)

    ex, budgets = await fire(sim, config, [account], armed=halve)
    records = read_journal(config.state_dir, ex.day)
    made = [r for r in records if r["kind"] == "draft"]
    assert len(made) == 2 and made[1]["replaces"] == made[0]["prepared"]
    (order,) = sim.orders(username=account.username)
    assert order.volume == made[1]["volume"] < made[0]["volume"]
    deletes = sim.request_log.records(route="draft_delete", username=account.username)
    assert [r.status for r in deletes] == [200] and made[0]["prepared"] not in easytrader_state(sim).drafts
    intent = next(r for r in records if r["kind"] == "intent")
    assert intent["prepared"] == made[1]["prepared"] and intent["volume"] == order.volume
    assert budgets[account.name]["by_kind"]["draft"] == 3  # two drafts and one delete


async def test_the_executor_fires_on_the_offset_read_from_server_time(sim, tmp_path):
    """The broker's clock 1.5 s behind ours: clock_source auto reads it from server-time (no Date probes spent
    against the cap), and the batch reaches the broker after its open, accepted at the first attempt (on our own
    clock it would come 1.5 s early: 8706)."""
    sim.set_skew(-1500)
    config = make_config(sim, tmp_path, executor={"clock_source": "auto"})
    account = mofid_accounts(config)[0]
    ex, budgets = await fire(sim, config, [account], open_in_s=4)
    clock = ex.clocks[MOFID]
    assert clock.estimate.source == "server-time" and abs(clock.estimate.offset_s + 1.5) < 0.05
    window = next(r for r in read_journal(config.state_dir, ex.day) if r["kind"] == "window")
    assert window["offset_source"] == "server-time"
    (batch,) = batches(sim, account.username)
    assert batch.error_code == 0
    assert "probe" not in budgets[account.name]["by_kind"] or budgets[account.name]["by_kind"]["probe"] <= 1
    assert len(sim.request_log.records(route="server_time", username=account.username)) == 3


# ---- the hourly cap --------------------------------------------------------------------------------------------


@pytest.mark.sim(accounts=2, brokers=((MOFID, "easytrader"), (GS, "ephoenix")), loop_time=True)
@pytest.mark.looptime
async def test_a_full_morning_through_the_runner_stays_far_under_the_hourly_cap(sim, tmp_path, capsys):
    """Warmup at 08:20, the schedule's refresh every 20 s until the arm at 08:44, the arm, the fire and the report,
    all in fake time through the runner: the account's requests are counted by the daemon and by the simulator's
    cap, and neither comes near 1500 (the count is printed)."""
    clock = daemon_clock(sim)
    assert isinstance(clock, LoopClock)
    config = make_config(sim, tmp_path, executor={"clock_source": "auto"}, window_s=10)
    tz = config.tz
    today = clock.now().astimezone(tz).date()
    at = lambda h, m: datetime(today.year, today.month, today.day, h, m, tzinfo=tz)  # noqa: E731
    plan = DayPlan(today, at(8, 20), at(8, 44), at(8, 45), at(8, 45) + timedelta(seconds=10))
    sim.set_open_at(plan.open)
    (account,) = mofid_accounts(config)
    runner = make_runner(config, clock, solver=SimulatorSolver(sim))
    refreshes = 0
    try:
        await clock.sleep_until(plan.warmup)
        await runner.warmup(plan)
        while (beat := clock.now() + timedelta(seconds=config.schedule.refresh_s)) < plan.arm:
            await clock.sleep_until(beat)
            await runner.refresh(plan)
            refreshes += 1
        await clock.sleep_until(plan.arm)
        await runner.arm(plan)
        with capture_logs() as logs:
            await runner.fire(plan)
            await runner.report(plan)
    finally:
        await runner.aclose()
    (spent,) = [e for e in logs if e["event"] == "report.requests" and e["account"] == account.name]
    at_broker = easytrader_state(sim).in_window(MOFID, account.username)
    print(
        f"\nMofid morning: {refreshes} refreshes, {spent['requests']} requests counted by the daemon "
        f"({spent['by_kind']}), {at_broker} in the simulator's hour, cap {spent['cap']}"
    )
    assert refreshes >= 70
    assert spent["cap"] == 1500 and spent["requests"] < 150 and at_broker < 150
    assert spent["by_kind"].get("batch") == 1
    assert all(r.accepted for r in summarize(read_journal(config.state_dir, today)))
    assert len(sim.orders(username=account.username)) == 1
    with capsys.disabled():
        print(f"Mofid morning: {spent['requests']} requests of 1500 ({refreshes} refreshes)")


# ---- a SIGKILL inside the window -------------------------------------------------------------------------------


async def test_a_fire_killed_when_the_broker_placed_the_first_batch_never_sends_a_draft_twice(sim, tmp_path, caplog):
    """Two Mofid accounts with two orders each; `fire --at T` is SIGKILLed the moment the simulator has placed the
    first batch (before its answer is written) and started again at once: the restart reuses the journaled drafts
    (no new one), finds what was placed in today's orders (that batch never sent again), sends the rest once, and
    `report` agrees with the broker's books."""
    import logging

    from tests.crashhelp import fire_killed_at_first_order

    caplog.set_level(logging.CRITICAL, "aiohttp.server")  # the killed daemon's half-read request is expected
    entries = [a for a in sim.config_snippet().data["accounts"] if a["broker"] == MOFID][:2]
    for entry in entries:
        entry["orders"] = [{**entry["orders"][0], "isin": isin, "share": 0.5} for isin in (HOT, COLD)]
    path = write_sim_config(
        sim,
        tmp_path / "config.yaml",
        state_dir=str(tmp_path / "state"),
        cache={"dir": str(tmp_path / "cache")},
        executor={"clock_source": "none", "final_check_s": 0.3, "answer_timeout_s": 1.0},
        schedule={"window_s": 8},
        accounts=entries,
    )
    killed = await fire_killed_at_first_order(
        sim, path, tmp_path / "fifos", route="batch", at_kill=lambda sim: len(sim.request_log.records(route="draft"))
    )
    killed.assert_each_order_booked_once(sim, (HOT, COLD))
    assert killed.seen_at_kill == 4 and len(sim.request_log.records(route="draft")) == 4  # the restart made none
    spent = [orjson.loads(line) for line in killed.restart.err + killed.restart.out if '"fire.requests"' in line]
    assert sorted(e["account"] for e in spent) == sorted(killed.names.values())  # `fire` says what each spent
    assert all(0 < e["requests"] <= e["cap"] for e in spent), spent
    sent = batches(sim)
    assert len(sent) == 4 and [r.error_code for r in sent] == [0] * 4  # one batch per order: none sent twice
