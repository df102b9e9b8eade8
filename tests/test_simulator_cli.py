"""`python -m daemon simulate` as a user runs it: a child process, its printed snippet, a request, SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import yaml

from daemon.cmd_simulate import SNIPPET_END, SNIPPET_START
from daemon.config import validate_config
from daemon.simulator import DEFAULT_PASSWORD, PASSWORD_ENV
from tests.conftest import REPO_ROOT, run_daemon

STARTUP_LIMIT_S = 60  # a guard against a hung child, not a measurement


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENING_BELL")}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", "simulate", *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
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
    process, lines = await _start("--port", "0", "--accounts", "3", "--brokers", "gs,bbi", "--open-at", "08:45:00",
                                  "--skew-ms", "250", "--request-log", str(log_path), "--seed", "5")
    try:
        assert "bound to 127.0.0.1" in lines[0]
        assert any("08:45:00.000 Asia/Tehran" in line and "+250 ms" in line for line in lines)
        assert f"  export {PASSWORD_ENV}={DEFAULT_PASSWORD}" in lines
        snippet = yaml.safe_load("\n".join(lines[lines.index(SNIPPET_START) + 1 : -1]))
        config = validate_config(snippet)
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


async def test_simulate_stops_on_sigint_with_exit_0() -> None:
    process, _ = await _start("--port", "0", "--accounts", "1", "--fault", "new_order:delay_ms=20,jitter_ms=5")
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


def test_port_in_use_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_sentence_error(run_daemon("simulate", "--port", str(port)), "cannot listen", str(port))
