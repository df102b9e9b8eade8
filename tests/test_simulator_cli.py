"""`python -m daemon simulate` as a user runs it: a child process, its printed snippet, a request, SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import socket
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import yaml

from daemon.cli.simulate import (
    SNIPPET_END,
    SNIPPET_START,
    build_simulator,
    default_open_at,
    parse_open_at,
    register,
    schedule_snippet,
)
from daemon.config import ConfigLoader, validate_config
from daemon.errors import UserError
from daemon.sim import FillPlan, FillStep
from daemon.simulator import DEFAULT_PASSWORD, PASSWORD_ENV, Simulator
from tests.processes import REPO_ROOT, run_daemon
from tests.simhelp import SIM_SEED

STARTUP_LIMIT_S = 60  # a guard against a hung child, not a measurement


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENING_BELL")}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        "simulate",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or lines[-1] != SNIPPET_END:
        raw = await asyncio.wait_for(process.stdout.readline(), STARTUP_LIMIT_S)
        if not raw:
            _, err = await process.communicate()
            raise AssertionError(f"simulate ended early: {err.decode()}")
        lines.append(raw.decode().rstrip("\n"))
    return process, lines


async def test_simulate_prints_a_working_config_and_stops_on_sigterm(tmp_path: Path) -> None:
    log_path = tmp_path / "requests.jsonl"
    process, lines = await _start(
        "--port",
        "0",
        "--accounts",
        "3",
        "--brokers",
        "gs,bbi",
        "--open-at",
        "08:45:00",
        "--skew-ms",
        "250",
        "--request-log",
        str(log_path),
        "--seed",
        "5",
        "--fill",
        "IRO1FOLD0001=0.4@2s,1@1m:5570",
    )
    try:
        assert "bound to 127.0.0.1" in lines[0]
        assert "Orders of IRO1FOLD0001 execute 40% at +2 s, 100% at +60 s for 5570 after the open." in lines
        assert any("08:45:00.000 Asia/Tehran" in line and "+250 ms" in line for line in lines)
        assert f"  export {PASSWORD_ENV}={DEFAULT_PASSWORD}" in lines
        snippet = yaml.safe_load("\n".join(lines[lines.index(SNIPPET_START) + 1 : -1]))
        config = validate_config(snippet)
        assert (config.timezone, config.schedule.open) == ("Asia/Tehran", time(8, 45))  # a plain `fire` aims there
        assert [a.broker for a in config.accounts] == ["gs", "bbi", "gs"]
        assert all(a.password_env == PASSWORD_ENV for a in config.accounts)
        async with aiohttp.ClientSession() as session:
            response = await session.get(f"{config.broker('bbi').identity_url}/api/Captcha/GetCaptcha")
            body = await response.json()
            assert response.status == 200
            assert base64.b64decode(body["captchaByteData"]).startswith(b"\xff\xd8\xff")  # bbi: the second broker, JPEG
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), STARTUP_LIMIT_S)
    assert process.returncode == 0, err.decode()
    rows = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(r["route"], r["broker"], r["status"]) for r in rows] == [("captcha", "bbi", 200)]


async def test_the_snippet_opens_when_the_simulator_does_by_default() -> None:
    process, lines = await _start("--port", "0", "--accounts", "1")
    try:
        announced = next(line for line in lines if line.startswith("The market opens at "))
        snippet = yaml.load("\n".join(lines[lines.index(SNIPPET_START) + 1 : -1]), Loader=ConfigLoader)
        config = validate_config(snippet)
        assert f"opens at {config.schedule.open:%H:%M:%S}.000 Asia/Tehran" in announced
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), STARTUP_LIMIT_S)
    assert process.returncode == 0


TEHRAN = ZoneInfo("Asia/Tehran")


def _read_back(open_at: datetime):
    """schedule_snippet as printed (YAML) and read by the daemon's config loader."""
    text = yaml.safe_dump(schedule_snippet(open_at), sort_keys=False)
    return validate_config(yaml.load(text, Loader=ConfigLoader))


