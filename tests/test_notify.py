"""Notifications (daemon/notify) through apprise to a real webhook receiver on loopback: what each event says,
nothing sent from the arm to the window's end, bounded retries logged once, secrets never in logs or output."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from daemon.clock import Clock, SystemClock
from daemon.config import load_config, validate_config
from daemon.errors import ConfigError
from daemon.firing import read_journal, summarize
from daemon.firing._report import ReportRow
from daemon.logs import scrub
from daemon.notify import Notifications, Words
from daemon.scheduler import ClockAlarm, DayScheduler
from daemon.service import make_runner
from tests.processes import daemon_env
from tests.simhelp import SimulatorSolver, daemon_clock, plan_in, sim_config_data

pytest.importorskip("apprise")
TOKEN = "tok-3f9a71c2e8d54b06"  # stands in for a bot token in the URL: it must never reach a log or the output


class Receiver:
    """A JSON webhook: each POST's arrival time (on the test's clock), path and body; `fail` answers 500."""

    def __init__(self, clock: Clock, fail: bool = False) -> None:
        self.clock = clock
        self.fail = fail
        self.got: list[tuple[datetime, str, dict[str, Any]]] = []
        self.port = 0

    @property
    def env(self) -> dict[str, str]:
        """What `hook_url()` needs in the environment to reach this receiver."""
        return {"NOTIFY_PORT": str(self.port), "NOTIFY_TOKEN": TOKEN}

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((self.clock.now(), request.path, await request.json()))
        return web.Response(status=500) if self.fail else web.json_response({})

    def titles(self) -> list[str]:
        return [body["title"] for _, _, body in self.got]


@asynccontextmanager
async def receiver(clock: Clock, monkeypatch: Any = None, fail: bool = False) -> AsyncIterator[Receiver]:
    """A loopback webhook; `hook_url()` reaches it through NOTIFY_PORT and NOTIFY_TOKEN, set in this process's
    environment when `monkeypatch` is given (a child process is given `hook.env`)."""
    hook = Receiver(clock, fail)
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    hook.port = server.port
    if monkeypatch is not None:
        for name, value in hook.env.items():
            monkeypatch.setenv(name, value)
    try:
        yield hook
    finally:
        await server.close()


def hook_url() -> str:
    return "json://127.0.0.1:${NOTIFY_PORT}/hook/${NOTIFY_TOKEN}"


def morning_config(sim: Any, tmp_path: Path, cache: dict[str, Any] | None = None, **notify: Any) -> Any:
    data = sim_config_data(
        sim,
        state_dir=str(tmp_path / "state"),
        cache={"dir": str(tmp_path / "cache"), **(cache or {})},
        executor={"clock_source": "none", "final_check_s": 1.0},
        schedule={"warmup": "07:40", "open": "08:45", "arm_before_s": 60, "window_s": 30, "refresh_s": 600},
        notify={"urls": [hook_url()], "retry_delay_s": 2, **notify},
    )
    data["accounts"][1]["password_env"] = "NOTIFY_WRONG_PASSWORD"
    return validate_config(data)


def all_logged(logs: list[dict[str, Any]]) -> str:
    return repr(logs)


# ---- a morning through the real scheduler and runner, in fake time ------------------------------------------


@pytest.mark.sim(accounts=2, loop_time=True)
@pytest.mark.looptime
async def test_a_morning_tells_the_warmup_failure_at_once_and_the_fire_only_after_the_window(
    sim, tmp_path, monkeypatch
):
    clock = daemon_clock(sim)
    async with receiver(clock, monkeypatch) as hook:
        monkeypatch.setenv("NOTIFY_WRONG_PASSWORD", "not-the-password")
        config = morning_config(sim, tmp_path)
        now = clock.now().astimezone(config.tz)
        open_at = now.replace(hour=8, minute=45, second=0, microsecond=0)
        sim.set_open_at(open_at)
        runner = make_runner(config, clock, solver=SimulatorSolver(sim))
        scheduler = DayScheduler(config, runner, clock, ClockAlarm(clock))
        with capture_logs() as logs:
            try:
                scheduler.start()
                await clock.sleep_until(open_at + timedelta(seconds=90))
                await scheduler.stop()
            finally:
                await runner.aclose()
    arm, window_end = open_at - timedelta(seconds=60), open_at + timedelta(seconds=30)
    assert [t for t, _, _ in hook.got if arm <= t < window_end] == []  # nothing inside the window
    bodies = {body["title"]: (t, body["message"]) for t, _, body in hook.got}
    good, bad = config.accounts
    # the refreshes fail on its password too, and are not told again
    assert hook.titles() == [f"opening-bell: {bad.name} not ready", "opening-bell: 1/2 in"]
    failed_at, failed_text = bodies[f"opening-bell: {bad.name} not ready"]
    assert failed_at < arm  # told at the warmup, while there is time to fix it
    assert bad.name in failed_text and "not ready for the open" in failed_text
    summary_at, summary = bodies["opening-bell: 1/2 in"]
    assert window_end <= summary_at < window_end + timedelta(seconds=5)  # right after the window
    lines = summary.splitlines()
    assert lines[0].endswith("1 of 2 orders in.")
    assert lines[1].startswith(f"in: {good.name} ({good.broker}) buy IRO1FOLD0001")
    assert lines[2] == (
        f"NOT in: {bad.name} ({bad.broker}) buy IRO1FOLD0001: not sent: not ready: account {bad.name}: "
        "the broker refused the username or password; fix them in the config."
    )
    assert all(path == f"/hook/{TOKEN}" for _, path, _ in hook.got)  # the secret came from the environment
    assert TOKEN not in all_logged(logs)
    rows = summarize(read_journal(config.state_dir, open_at.date()))
    assert [r.account for r in rows if r.accepted] == [good.name]


@pytest.mark.sim(accounts=2, loop_time=True)
@pytest.mark.looptime
async def test_a_login_that_cannot_be_renewed_after_a_good_warmup_is_told_once(sim, tmp_path, monkeypatch):
    """Tokens cached for 5 minutes, refreshes every 10: after the warmup the password changes (as if someone
    changed it at the broker), so each refresh's login fails; the user hears it once per account, before the arm."""
    clock = daemon_clock(sim)
    async with receiver(clock, monkeypatch) as hook:
        monkeypatch.setenv("NOTIFY_WRONG_PASSWORD", os.environ["OPENING_BELL_SIM_PASSWORD"])  # good at warmup
        config = morning_config(sim, tmp_path, cache={"ttl": {"tokens": 300}})
        open_at = clock.now().astimezone(config.tz).replace(hour=8, minute=45, second=0, microsecond=0)
        sim.set_open_at(open_at)
        runner = make_runner(config, clock, solver=SimulatorSolver(sim))
        scheduler = DayScheduler(config, runner, clock, ClockAlarm(clock))
        try:
            scheduler.start()
            await clock.sleep_until(open_at.replace(hour=7, minute=45))  # the 07:40 warmup has logged both in
            assert hook.got == []
            monkeypatch.setenv("NOTIFY_WRONG_PASSWORD", "changed-at-the-broker")
            await clock.sleep_until(open_at - timedelta(seconds=60))  # refreshes at 07:50, 08:00, ... 08:40
            renewals = [(t, body["message"]) for t, _, body in hook.got if "login not renewed" in body["title"]]
            await clock.sleep_until(open_at + timedelta(seconds=90))
            await scheduler.stop()
        finally:
            await runner.aclose()
    bad = config.accounts[1]
    assert len(renewals) == 1 and bad.name in renewals[0][1]  # once, though every refresh failed
    assert "could not be renewed: account" in renewals[0][1] and "username or password" in renewals[0][1]


