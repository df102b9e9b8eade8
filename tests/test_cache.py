"""The file backend through the cache's public API: the documented file names, the machine's zone, unreadable
files and symlinks, the directory, modes, a failing disk. The contract both backends share: test_cache_contract.py."""

from __future__ import annotations

import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from structlog.testing import capture_logs

from daemon.cache import Cache
from daemon.clock import FakeClock
from daemon.config import CacheSettings, load_config
from daemon.store import FileBackend

TEHRAN = ZoneInfo("Asia/Tehran")
ISIN = "IRO1FOLD0001"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.secret-token-value"


def make_cache(clock: FakeClock, directory: Path | None = None, **kwargs: Any) -> Cache:
    settings = CacheSettings(dir=directory) if directory else CacheSettings()
    return Cache(settings, clock, local_tz=TEHRAN, **kwargs)


def write_raw(cache_dir: Path, name: str, content: bytes | dict[str, Any]) -> Path:
    cache_dir.mkdir(mode=0o700, exist_ok=True)
    path = cache_dir / name
    path.write_bytes(content if isinstance(content, bytes) else orjson.dumps(content))
    return path


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


# --- isolation: each test has its own cache -----------------------------------------------------------

_FIRST_TEST_WROTE: dict[str, Any] = {}


async def test_isolation_first_test_writes(clock: FakeClock, cache_dir: Path) -> None:
    cache = make_cache(clock)
    await cache.save_market_data(ISIN, {"max": 1})
    _FIRST_TEST_WROTE.update(dir=cache_dir, isin=ISIN)
    assert (cache_dir / f"market_data_{ISIN}.json").exists()


async def test_isolation_second_test_sees_nothing(clock: FakeClock, cache_dir: Path) -> None:
    if not _FIRST_TEST_WROTE:
        pytest.skip("runs after test_isolation_first_test_writes only")
    assert cache_dir != _FIRST_TEST_WROTE["dir"]
    cache = make_cache(clock)
    assert await cache.get_market_data(_FIRST_TEST_WROTE["isin"]) is None
    assert await cache.list("market") == []


# --- the file layout --------------------------------------------------------------------------------------


async def test_each_type_is_stored_in_the_documented_file(clock: FakeClock, cache_dir: Path) -> None:
    cache = make_cache(clock)
    await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(hours=1))
    await cache.save_market_data(ISIN, {"max": 1})
    await cache.save_buying_power("u1", "gs", {"v": 1})
    await cache.save_order_params("u1", "gs", ISIN, {"v": 1})
    await cache.save_holdings("u1", "gs", ISIN, {"v": 1})
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(
        [
            "token_u1_gs.json",
            f"market_data_{ISIN}.json",
            "buying_power_u1_gs.json",
            f"order_params_u1_gs_{ISIN}.json",
            f"holdings_u1_gs_{ISIN}.json",
        ]
    )


# --- the earlier tool's files ------------------------------------------------------------------------------