def test_the_schedule_snippet_is_a_valid_config_whose_open_is_the_simulators_at_any_time_of_day() -> None:
    midnight = datetime(2026, 11, 21, tzinfo=TEHRAN)
    draws = random.Random(12)
    offsets = [timedelta(microseconds=draws.randrange(1, 86_400 * 1_000_000)) for _ in range(500)]
    offsets += [
        timedelta(seconds=s)
        for s in (
            1e-6,
            30,
            60,
            60.000001,
            8 * 3600 + 21 * 60,
            8 * 3600 + 21 * 60 + 1e-6,
            8 * 3600 + 45 * 60.25,
            86_400 - 30,
            86_400 - 1e-6,
        )
    ]
    for offset in offsets:
        open_at = midnight + offset
        config = _read_back(open_at.astimezone(UTC))  # any zone in: Tehran wall time out
        assert config.timezone == "Asia/Tehran" and config.schedule.open == open_at.time(), open_at


def test_the_schedule_snippet_gives_the_open_and_only_the_defaults_that_do_not_fit_it() -> None:
    def at(*clock: int) -> datetime:
        return datetime(2026, 11, 21, *clock, tzinfo=TEHRAN)

    assert schedule_snippet(at(8, 45)) == {"timezone": "Asia/Tehran", "schedule": {"open": "08:45:00"}}
    assert schedule_snippet(at(8, 45, 0, 250_000))["schedule"] == {"open": "08:45:00.250"}
    assert schedule_snippet(at(8, 21))["schedule"] == {"warmup": "07:56:00", "open": "08:21:00"}  # 08:20 is arm time
    assert schedule_snippet(at(0, 0, 30))["schedule"] == {
        "warmup": "00:00:00",
        "open": "00:00:30",
        "arm_before_s": 15.0,
    }
    assert schedule_snippet(at(23, 59, 50))["schedule"] == {"open": "23:59:50", "window_s": 5.0}


async def test_simulate_stops_on_sigint_with_exit_0() -> None:
    process, _ = await _start(
        "--port", "0", "--accounts", "1", "--fault", "new_order:delay_ms=20,jitter_ms=5", "--seed", str(SIM_SEED)
    )
    process.send_signal(signal.SIGINT)
    await asyncio.wait_for(process.communicate(), STARTUP_LIMIT_S)
    assert process.returncode == 0


def _one_sentence_error(result: object, *words: str) -> None:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 2, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr and stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    for word in words:
        assert word in stderr


def test_bad_fault_syntax_exits_2() -> None:
    _one_sentence_error(run_daemon("simulate", "--port", "0", "--fault", "new_order:explode"), "--fault", "explode")


def test_bad_open_at_exits_2() -> None:
    _one_sentence_error(run_daemon("simulate", "--port", "0", "--open-at", "8.45"), "--open-at")


def test_bad_brokers_exits_2() -> None:
    _one_sentence_error(run_daemon("simulate", "--port", "0", "--brokers", "GS,../x"), "--brokers")


def test_an_unknown_platform_in_brokers_exits_2() -> None:
    _one_sentence_error(
        run_daemon("simulate", "--port", "0", "--brokers", "gs,bbi:nowhere"),
        "--brokers",
        "'nowhere'",
        "use one of ephoenix",
    )


def test_brokers_may_name_their_platform() -> None:
    named = _build("--brokers", "gs:ephoenix,bbi:ephoenix", "--accounts", "3", "--seed", str(SIM_SEED))
    bare = _build("--brokers", "gs,bbi", "--accounts", "3", "--seed", str(SIM_SEED))
    for sim in (named, bare):
        assert [(code, b.platform, b.captcha_format) for code, b in sim.state.brokers.items()] == [
            ("gs", "ephoenix", "png"),
            ("bbi", "ephoenix", "jpeg"),
        ]
        assert [a.broker for a in sim.accounts] == ["gs", "bbi", "gs"]


async def test_the_default_brokers_are_three_on_ephoenix_an_exir_and_an_online_plus_tenant_and_mofid() -> None:
    sim = _build("--accounts", "6", "--seed", str(SIM_SEED))
    assert [(code, b.platform) for code, b in sim.state.brokers.items()] == [
        ("gs", "ephoenix"),
        ("shahr", "ephoenix"),
        ("bbi", "ephoenix"),
        ("khobregan", "exir"),
        ("hafez", "onlineplus"),
        ("mofid", "easytrader"),
    ]
    async with sim:
        config = validate_config(sim.config_snippet().data)
    exir = config.broker("khobregan")
    assert (exir.platform, exir.url, exir.rlc_url) == ("exir", f"{sim.base_url}/khobregan", f"{sim.base_url}/rlc")
    online = config.broker("hafez")
    assert (online.platform, online.url) == ("onlineplus", f"{sim.base_url}/hafez/online")
    assert [a.broker for a in config.accounts] == ["gs", "shahr", "bbi", "khobregan", "hafez", "mofid"]
    assert config.broker("mofid").platform == "easytrader"