@pytest.mark.sim(accounts=2, loop_time=True)
@pytest.mark.looptime
async def test_a_start_inside_the_window_is_told_after_the_window_with_the_summary(sim, tmp_path, monkeypatch):
    clock = daemon_clock(sim)
    async with receiver(clock, monkeypatch) as hook:
        monkeypatch.setenv("NOTIFY_WRONG_PASSWORD", os.environ["OPENING_BELL_SIM_PASSWORD"])  # both accounts good
        config = morning_config(sim, tmp_path)
        open_at = clock.now().astimezone(config.tz).replace(hour=8, minute=45, second=0, microsecond=0)
        sim.set_open_at(open_at)
        await clock.sleep_until(open_at - timedelta(seconds=30))  # the service (re)starts after the arm time
        runner = make_runner(config, clock, solver=SimulatorSolver(sim))
        scheduler = DayScheduler(config, runner, clock, ClockAlarm(clock))
        try:
            scheduler.start()
            await clock.sleep_until(open_at + timedelta(seconds=90))
            await scheduler.stop()
        finally:
            await runner.aclose()
    window_end = open_at + timedelta(seconds=30)
    assert hook.got and all(t >= window_end for t, _, _ in hook.got)  # queued at the arm, sent after the window
    assert sorted(hook.titles()) == ["opening-bell: 2/2 in", "opening-bell: restarted inside the window"]
    restart = next(body["message"] for _, _, body in hook.got if "restarted" in body["title"])
    assert "08:44:30" in restart and "inside the fire window" in restart