@pytest.fixture
def machine_in_tehran(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TZ", "Asia/Tehran")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def test_naive_times_default_to_the_machines_zone(machine_in_tehran: None, cache_dir: Path) -> None:
    write_raw(cache_dir, "buying_power_u1_gs.json", {"buying_power": 5, "expires_at": "2026-11-21T08:30:00"})
    cache = Cache(CacheSettings(), FakeClock(datetime(2026, 11, 21, 4, 59, tzinfo=UTC)))  # 08:29 in Tehran
    assert await cache.get_buying_power("u1", "gs") == {"buying_power": 5}
    info = (await cache.list("buying_power"))[0]
    assert info.expires_at == datetime(2026, 11, 21, 5, 0, tzinfo=UTC)


# --- files that are not entries are misses, moved aside (the bytes-level cases: test_cache_contract.py) --------------------------------------------------

GOOD = orjson.dumps({"data": {"token": TOKEN}, "expires_at": "2030-01-01T00:00:00+00:00"})


async def test_an_unreadable_entry_is_a_miss_and_moved_aside(clock: FakeClock, cache_dir: Path) -> None:
    (cache_dir / f"market_data_{ISIN}.json").mkdir(parents=True)  # unreadable as a file even for root
    cache = make_cache(clock)
    with capture_logs() as logs:
        assert await cache.get_market_data(ISIN) is None
    assert len(events(logs, "cache_entry_corrupt")) == 1
    assert (cache_dir / f"market_data_{ISIN}.json.corrupt").is_dir()
    await cache.save_market_data(ISIN, {"max": 1})
    assert await make_cache(clock).get_market_data(ISIN) == {"max": 1}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
async def test_a_file_without_read_permission_is_a_miss(clock: FakeClock, cache_dir: Path) -> None:
    path = write_raw(cache_dir, f"market_data_{ISIN}.json", GOOD)
    path.chmod(0)
    assert await make_cache(clock).get_market_data(ISIN) is None
    assert (cache_dir / f"market_data_{ISIN}.json.corrupt").exists()


class _NoQuarantine(FileBackend):
    async def quarantine(self, name: str) -> str | None:
        raise PermissionError(13, "Permission denied")


async def test_a_corrupt_file_that_cannot_be_moved_is_logged_once(clock: FakeClock, cache_dir: Path) -> None:
    write_raw(cache_dir, "token_u1_gs.json", b"garbage")
    cache = make_cache(clock, backend=_NoQuarantine(cache_dir))
    with capture_logs() as logs:
        for _ in range(3):
            assert await cache.get_token("u1", "gs") is None
    [warning] = events(logs, "cache_entry_corrupt")
    assert warning["moved_to"] is None and warning["move_failed"] == "Permission denied"


async def test_a_symlinked_entry_is_never_followed(clock: FakeClock, cache_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes(GOOD)
    cache_dir.mkdir(mode=0o700)
    link = cache_dir / "token_u1_gs.json"
    link.symlink_to(outside)
    cache = make_cache(clock)
    with capture_logs() as logs:
        assert await cache.get_token("u1", "gs") is None
    assert "symlink" in events(logs, "cache_entry_corrupt")[0]["reason"]

    link.unlink(missing_ok=True)
    (cache_dir / "token_u1_gs.json.corrupt").unlink()
    link.symlink_to(outside)
    await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(hours=1))
    assert outside.read_bytes() == GOOD  # the write replaced the link, not its target
    assert not link.is_symlink() and link.is_file()


# --- keys and the directory -------------------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["../../etc/passwd", "a/b", "..", "/abs", "x\0y", "user name+é%"])
async def test_keys_cannot_escape_or_break_the_directory(
    clock: FakeClock, cache_dir: Path, tmp_path: Path, username: str
) -> None:
    before = {p for p in tmp_path.rglob("*")}
    cache = make_cache(clock)
    await cache.save_token(username, "gs", TOKEN, clock.now() + timedelta(hours=1))
    created = {p for p in tmp_path.rglob("*")} - before
    assert {p.parent for p in created} == {cache_dir.parent, cache_dir} and cache_dir in created
    assert len([p for p in cache_dir.iterdir() if p.name.startswith("token_")]) == 1
    assert (await make_cache(clock).get_token(username, "gs"))["token"] == TOKEN
    assert [i.key for i in await cache.list("tokens")] == [f"{username}_gs"]


async def test_plain_keys_keep_the_earlier_tools_file_names(clock: FakeClock, cache_dir: Path) -> None:
    await make_cache(clock).save_order_params("0012345678", "gs", ISIN, {"v": 1})
    assert (cache_dir / f"order_params_0012345678_gs_{ISIN}.json").exists()


# --- files and directory modes ------------------------------------------------------------------------------


async def test_files_are_0600_in_a_0700_directory(clock: FakeClock, cache_dir: Path) -> None:
    cache = make_cache(clock)
    await cache.save_market_data(ISIN, {"max": 1})
    await cache.get_market_data("IRO1XXXX0001")
    await cache.flush()
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    for path in cache_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


async def test_an_open_directory_is_tightened_and_logged(clock: FakeClock, cache_dir: Path) -> None:
    cache_dir.mkdir()
    cache_dir.chmod(0o755)
    with capture_logs() as logs:
        await make_cache(clock).save_market_data(ISIN, {"max": 1})
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert events(logs, "cache_dir_mode_tightened")[0]["was"] == "0o755"


# --- disk failures ---------------------------------------------------------------------


async def test_a_failing_disk_keeps_values_in_memory_and_logs_once(clock: FakeClock, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    cache = make_cache(clock, directory=blocker / ".cache")
    with capture_logs() as logs:
        await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(hours=1))
        await cache.save_market_data(ISIN, {"max": 1})
        await cache.flush()
    assert (await cache.get_token("u1", "gs"))["token"] == TOKEN
    assert await cache.get_market_data(ISIN) == {"max": 1}
    [error] = events(logs, "cache_write_failed")
    assert error["log_level"] == "error" and TOKEN not in str(logs)

    blocker.unlink()  # the disk works again: the next write lands and says so
    blocker.mkdir()
    with capture_logs() as logs:
        await cache.save_market_data(ISIN, {"max": 2})
        await cache.flush()
    assert events(logs, "cache_write_recovered")
    assert orjson.loads((blocker / ".cache" / f"market_data_{ISIN}.json").read_bytes())["data"] == {"max": 2}
    assert (await make_cache(clock, directory=blocker / ".cache").stats())["market"]["hits"] == 1


# --- configuration -----------------------------------------------------------------------------------------


async def test_from_config_uses_the_configured_directory(clock: FakeClock, tmp_path: Path) -> None:
    config = load_config(environ={"OPENING_BELL__CACHE__DIR": str(tmp_path / "elsewhere")})
    cache = Cache.from_config(config, clock)
    await cache.save_market_data(ISIN, {"max": 1})
    assert (tmp_path / "elsewhere" / f"market_data_{ISIN}.json").exists()