def test_port_in_use_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_sentence_error(run_daemon("simulate", "--port", str(port)), "cannot listen", str(port))


def _build(*args: str) -> Simulator:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return build_simulator(parser.parse_args(["simulate", *args]))


def test_options_become_settings() -> None:
    sim = _build(
        "--login-limit",
        "5/2.5",
        "--login-cooldown-s",
        "30",
        "--retry-after",
        "--spacing-ms",
        "150",
        "--spacing-per-isin",
        "--order-response",
        "nested",
        "--rejection-status",
        "400",
        "--min-order-value",
        "0",
        "--token-ttl-s",
        "60",
        "--accounts",
        "4",
        "--brokers",
        "bbi",
        "--fault",
        "login@bbi:status=503,rate=0.5",
        "--seed",
        str(SIM_SEED),
    )
    settings = sim.settings
    assert (
        settings.login_limit.max_calls,
        settings.login_limit.window_s,
        settings.login_limit.cooldown_s,
        settings.login_limit.retry_after,
    ) == (5, 2.5, 30, True)
    assert (settings.rules.spacing_ms, settings.rules.spacing_scope, settings.rules.min_order_value) == (
        150,
        "account_isin",
        0,
    )
    assert (settings.order_response, settings.rejection_status, settings.token_ttl_s) == ("nested", 400, 60)
    assert [a.broker for a in sim.accounts] == ["bbi"] * 4
    assert [(f.route, f.broker, f.status, f.rate) for f in sim.state.faults.faults] == [("login", "bbi", 503, 0.5)]


def test_bad_login_limit_is_a_user_error() -> None:
    with pytest.raises(UserError, match="--login-limit"):
        _build("--login-limit", "150 per minute")


def test_open_at_is_tehran_time_on_the_simulator_day() -> None:
    now = datetime(2026, 11, 21, 21, 0, tzinfo=UTC)  # already 00:30 on the 22nd in Tehran
    assert parse_open_at("08:45:00.25", now) == datetime(2026, 11, 22, 5, 15, 0, 250_000, tzinfo=UTC)
    assert default_open_at(datetime(2026, 11, 21, 5, 0, 0, 100_000, tzinfo=UTC)) == datetime(
        2026, 11, 21, 5, 0, 6, tzinfo=UTC
    )
    with pytest.raises(UserError, match="--open-at"):
        parse_open_at("25:00:00", now)


def test_a_fill_becomes_its_instruments_plan() -> None:
    sim = _build("--fill", "IRO1FOLD0001=0.4@2s,1@1m:5570", "--fill", "IRO1IKCO0001=0.6@500ms")
    assert sim.settings.fills == {
        "IRO1FOLD0001": FillPlan((FillStep(2.0, 0.4), FillStep(60.0, 1.0, 5570))),
        "IRO1IKCO0001": FillPlan((FillStep(0.5, 0.6),)),
    }
    assert _build().settings.fills == {}


@pytest.mark.parametrize(
    "values, words",
    [
        (["IRO1FOLD0001=1.5@5s"], ["between 0 and 1"]),
        (["IRO1FOLD0001=0.6"], ["RATIO@DELAY"]),
        (["IRO1NONE0001=0.6@5s"], ["IRO1NONE0001", "use one of IRO1FOLD0001"]),
        (["IRO1FOLD0001=0.6@5s", "IRO1FOLD0001=1@9s"], ["twice"]),
    ],
)
def test_a_bad_fill_is_a_user_error_naming_what_to_fix(values: list[str], words: list[str]) -> None:
    with pytest.raises(UserError, match="--fill") as caught:
        _build(*[part for value in values for part in ("--fill", value)])
    assert all(word in str(caught.value) for word in words) and "\n" not in str(caught.value)


def test_bad_fill_exits_2() -> None:
    _one_sentence_error(run_daemon("simulate", "--port", "0", "--fill", "IRO1FOLD0001=2@5s"), "--fill", "between 0")
