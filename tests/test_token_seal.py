"""Tokens encrypted at rest: key sources, what is sealed, wrong and missing keys, plain files, keygen, show."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet
from structlog.testing import capture_logs

from daemon.cache import Cache
from daemon.cli import main
from daemon.clock import FakeClock, SystemClock
from daemon.config import CacheSettings, validate_config
from daemon.errors import ConfigError
from daemon.store import NO_KEY, WRONG_KEY, TokenKeyError
from daemon.wiring import Wiring
from tests.test_client_errors import broker, make_services  # noqa: F401 (fixture)

TOKEN = "eyJhbGciOiJIUzI1NiJ9.sealed-token-value"
KEY = Fernet.generate_key().decode()
OTHER_KEY = Fernet.generate_key().decode()
ENV = "OPENING_BELL_TOKEN_KEY"
FILE = Path(".cache/token_u1_gs.json")


def keyed(monkeypatch, key: str = KEY) -> CacheSettings:
    monkeypatch.setenv(ENV, key)
    return CacheSettings(token_key_env=ENV)


async def save(settings: CacheSettings, clock: FakeClock, token: str = TOKEN) -> None:
    await Cache(settings, clock).save_token("u1", "gs", token, clock.now() + timedelta(hours=1))


async def test_only_the_token_is_sealed_and_it_never_reaches_the_file(monkeypatch, clock: FakeClock) -> None:
    settings = keyed(monkeypatch)
    await save(settings, clock)
    raw = FILE.read_bytes()
    assert TOKEN.encode() not in raw and b"sealed-token-value" not in raw
    stored = json.loads(raw)
    assert stored["data"]["token"].startswith("fernet:")
    assert (stored["username"], stored["broker_code"]) == ("u1", "gs")  # the rest stays readable
    assert (await Cache(settings, clock).get_token("u1", "gs"))["token"] == TOKEN
    [info] = await Cache(CacheSettings(), clock).list("tokens")  # listing needs no key
    assert info.valid and info.identity == {"username": "u1", "broker_code": "gs"}


async def test_a_key_file_and_the_systemd_credential_are_sources(tmp_path: Path, monkeypatch, clock) -> None:
    key_file = tmp_path / "token-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    await save(CacheSettings(token_key_file=key_file), clock)
    assert json.loads(FILE.read_bytes())["data"]["token"].startswith("fernet:")

    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert (await Cache(CacheSettings(), clock).get_token("u1", "gs"))["token"] == TOKEN
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "empty"))
    with pytest.raises(TokenKeyError, match="no token key is configured"):
        await Cache(CacheSettings(), clock).get_token("u1", "gs")


def test_key_sources_fail_in_one_sentence(tmp_path: Path, monkeypatch) -> None:
    key_file = tmp_path / "key"
    cases = [
        (CacheSettings(token_key_env=ENV), f"cache.token_key_env names {ENV}, which is not set"),
        (CacheSettings(token_key_file=key_file), "cannot be read (No such file or directory)"),
    ]
    for settings, message in cases:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            Cache(settings, FakeClock())
    key_file.write_text(KEY)
    key_file.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by group or others; run chmod 600"):
        Cache(CacheSettings(token_key_file=key_file), FakeClock())
    monkeypatch.setenv(ENV, "not-a-key")
    with pytest.raises(TokenKeyError, match="is not a Fernet key") as caught:
        Cache(CacheSettings(token_key_env=ENV), FakeClock())
    assert "not-a-key" not in str(caught.value)
    with pytest.raises(ConfigError, match="give one of token_key_env or token_key_file"):
        validate_config({"cache": {"token_key_env": ENV, "token_key_file": "/k"}})


async def test_a_wrong_key_is_one_clear_error(monkeypatch, clock: FakeClock) -> None:
    await save(keyed(monkeypatch), clock)
    wrong = Cache(keyed(monkeypatch, OTHER_KEY), clock)
    with pytest.raises(TokenKeyError) as caught:
        await wrong.get_token("u1", "gs")
    assert str(caught.value) == WRONG_KEY
    with pytest.raises(TokenKeyError):
        await wrong.check_token_key()
    assert FILE.exists()  # not a corrupt entry: nothing is moved aside or dropped
    assert await Cache(keyed(monkeypatch), clock).check_token_key() == 1


async def test_sealed_tokens_without_a_key_are_an_error_not_a_login(monkeypatch, clock: FakeClock) -> None:
    await save(keyed(monkeypatch), clock)
    with pytest.raises(TokenKeyError) as caught:
        await Cache(CacheSettings(), clock).get_token("u1", "gs")
    assert str(caught.value) == NO_KEY


async def test_a_wrong_key_spends_no_captcha(broker, monkeypatch) -> None:
    """The client meets the error before any login: every captcha is precious near the open."""
    services = make_services(broker)
    config = services.config.model_copy(update={"cache": keyed(monkeypatch)})
    await services.aclose()
    await Cache(config.cache, SystemClock()).save_token(
        "u1", "b", broker.token, SystemClock().now() + timedelta(hours=1)
    )
    monkeypatch.setenv(ENV, OTHER_KEY)
    async with Wiring(config, SystemClock(), solver=services.solver) as wrong:
        with pytest.raises(TokenKeyError):
            await wrong.client(config.accounts[0]).get_buying_power(use_cache=False)
    assert broker.hits == {}


async def test_a_plain_token_is_kept_and_sealed_at_once(monkeypatch, clock: FakeClock) -> None:
    await save(CacheSettings(), clock)
    assert TOKEN.encode() in FILE.read_bytes()
    with capture_logs() as logs:
        assert (await Cache(keyed(monkeypatch), clock).get_token("u1", "gs"))["token"] == TOKEN
    assert TOKEN.encode() not in FILE.read_bytes()
    assert [e["event"] for e in logs] == ["cache_token_sealed"] and TOKEN not in str(logs)
    assert (await Cache(keyed(monkeypatch), clock).get_token("u1", "gs"))["token"] == TOKEN


def test_show_redacts_and_reveal_decrypts(monkeypatch, capsys) -> None:
    config = Path("config.yaml")
    config.write_text(yaml.safe_dump({"cache": {"token_key_env": ENV}}))
    asyncio.run(save(keyed(monkeypatch), FakeClock()))
    assert main(["cache", "show", "tokens", "u1_gs", "--config", str(config), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["data"]["token"] == "***" and "fernet:" not in out
    assert main(["cache", "show", "tokens", "u1_gs", "--config", str(config), "--json", "--reveal"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["token"] == TOKEN

    monkeypatch.setenv(ENV, OTHER_KEY)
    assert main(["cache", "show", "tokens", "u1_gs", "--config", str(config), "--reveal"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {WRONG_KEY}\n" and TOKEN not in captured.out + captured.err


def test_warmup_stops_at_the_start_on_a_wrong_key(monkeypatch, capsys) -> None:
    asyncio.run(save(keyed(monkeypatch), FakeClock()))
    config = Path("config.yaml")
    config.write_text(
        yaml.safe_dump(
            {
                "cache": {"token_key_env": ENV},
                "brokers": {"b": {"identity_url": "http://127.0.0.1:9/i", "trading_url": "http://127.0.0.1:9/t"}},
                "accounts": [
                    {
                        "name": "a",
                        "broker": "b",
                        "username": "u1",
                        "password_env": "PW",
                        "orders": [{"isin": "IRO1FOLD0001"}],
                    }
                ],
            }
        )
    )
    monkeypatch.setenv(ENV, OTHER_KEY)
    assert main(["warmup", "--config", str(config)]) == 2
    assert capsys.readouterr().err == f"error: {WRONG_KEY}\n"


def test_keygen_prints_a_key_or_writes_a_private_file(capsys, tmp_path: Path) -> None:
    assert main(["cache", "keygen"]) == 0
    Fernet(capsys.readouterr().out.strip().encode())  # a usable key
    out = tmp_path / "token-key"
    assert main(["cache", "keygen", "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = out.read_text()
    Fernet(key.strip().encode())
    assert key.strip() not in capsys.readouterr().out
    assert main(["cache", "keygen", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == key