@pytest.mark.sim(accounts=2, loop_time=True)
@pytest.mark.looptime
async def test_a_failing_receiver_is_tried_a_bounded_number_of_times_logged_once_and_never_delays_the_fire(
    sim, tmp_path, monkeypatch
):
    clock = daemon_clock(sim)
    async with receiver(clock, monkeypatch, fail=True) as hook:
        monkeypatch.setenv("NOTIFY_WRONG_PASSWORD", "not-the-password")
        config = morning_config(sim, tmp_path, attempts=3, on=["fire_summary", "warmup_failed"])
        runner = make_runner(config, clock, solver=SimulatorSolver(sim))
        plan = plan_in(sim, config, open_in_s=30, window_s=10)
        with capture_logs() as logs:
            try:
                await runner.warmup(plan)  # the bad account's message starts failing now, its retries spaced 2, 4 s
                await runner.arm(plan)
                await runner.fire(plan)
                await clock.sleep_until(plan.window_end)
                await runner.report(plan)
                await clock.sleep_until(plan.window_end + timedelta(seconds=30))
            finally:
                await runner.aclose()
    assert hook.titles().count(f"opening-bell: {config.accounts[1].name} not ready") == 3
    assert hook.titles().count("opening-bell: 1/2 in") == 3  # three attempts each, never more
    assert not [t for t, _, _ in hook.got if plan.arm <= t < plan.window_end]
    failures = [e for e in logs if e["event"] == "notify.failed"]
    assert [(e["about"], e["destination"], e["attempts"]) for e in failures] == [
        ("warmup_failed", "notify.urls[0] (JSON)", 3),
        ("fire_summary", "notify.urls[0] (JSON)", 3),
    ]  # once per message, not once per attempt
    assert all("500" in e["reason"] or "Internal Server Error" in e["reason"] for e in failures)
    assert TOKEN not in all_logged(logs)
    rows = summarize(read_journal(config.state_dir, plan.day))
    accepted = [r for r in rows if r.accepted]
    assert len(accepted) == 1 and 0 <= accepted[0].first_send_ms < 5  # on time, the dead hook notwithstanding


