"""Issue 13's proof: a second platform (tests/toy_platform.py: only a session and a codec, registered through
`daemon.platforms.register`) warms up and fires through the real warmup and executor, unedited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiohttp.test_utils import TestServer

from daemon.clock import SystemClock
from daemon.config import validate_config
from daemon.errors import ConfigError
from daemon.executor import Executor
from daemon.firing import Journal, read_journal, summarize
from daemon.platforms import names, platform_for
from daemon.warmup import warmup
from daemon.wiring import Wiring
from tests.toy_platform import TOY, ToyBroker, register_toy, toy_app

ISIN = "IRO1TOYS0001"
PASSWORDS = {"u1": "pw-one", "u2": "pw-two"}


class PuzzleSolver:
    """The toy broker's captcha image is its answer's digits."""

    async def solve(self, image: bytes) -> str:
        return image.decode()


def toy_config(base: str, tmp_path, **executor):
    accounts = [
        {
            "name": f"toy-{user}",
            "broker": "toy",
            "username": user,
            "password_env": f"TOY_PW_{user.upper()}",
            "orders": [{"isin": ISIN, "side": "buy", "price": "max", "volume": "auto"}],
        }
        for user in PASSWORDS
    ]
    return validate_config(
        {
            "state_dir": str(tmp_path / "state"),
            "cache": {"dir": str(tmp_path / "cache")},
            "captcha": {"spacing_s": 0.0},
            "brokers": {
                "toy": {
                    "platform": "toy",
                    "identity_url": base + "/id",
                    "trading_url": base + "/tr",
                    "backoffice_url": base + "/bo",
                    "market_data_url": base + "/md",
                }
            },
            "executor": {"clock_source": "none", "final_check_s": 0.5, "answer_timeout_s": 2.0, **executor},
            "schedule": {"window_s": 3},
            "accounts": accounts,
        },
        source="toy config",
    )


def test_an_unregistered_platform_is_one_sentence() -> None:
    with pytest.raises(
        ConfigError, match=r"brokers\.x\.platform: 'nowhere' is not a known broker platform; use one of"
    ):
        validate_config({"brokers": {"x": {"platform": "nowhere"}}})
    assert "ephoenix" in names() and platform_for("ephoenix").name == "ephoenix"


async def test_a_second_platform_warms_up_and_fires_through_the_real_executor(tmp_path, monkeypatch) -> None:
    register_toy()
    assert platform_for("toy") is TOY
    for user, password in PASSWORDS.items():
        monkeypatch.setenv(f"TOY_PW_{user.upper()}", password)
    clock = SystemClock()
    broker = ToyBroker(clock, dict(PASSWORDS))
    server = TestServer(toy_app(broker), host="127.0.0.1")
    await server.start_server()
    try:
        config = toy_config(str(server.make_url("")).rstrip("/"), tmp_path)
        async with Wiring(config, clock, solver=PuzzleSolver()) as services:
            results = await warmup(services.clients(config.accounts), services.clock)
            assert [(r.account, r.ok, r.buying_power) for r in results] == [
                ("toy-u1", True, 10_000_000.0),
                ("toy-u2", True, 10_000_000.0),
            ]
            volume = results[0].orders[0].volume
            assert results[0].orders[0].price == 10_000 and volume and volume > 0
            open_at = clock.now().astimezone(config.tz) + timedelta(seconds=2)
            broker.open_at = open_at
            day = open_at.date()
            executor = Executor.from_wiring(services, Journal(config.state_dir, day), day=day)
            await executor.run_open(config.accounts, open_at)
        placed = sorted((o["user"], o["isin"], o["side"], o["price"], o["qty"]) for o in broker.orders)
        assert placed == [("u1", ISIN, "buy", 10_000, volume), ("u2", ISIN, "buy", 10_000, volume)]
        rows = summarize(read_journal(config.state_dir, day))
        assert sorted((r.account, r.state, r.serial_number) for r in rows) == [
            ("toy-u1", "accepted", next(o["id"] for o in broker.orders if o["user"] == "u1")),
            ("toy-u2", "accepted", next(o["id"] for o in broker.orders if o["user"] == "u2")),
        ]
    finally:
        await server.close()
