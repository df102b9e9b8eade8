"""`python -m daemon cache ...`: every action in both output modes, confirmation, redaction, bad input."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.cache import Cache
from daemon.cli import main
from daemon.clock import SystemClock
from daemon.config import CacheSettings
from tests.processes import run_daemon

ISIN = "IRO1FOLD0001"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.cli-secret-token"


def seed(directory: Path = Path(".cache")) -> None:
    """A token, a market entry and one expired buying power entry (in the earlier tool's flat form)."""

    async def fill() -> None:
        async with Cache(CacheSettings(dir=directory), SystemClock()) as cache:
            await cache.save_token("u1", "gs", TOKEN, SystemClock().now() + timedelta(minutes=30))
            await cache.save_market_data(ISIN, {"max_price": 1100})
            await cache.get_market_data(ISIN)
            await cache.get_buying_power("u1", "gs")

    asyncio.run(fill())
    (directory / "buying_power_u2_gs.json").write_bytes(
        orjson.dumps({"buying_power": 5, "username": "u2", "broker_code": "gs", "expires_at": "2020-01-01T08:00:00"})
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_stats_on_a_missing_cache_prints_json_and_creates_nothing(capsys, cache_dir: Path) -> None:
    stats = run_json(capsys, "cache", "stats")
    assert stats["dir"] == ".cache"
    assert stats["types"]["tokens"] == {
        "entries": 0,
        "valid": 0,
        "expired": 0,
        "hits": 0,
        "misses": 0,
        "hit_rate": None,
        "bytes": 0,
        "soonest_expiry": None,
    }
    code, out, _ = run(capsys, "cache", "stats")
    assert code == 0 and out.splitlines()[0].split() == [
        "type",
        "entries",
        "valid",
        "expired",
        "hits",
        "misses",
        "hit",
        "rate",
        "bytes",
        "soonest",
        "expiry",
    ]
    assert not cache_dir.exists()


def test_stats_both_modes(capsys) -> None:
    seed()
    stats = run_json(capsys, "cache", "stats")["types"]
    assert (stats["market"]["entries"], stats["market"]["hits"], stats["market"]["hit_rate"]) == (1, 1, 1.0)
    assert (stats["buying_power"]["expired"], stats["buying_power"]["misses"]) == (1, 1)
    assert stats["tokens"]["soonest_expiry"] is not None
    code, out, _ = run(capsys, "cache", "stats")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["market"][1:7] == ["1", "1", "0", "1", "0", "100.0%"]
    assert rows["buying_power"][1:7] == ["1", "0", "1", "0", "1", "0.0%"]
    assert rows["holdings"][-1] == "-"


def test_list_both_modes(capsys) -> None:
    seed()
    listed = run_json(capsys, "cache", "list", "bp")
    assert [(e["key"], e["valid"], e["identity"]) for e in listed] == [
        ("u2_gs", False, {"username": "u2", "broker_code": "gs"})
    ]
    assert "data" not in listed[0]
    code, out, _ = run(capsys, "cache", "list", "tokens")
    assert code == 0 and out.splitlines()[2].split()[0] == "u1_gs" and "yes" in out
    assert TOKEN not in out
    code, out, _ = run(capsys, "cache", "list", "holdings")
    assert (code, out) == (0, "No holdings entries in .cache.\n")
    assert run_json(capsys, "cache", "list", "holdings") == []


def test_show_redacts_the_token_unless_revealed(capsys) -> None:
    seed()
    shown = run_json(capsys, "cache", "show", "tokens", "u1_gs")
    assert shown["data"]["token"] == "***" and shown["data"]["username"] == "u1" and shown["valid"] is True
    code, out, _ = run(capsys, "cache", "show", "tokens", "u1_gs")
    assert code == 0 and TOKEN not in out and "data.token        ***" in out
    assert run_json(capsys, "cache", "show", "tokens", "u1_gs", "--reveal")["data"]["token"] == TOKEN
    code, out, _ = run(capsys, "cache", "show", "tokens", "u1_gs", "--reveal")
    assert TOKEN in out


def test_show_market_both_modes(capsys) -> None:
    seed()
    assert run_json(capsys, "cache", "show", "market", ISIN)["data"] == {"max_price": 1100}
    code, out, _ = run(capsys, "cache", "show", "market", ISIN)
    rows = [line.split() for line in out.splitlines()]
    assert code == 0 and ["data.max_price", "1100"] in rows and ["isin", ISIN] in rows and ["valid", "yes"] in rows


def test_clean_both_modes(capsys) -> None:
    seed()
    code, out, _ = run(capsys, "cache", "clean")
    assert (code, out) == (0, "Removed 1 expired entry from .cache.\n")
    assert run_json(capsys, "cache", "clean") == {"removed": 0, "dir": ".cache"}


def test_clear_one_type_both_modes(capsys) -> None:
    seed()
    code, out, _ = run(capsys, "cache", "clear", "market")
    assert (code, out) == (0, "Removed 1 market entry from .cache.\n")
    assert run_json(capsys, "cache", "clear", "buying") == {"removed": 1, "dir": ".cache", "type": "buying_power"}
    assert run_json(capsys, "cache", "list", "tokens") != []


def test_clear_everything_needs_yes_when_not_at_a_terminal(capsys, monkeypatch, cache_dir: Path) -> None:
    seed()
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    code, out, err = run(capsys, "cache", "clear")
    assert code == 2 and out == ""
    assert (
        err == "error: cache clear without a type removes every entry; add --yes to do that when not at a terminal.\n"
    )
    assert run_json(capsys, "cache", "clear", "--yes") == {"removed": 3, "dir": ".cache", "type": None}
    assert [p for p in cache_dir.glob("*.json") if p.name != "stats.json"] == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code", "left"), [("y\n", 0, 0), ("n\n", 1, 3), ("", 1, 3)])
def test_clear_everything_asks_at_a_terminal(capsys, monkeypatch, cache_dir: Path, answer, code, left) -> None:
    seed()
    monkeypatch.setattr("sys.stdin", _Terminal(answer))
    got, out, _ = run(capsys, "cache", "clear")
    assert got == code
    assert out.startswith("Remove every cache entry in .cache? [y/N] ")
    assert out.endswith("Removed 3 entries from .cache.\n" if code == 0 else "Nothing removed.\n")
    assert len([p for p in cache_dir.glob("*.json") if p.name != "stats.json"]) == left


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "quotes"],
        ["show", "quotes", "k"],
        ["clear", "quotes"],
        ["list", "quotes", "--json"],
    ],
)
def test_an_unknown_type_is_one_sentence(capsys, argv: list[str]) -> None:
    code, out, err = run(capsys, "cache", *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: 'quotes' is not a cache type; use one of tokens, market, buying_power")
    assert err.count("\n") == 1


def test_an_unknown_key_is_one_sentence(capsys) -> None:
    code, out, err = run(capsys, "cache", "show", "tokens", "../../etc/passwd")
    assert (code, out) == (2, "")
    assert err == (
        "error: there is no tokens entry with key '../../etc/passwd' in .cache; `cache list tokens` shows the keys.\n"
    )


def test_the_config_names_the_cache_directory(capsys, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    seed(elsewhere)
    Path("my.yaml").write_text(f"cache:\n  dir: {elsewhere}\n")
    assert run_json(capsys, "cache", "stats", "--config", "my.yaml")["types"]["tokens"]["entries"] == 1
    assert run_json(capsys, "--config", "my.yaml", "cache", "list", "tokens")[0]["key"] == "u1_gs"
    code, _, err = run(capsys, "cache", "stats", "--config", "missing.yaml")
    assert code == 2 and "missing.yaml not found" in err


def test_in_a_child_process(cache_dir: Path) -> None:
    empty = run_daemon("cache", "stats", "--json")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["types"]["market"]["entries"] == 0
    assert not cache_dir.exists()
    seed()
    shown = run_daemon("cache", "show", "tokens", "u1_gs")
    assert shown.returncode == 0 and "***" in shown.stdout
    assert TOKEN not in shown.stdout + shown.stderr
    refused = run_daemon("cache", "clear")
    assert refused.returncode == 2 and "add --yes" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["stats"],
        ["stats", "--json"],
        ["clear", "--yes"],
        ["clear", "tokens"],
        ["clean"],
        ["list", "tokens"],
        ["show", "tokens", "u1_gs"],
    ],
)
def test_a_file_as_the_cache_directory_is_the_sentence_warmup_gives(capsys, argv: list[str]) -> None:
    Path("blocker").write_text("not a directory")
    Path("c.yaml").write_text("cache:\n  dir: blocker\n")
    assert run(capsys, "warmup", "--config", "c.yaml") == (
        2,
        "",
        "error: cache.dir blocker is not a directory; point cache.dir at a directory.\n",
    )
    assert run(capsys, "cache", *argv, "--config", "c.yaml") == (
        2,
        "",
        "error: cache.dir blocker is not a directory; point cache.dir at a directory.\n",
    )
    assert Path("blocker").read_text() == "not a directory"


def test_a_file_as_the_cache_directory_in_a_child_process() -> None:
    Path("blocker").write_text("not a directory")
    for argv in (["stats"], ["clear", "--yes"]):
        result = run_daemon("cache", *argv, env={"OPENING_BELL__CACHE__DIR": "blocker"})
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == "error: cache.dir blocker is not a directory; point cache.dir at a directory.\n"