@pytest.mark.sim(accounts=2, brokers=(("khobregan", "exir"), "gs"), loop_time=True)
@pytest.mark.looptime
async def test_the_fill_summary_comes_at_the_close_per_account_in_shares_and_rial(sim, tmp_path, monkeypatch):
    """Tracking to a 09:30 close: the Exir order is half filled by the exchange after the open, the Ephoenix one
    stays queued; the summary is sent once, at the close, and nothing before it but the fire summary."""
    clock = daemon_clock(sim)
    async with receiver(clock, monkeypatch) as hook:
        monkeypatch.setenv("NOTIFY_WRONG_PASSWORD", os.environ["OPENING_BELL_SIM_PASSWORD"])  # both accounts good
        data = sim_config_data(
            sim,
            state_dir=str(tmp_path / "state"),
            cache={"dir": str(tmp_path / "cache")},
            executor={"clock_source": "none", "final_check_s": 1.0},
            schedule={"warmup": "08:30", "open": "08:45", "window_s": 30, "refresh_s": 600, "close": "09:30"},
            notify={"urls": [hook_url()], "retry_delay_s": 2},
        )
        config = validate_config(data)
        open_at = clock.now().astimezone(config.tz).replace(hour=8, minute=45, second=0, microsecond=0)
        close = open_at.replace(hour=9, minute=30)
        sim.set_open_at(open_at)
        runner = make_runner(config, clock, solver=SimulatorSolver(sim))
        scheduler = DayScheduler(config, runner, clock, ClockAlarm(clock))
        try:
            scheduler.start()
            await clock.sleep_until(open_at + timedelta(minutes=3))
            (order,) = sim.orders("khobregan")
            sim.fill(order, order.volume // 2)
            await clock.sleep_until(close - timedelta(seconds=1))
            assert hook.titles() == ["opening-bell: 2/2 in"]  # nothing of the fills before the close
            await clock.sleep_until(close + timedelta(minutes=2))
            await scheduler.stop()
        finally:
            await runner.aclose()
    half = order.volume // 2
    assert hook.titles() == ["opening-bell: 2/2 in", f"opening-bell: {half:,} shares filled"]
    sent_at, _, body = hook.got[1]
    assert close <= sent_at < close + timedelta(seconds=5)
    exir, ephoenix = sorted(config.accounts, key=lambda a: a.broker != "khobregan")
    lines = body["message"].splitlines()
    assert (
        lines[0]
        == f"{open_at.date()}: {half:,} shares filled for {half * order.price:,} rial; 0 of 2 orders filled in full."
    )
    assert sorted(lines[1:]) == sorted([
        f"{exir.name} (khobregan): {half:,} shares, {half * order.price:,} rial: IRO1FOLD0001 {half:,} of {order.volume:,} partly filled",
        f"{ephoenix.name} (gs): 0 shares, 0 rial: IRO1FOLD0001 0 of {sim.orders('gs')[0].volume:,} queued",
    ])  # fmt: skip
    tracked = [r for r in read_journal(config.state_dir, open_at.date()) if r["kind"] == "tracked"]
    assert [sorted(r["accounts"]) for r in tracked] == [sorted(a.name for a in config.accounts)]  # once delivered


def test_the_fill_summary_in_persian_digits_and_an_unknown_one_says_why():
    rows = [
        ReportRow(account="ali", broker="gs", isin="IRO1FOLD0001", volume=1500, accepted=True, state="accepted",
                  fill_state="partly filled", executed=500, fill_value=6_170_000.0),
        ReportRow(account="ali", broker="gs", isin="IRO1IKCO0001", volume=200, accepted=True, state="accepted",
                  fill_state="unknown", fill_reason="its orders could not be read (HTTP 503)"),
        ReportRow(account="sara", broker="shahr", isin="IRO1FOLD0001", volume=100, accepted=True, state="accepted",
                  fill_state="filled", executed=100, fill_value=1_234_000.0),
    ]  # fmt: skip
    persian = Words(persian_digits=True).fill_summary(date(2026, 12, 1), rows)
    assert persian.title == "opening-bell: ۶۰۰ shares filled"
    assert persian.body.splitlines() == [
        "۲۰۲۶-۱۲-۰۱: ۶۰۰ shares filled for ۷,۴۰۴,۰۰۰ rial; ۱ of ۳ orders filled in full.",
        "ali (gs): ۵۰۰ shares, ۶,۱۷۰,۰۰۰ rial: IRO1FOLD0001 ۵۰۰ of ۱,۵۰۰ partly filled; "
        "IRO1IKCO0001 unknown, check the broker (its orders could not be read (HTTP 503))",
        "sara (shahr): ۱۰۰ shares, ۱,۲۳۴,۰۰۰ rial: IRO1FOLD0001 ۱۰۰ of ۱۰۰ filled",
    ]
    alert = Words().unknown_fills(date(2026, 12, 1), rows[1:2])
    assert (alert.event, alert.title) == ("unknown_order", "opening-bell: fill state unknown")
    assert alert.body.splitlines()[1] == "ali (gs) buy IRO1IKCO0001: its orders could not be read (HTTP 503)"


async def test_the_fill_summary_is_sent_once_a_day_and_only_with_accepted_orders(monkeypatch):
    clock = SystemClock()
    async with receiver(clock, monkeypatch) as hook:
        notify = Notifications.from_config(validate_config({"notify": {"urls": [hook_url()]}}), clock)
        assert notify is not None
        day = date(2026, 12, 1)
        filled = ReportRow(account="ali", broker="gs", isin="IRO1FOLD0001", volume=10, accepted=True,
                           fill_state="filled", executed=10, fill_value=100.0)  # fmt: skip
        notify.fill_summary(day, [ReportRow(account="sara", broker="gs", isin="IRO1FOLD0001")])  # none accepted
        notify.fill_summary(day, [filled])
        notify.fill_summary(day, [filled])
        assert await notify.outbox.drain(10)
        await notify.aclose()
    assert hook.titles() == ["opening-bell: 10 shares filled"]
    off = validate_config({"notify": {"urls": [hook_url()], "on": ["fire_summary"]}})
    assert "fill_summary" in validate_config({}).notify.on and "fill_summary" not in off.notify.on


# ---- config, words, the missing library --------------------------------------------------------------------------


def test_an_unknown_event_is_one_sentence_naming_it():
    with pytest.raises(ConfigError) as caught:
        validate_config({"notify": {"urls": ["json://127.0.0.1:1/x"], "on": ["fire_summary", "fire_sumary"]}})
    message = str(caught.value)
    assert message.startswith("config: notify.on: 'fire_sumary' is not an event; choose from fire_summary, ")
    assert message.endswith("service_stopped_in_window, unknown_order.") and "\n" not in message


def test_a_bare_on_key_in_yaml_is_the_setting_not_a_boolean(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("notify:\n  urls: ['json://127.0.0.1:9/${NOTIFY_PORT}']\n  on: [warmup_failed]\n")
    assert load_config(path).notify.on == ["warmup_failed"]


def test_a_url_source_needs_exactly_one_of_env_and_file():
    with pytest.raises(ConfigError) as caught:
        validate_config({"notify": {"urls": ["json://127.0.0.1:1/x", {"url_env": "A", "url_file": "/x"}]}})
    assert str(caught.value) == "config: notify.urls[1]: give exactly one of url_env or url_file."
    with pytest.raises(ConfigError) as caught:
        validate_config({"notify": {"urls": [""]}})
    assert str(caught.value) == "config: notify.urls[0]: String should have at least 1 character."


def test_an_unset_variable_in_a_url_names_it(monkeypatch):
    monkeypatch.delenv("NOTIFY_NOT_SET", raising=False)
    config = validate_config({"notify": {"urls": ["tgram://${NOTIFY_NOT_SET}/123"]}})
    with pytest.raises(
        ConfigError, match=r"^notify.urls\[0\] uses environment variable NOTIFY_NOT_SET, which is not set"
    ):
        Notifications.from_config(config, SystemClock())


def test_a_url_file_must_be_private(tmp_path):
    url_file = tmp_path / "notify-url"
    url_file.write_text(f"json://127.0.0.1:9/{TOKEN}\n")
    url_file.chmod(0o644)
    config = validate_config({"notify": {"urls": [{"url_file": str(url_file)}]}})
    with pytest.raises(ConfigError, match="is readable by group or others; run chmod 600"):
        Notifications.from_config(config, SystemClock())
    url_file.chmod(0o600)
    notify = Notifications.from_config(config, SystemClock())
    assert notify is not None and [d.name for d in notify.outbox.destinations] == ["notify.urls[0] (JSON)"]


def test_the_tokens_of_a_whole_url_from_a_secret_source_are_kept_out_of_logs(monkeypatch):
    bot, chat = "123456789:AAHk3f9a71c2e8d54b06xyz", "-1001234567890"
    monkeypatch.setenv("NOTIFY_WHOLE_URL", f"tgram://{bot}/{chat}")
    config = validate_config({"notify": {"urls": [{"url_env": "NOTIFY_WHOLE_URL"}]}})
    assert config.notify.resolve_urls() == [f"tgram://{bot}/{chat}"]
    shown = scrub(f"Failed to send Telegram notification to {chat} with bot{bot.split(':')[1]} at api.telegram.org.")
    assert chat not in shown and bot.split(":")[1] not in shown and "api.telegram.org" in shown


def test_a_url_apprise_cannot_read_is_named_by_index_never_shown():
    config = validate_config({"notify": {"urls": [f"nosuchservice://{TOKEN}@host"]}})
    with pytest.raises(ConfigError) as caught:
        Notifications.from_config(config, SystemClock())
    assert "notify.urls[0] is not a URL apprise can send to (scheme 'nosuchservice')" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_without_apprise_a_config_asking_for_notifications_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "apprise", None)  # `import apprise` raises ImportError
    config = validate_config({"notify": {"urls": ["json://127.0.0.1:9/x"]}})
    with pytest.raises(ConfigError, match=r"^notify.urls is set but apprise is not installed; pip install"):
        Notifications.from_config(config, SystemClock())
    assert Notifications.from_config(validate_config({}), SystemClock()) is None  # no notify.urls: no apprise needed


def test_persian_digits_are_the_numbers_only():
    row = ReportRow(
        account="ali", broker="gs", isin="IRO1FOLD0001", price=12340, volume=1500, first_send_ms=1.2, accepted=True
    )
    western = Words().fire_summary(date(2026, 12, 1), [row])
    persian = Words(persian_digits=True).fire_summary(date(2026, 12, 1), [row])
    assert western.body.splitlines() == [
        "2026-12-01: 1 of 1 orders in.",
        "in: ali (gs) buy IRO1FOLD0001 1,500 @ 12,340, 1 ms after the open",
    ]
    assert persian.body.splitlines() == [
        "۲۰۲۶-۱۲-۰۱: ۱ of ۱ orders in.",
        "in: ali (gs) buy IRO1FOLD0001 ۱,۵۰۰ @ ۱۲,۳۴۰, ۱ ms after the open",
    ]


async def test_events_left_out_of_notify_on_are_not_sent(monkeypatch):
    clock = SystemClock()
    async with receiver(clock, monkeypatch) as hook:
        config = validate_config({"notify": {"urls": [hook_url()], "on": ["warmup_failed"]}})
        notify = Notifications.from_config(config, clock)
        assert notify is not None
        day = date(2026, 12, 1)
        notify.token_renewal_failed(day, "ali", "the broker did not answer")
        notify.warmup_failed(day, "ali", "gs", "wrong username or password")
        notify.warmup_failed(day, "ali", "gs", "wrong username or password")  # once per account and day
        assert await notify.outbox.drain(10)
        await notify.aclose()
    assert hook.titles() == ["opening-bell: ali not ready"]


async def test_an_unknown_order_is_its_own_alert_beside_the_summary(monkeypatch):
    clock = SystemClock()
    async with receiver(clock, monkeypatch) as hook:
        config = validate_config({"notify": {"urls": [hook_url()], "persian_digits": True}})
        notify = Notifications.from_config(config, clock)
        assert notify is not None
        lost = ReportRow(
            account="sara",
            broker="shahr",
            isin="IRO1FOLD0001",
            attempts=1,
            state="unknown",
            result="unknown: no answer",
        )
        notify.fire_summary(date(2026, 12, 1), [lost])
        assert await notify.outbox.drain(10)
        await notify.aclose()
    assert hook.titles() == ["opening-bell: ۰/۱ in", "opening-bell: order state unknown"]
    assert hook.got[1][2]["message"].splitlines() == [
        "۲۰۲۶-۱۲-۰۱: ۱ order(s) with no final answer; check them in the broker's order list.",
        "sara (shahr) buy IRO1FOLD0001: unknown: no answer",
    ]


async def test_a_renewal_failure_is_told_once_a_day_and_not_after_the_warmup_said_not_ready(monkeypatch):
    clock = SystemClock()
    async with receiver(clock, monkeypatch) as hook:
        notify = Notifications.from_config(validate_config({"notify": {"urls": [hook_url()]}}), clock)
        assert notify is not None
        day = date(2026, 12, 1)
        notify.warmup_failed(day, "sara", "shahr", "wrong username or password")
        notify.token_renewal_failed(day, "sara", "wrong username or password")
        notify.token_renewal_failed(day, "ali", "the broker did not answer")
        notify.token_renewal_failed(day, "ali", "the broker did not answer")
        notify.token_renewal_failed(day + timedelta(days=1), "ali", "the broker did not answer")
        assert await notify.outbox.drain(10)
        await notify.aclose()
    assert hook.titles() == [
        "opening-bell: sara not ready",
        "opening-bell: ali login not renewed",
        "opening-bell: ali login not renewed",
    ]


# ---- `python -m daemon notify --test` ------------------------------------------------------------------------------


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The CLI as a child process, awaited without blocking the loop (the receiver lives on it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        *args,
        env=daemon_env(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


def write_config(path: Path, data: dict[str, Any], mode: int = 0o600) -> Path:
    path.write_text(yaml.safe_dump(data))
    path.chmod(mode)
    return path


async def test_notify_test_sends_one_message_and_says_so(tmp_path):
    async with receiver(SystemClock()) as hook:
        config = write_config(tmp_path / "config.yaml", {"notify": {"urls": [hook_url()]}})
        code, out, err = await run_cli("notify", "--test", "--config", str(config), env=hook.env)
        assert (code, hook.titles()) == (0, ["opening-bell: test"]), err
        assert "notify.urls[0] (JSON)  sent" in out
        code, out, err = await run_cli("notify", "--test", "--json", "--config", str(config), env=hook.env)
        assert code == 0 and '"sent": true' in out
    assert TOKEN not in out + err
    assert hook.got[0][1] == f"/hook/{TOKEN}"


async def test_notify_test_to_a_failing_receiver_exits_1_with_the_reason_and_no_secret(tmp_path):
    async with receiver(SystemClock(), fail=True) as hook:
        config = write_config(tmp_path / "config.yaml", {"notify": {"urls": [hook_url()]}})
        code, out, err = await run_cli("notify", "--test", "--config", str(config), env=hook.env)
    assert code == 1 and len(hook.got) == 1  # the test sends once: its answer is what the user needs to see
    assert "notify.urls[0] (JSON)" in out and "500" in out
    assert TOKEN not in out + err


@pytest.mark.parametrize(
    ("notify", "mode", "expected"),
    [
        ({}, 0o600, 'error: notify.urls is empty; add the URL of a service to send to (README "Notifications").'),
        (
            {"urls": ["json://127.0.0.1:9/${NOTIFY_MISSING}"]},
            0o600,
            "error: notify.urls[0] uses environment variable NOTIFY_MISSING, which is not set; "
            "export it or change the URL.",
        ),
        (
            {"urls": [f"json://127.0.0.1:9/{TOKEN}"]},
            0o644,
            "holds a notify URL written whole (no ${VAR} in it) and is readable by group or others; run chmod 600",
        ),
        ({"urls": ["json://127.0.0.1:9/x"], "on": ["fires"]}, 0o600, "notify.on: 'fires' is not an event"),
    ],
)
async def test_notify_test_refuses_a_bad_config_in_one_sentence(tmp_path, notify, mode, expected):
    config = write_config(tmp_path / "config.yaml", {"notify": notify}, mode)
    code, out, err = await run_cli("notify", "--test", "--config", str(config))
    assert code == 2 and out == ""
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert TOKEN not in err


async def test_notify_test_without_apprise_installed_exits_2(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "apprise.py").write_text("raise ImportError('no apprise here')\n")
    config = write_config(tmp_path / "config.yaml", {"notify": {"urls": ["json://127.0.0.1:9/x"]}})
    env = daemon_env()
    code, out, err = await run_cli(
        "notify", "--test", "--config", str(config), env={"PYTHONPATH": f"{shadow}{os.pathsep}{env['PYTHONPATH']}"}
    )
    assert code == 2 and err.startswith("error: notify.urls is set but apprise is not installed;")
    assert err.count("\n") == 1
