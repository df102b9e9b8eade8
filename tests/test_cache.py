"""The cache through its public API: types, expiry, the earlier tool's files, bad files, collisions, stats."""

from __future__ import annotations

import io
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

from daemon.cache import Cache, CacheKeyError, UnknownCacheType
from daemon.cache_store import FileBackend
from daemon.clock import FakeClock
from daemon.config import CacheSettings, load_config
from daemon.logs import configure_logging, scrub

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


# --- round trips and the file layout --------------------------------------------------------------------

TYPED = [
    ("buying_power", ("u1", "gs"), "buying_power_u1_gs.json", {"buying_power": 12_000_000}),
    ("market", (ISIN,), f"market_data_{ISIN}.json", {"max_price": 1100, "min_price": 900}),
    ("order_params", ("u1", "gs", ISIN), f"order_params_u1_gs_{ISIN}.json", {"price": 1100, "volume": 10}),
    ("holdings", ("u1", "gs", ISIN), f"holdings_u1_gs_{ISIN}.json", {"shares": 500}),
]
HELPERS = {"buying_power": "buying_power", "market": "market_data", "order_params": "order_params", "holdings": "holdings"}


@pytest.mark.parametrize(("type_", "parts", "file", "data"), TYPED, ids=[t[0] for t in TYPED])
async def test_typed_round_trip_uses_the_documented_file(clock, cache_dir, type_, parts, file, data) -> None:
    cache = make_cache(clock)
    await getattr(cache, f"save_{HELPERS[type_]}")(*parts, data)
    assert await getattr(cache, f"get_{HELPERS[type_]}")(*parts) == data

    stored = orjson.loads((cache_dir / file).read_bytes())
    assert stored["data"] == data
    assert datetime.fromisoformat(stored["expires_at"]).tzinfo is not None
    assert datetime.fromisoformat(stored["created_at"]) == clock.now()
    # A fresh instance (empty memory layer) reads the same from disk.
    assert await getattr(make_cache(clock), f"get_{HELPERS[type_]}")(*parts) == data


async def test_token_round_trip(clock: FakeClock, cache_dir: Path) -> None:
    cache = make_cache(clock)
    expiry = clock.now() + timedelta(minutes=30)
    await cache.save_token("u1", "gs", TOKEN, expiry, refresh_after=10)
    for reader in (cache, make_cache(clock)):
        got = await reader.get_token("u1", "gs")
        assert got == {
            "token": TOKEN, "username": "u1", "broker_code": "gs", "expires_at": expiry.isoformat(), "refresh_after": 10,
        }
    stored = orjson.loads((cache_dir / "token_u1_gs.json").read_bytes())
    assert (stored["username"], stored["broker_code"]) == ("u1", "gs")
    assert await cache.drop_token("u1", "gs") is True
    assert await cache.get_token("u1", "gs") is None
    assert not (cache_dir / "token_u1_gs.json").exists()


async def test_aliases_and_unknown_types(clock: FakeClock) -> None:
    cache = make_cache(clock)
    await cache.set("bp", "u1_gs", {"v": 1})
    assert await cache.get("buying", "u1_gs") == {"v": 1}
    await cache.set("params", "k", {"v": 2})
    assert await cache.get("orders", "k") == {"v": 2}
    with pytest.raises(UnknownCacheType, match="'quotes' is not a cache type; use one of tokens"):
        await cache.get("quotes", "k")


# --- expiry --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("type_", "ttl"), [("tokens", 3600), ("market", 300), ("buying_power", 60),
                                             ("order_params", 30), ("holdings", 60)])
async def test_entries_expire_after_their_ttl(clock: FakeClock, type_: str, ttl: int) -> None:
    cache = make_cache(clock)
    await cache.set(type_, "k", {"token": "abcd1234"})
    clock.advance(ttl - 0.001)
    assert await cache.get(type_, "k") == {"token": "abcd1234"}
    assert await make_cache(clock).get(type_, "k") is not None
    clock.advance(0.001)
    assert await cache.get(type_, "k") is None  # the memory layer honours expiry too
    assert await make_cache(clock).get(type_, "k") is None


async def test_ttl_comes_from_config(clock: FakeClock, cache_dir: Path) -> None:
    cache = Cache(CacheSettings(ttl={"market": 5}), clock)
    await cache.save_market_data(ISIN, {"max": 1})
    clock.advance(5)
    assert await cache.get_market_data(ISIN) is None


async def test_explicit_expiry_caps_the_ttl_and_never_extends_it(clock: FakeClock) -> None:
    cache = make_cache(clock)
    await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(minutes=10))
    await cache.save_token("u2", "gs", TOKEN + "2", clock.now() + timedelta(hours=5))
    await cache.set("market", ISIN, {"max": 1}, expires_at=clock.now() + timedelta(days=1))
    clock.advance(timedelta(minutes=10))
    assert await cache.get_token("u1", "gs") is None
    assert (await cache.get_token("u2", "gs"))["expires_at"] == (clock.now() + timedelta(hours=4, minutes=50)).isoformat()
    assert await cache.get_market_data(ISIN) is None  # 5 min TTL, not a day
    clock.advance(timedelta(minutes=50))
    assert await cache.get_token("u2", "gs") is None  # the 1 h TTL, not the token's 5 h


async def test_naive_explicit_expiry_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await make_cache(clock).save_token("u1", "gs", TOKEN, datetime(2026, 11, 21, 9, 0))


# --- the earlier tool's files ------------------------------------------------------------------------------


async def test_earlier_tools_flat_token_with_naive_expiry_is_local_time(cache_dir: Path) -> None:
    write_raw(cache_dir, "token_u1_gs.json", {
        "token": TOKEN, "username": "u1", "broker_code": "gs",
        "created_at": "2026-11-21T07:30:00.000001", "expires_at": "2026-11-21T08:30:00.123456",
    })
    clock = FakeClock(datetime(2026, 11, 21, 8, 29, tzinfo=TEHRAN))
    got = await make_cache(clock).get_token("u1", "gs")
    assert got is not None and got["token"] == TOKEN
    assert datetime.fromisoformat(got["expires_at"]) == datetime(2026, 11, 21, 8, 30, 0, 123456, tzinfo=TEHRAN)
    clock.advance(timedelta(minutes=1, seconds=0.2))
    assert await make_cache(clock).get_token("u1", "gs") is None


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


@pytest.mark.parametrize("expires", ["2026-11-21T08:30:00+03:30", "2026-11-21T05:00:00Z", "2026-11-21T04:59:59.5+00:00"])
async def test_timezone_aware_expiry_in_a_file_is_read(cache_dir: Path, expires: str) -> None:
    write_raw(cache_dir, f"market_data_{ISIN}.json", {"data": {"max": 7}, "expires_at": expires})
    clock = FakeClock(datetime(2026, 11, 21, 4, 59, 59, tzinfo=UTC))
    assert await make_cache(clock).get_market_data(ISIN) == {"max": 7}
    clock.advance(1)
    assert await make_cache(clock).get_market_data(ISIN) is None


# --- bad files are misses, logged once and moved aside --------------------------------------------------

GOOD = orjson.dumps({"data": {"token": TOKEN}, "expires_at": "2030-01-01T00:00:00+00:00"})
BAD = {
    "not_json": b"{this is not json",
    "truncated": GOOD[: len(GOOD) // 2],
    "empty": b"",
    "binary": b"\x00\xff\xfe garbage",
    "a_list": b"[1, 2, 3]",
    "no_expires_at": b'{"data": {"token": "abcd"}}',
    "bad_expires_at": b'{"data": {"token": "abcd"}, "expires_at": "tomorrow morning"}',
    "expires_at_number": b'{"data": {"token": "abcd"}, "expires_at": 1767225600}',
    "no_token": b'{"data": {"user": "x"}, "expires_at": "2030-01-01T00:00:00+00:00"}',
    "identity_not_text": b'{"data": {"token": "abcd"}, "username": ["u"], "expires_at": "2030-01-01T00:00:00+00:00"}',
}


@pytest.mark.parametrize("content", BAD.values(), ids=BAD.keys())
async def test_bad_files_are_misses_logged_once_and_moved_aside(clock: FakeClock, cache_dir: Path, content: bytes) -> None:
    path = write_raw(cache_dir, "token_u1_gs.json", content)
    cache = make_cache(clock)
    with capture_logs() as logs:
        assert await cache.get_token("u1", "gs") is None
        assert await cache.get_token("u1", "gs") is None
    [warning] = events(logs, "cache_entry_corrupt")
    assert warning["log_level"] == "warning" and warning["file"] == "token_u1_gs.json"
    assert not path.exists()
    assert (cache_dir / "token_u1_gs.json.corrupt").read_bytes() == content
    assert TOKEN not in str(logs)


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


# --- keys and collisions -------------------------------------------------------------------------------------


async def test_colliding_keys_are_told_apart_by_their_identity(clock: FakeClock, cache_dir: Path) -> None:
    cache = make_cache(clock)
    await cache.save_token("a_b", "c", TOKEN, clock.now() + timedelta(hours=1))
    assert await cache.get_token("a", "b_c") is None
    assert await make_cache(clock).get_token("a", "b_c") is None
    await cache.save_buying_power("a", "b_c", {"v": 2})
    await cache.save_buying_power("a_b", "c", {"v": 1})
    assert await cache.get_buying_power("a", "b_c") is None
    assert await make_cache(clock).get_buying_power("a_b", "c") == {"v": 1}
    assert [p.name for p in cache_dir.iterdir() if p.name.startswith("buying")] == ["buying_power_a_b_c.json"]


async def test_entries_without_identity_are_trusted_only_for_unambiguous_keys(clock: FakeClock, cache_dir: Path) -> None:
    expires = (clock.now() + timedelta(minutes=1)).isoformat()
    write_raw(cache_dir, "buying_power_u1_gs.json", {"buying_power": 1, "expires_at": expires})
    write_raw(cache_dir, "buying_power_a_b_c.json", {"buying_power": 2, "expires_at": expires})
    cache = make_cache(clock)
    assert await cache.get_buying_power("u1", "gs") == {"buying_power": 1}
    assert await cache.get_buying_power("a_b", "c") is None
    assert await cache.get_buying_power("a", "b_c") is None


@pytest.mark.parametrize("username", ["../../etc/passwd", "a/b", "..", "/abs", "x\0y", "user name+é%"])
async def test_keys_cannot_escape_or_break_the_directory(clock: FakeClock, cache_dir: Path, tmp_path: Path,
                                                          username: str) -> None:
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


async def test_empty_or_overlong_keys_are_refused(clock: FakeClock) -> None:
    cache = make_cache(clock)
    with pytest.raises(CacheKeyError, match="cannot be empty"):
        await cache.set("market", "", {})
    with pytest.raises(CacheKeyError, match="too long"):
        await cache.set("market", "x" * 300, {})


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


# --- the memory layer and disk failures ---------------------------------------------------------------------


class _CountingBackend(FileBackend):
    reads = 0

    async def read(self, name: str) -> bytes | None:
        self.reads += 1
        return await super().read(name)


async def test_memory_hits_cost_no_disk_reads(clock: FakeClock, cache_dir: Path) -> None:
    backend = _CountingBackend(cache_dir)
    cache = make_cache(clock, backend=backend)
    await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(hours=2))
    for _ in range(5):
        assert (await cache.get_token("u1", "gs"))["token"] == TOKEN
    assert backend.reads == 0

    reader = make_cache(clock, backend=backend)  # a new process: one read fills its memory
    for _ in range(3):
        assert await reader.get_token("u1", "gs") is not None
    assert backend.reads == 1


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


# --- maintenance -----------------------------------------------------------------------------------------


async def test_delete_clear_and_clean_report_what_they_removed(clock: FakeClock, cache_dir: Path) -> None:
    cache = make_cache(clock)
    await cache.save_market_data(ISIN, {"max": 1})
    await cache.save_buying_power("u1", "gs", {"v": 1})
    await cache.save_buying_power("u2", "gs", {"v": 2})
    await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(hours=1))
    clock.advance(61)
    assert await cache.clean_expired() == 2  # the two buying power entries
    assert await cache.clean_expired() == 0
    assert await cache.delete("market", ISIN) is True
    assert await cache.delete("market", ISIN) is False
    await cache.save_holdings("u1", "gs", ISIN, {"shares": 1})
    assert await cache.clear("holdings") == 1
    assert await cache.get_holdings("u1", "gs", ISIN) is None
    assert await cache.get_token("u1", "gs") is not None
    assert await cache.clear() == 1
    assert await cache.get_token("u1", "gs") is None
    assert sorted(p.name for p in cache_dir.iterdir()) == []


async def test_list_and_show_read_the_real_directory(clock: FakeClock, cache_dir: Path) -> None:
    cache = make_cache(clock)
    assert await cache.list("tokens") == []
    assert await cache.show("tokens", "u1_gs") is None
    assert not cache_dir.exists()
    await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(minutes=20))
    await cache.save_token("u2", "gs", TOKEN + "x", clock.now() + timedelta(minutes=5))
    clock.advance(timedelta(minutes=10))
    infos = await make_cache(clock).list("tokens")
    assert [(i.key, i.valid) for i in infos] == [("u1_gs", True), ("u2_gs", False)]
    assert infos[0].bytes == (cache_dir / "token_u1_gs.json").stat().st_size
    assert infos[0].data is None
    shown = await make_cache(clock).show("tokens", "u2_gs")
    assert shown.data["token"] == TOKEN + "x" and shown.valid is False
    assert shown.identity == {"username": "u2", "broker_code": "gs"}


async def test_stats_add_up_across_instances(clock: FakeClock, cache_dir: Path) -> None:
    async with make_cache(clock) as first:
        await first.save_market_data(ISIN, {"max": 1})
        await first.get_market_data(ISIN)
        await first.get_market_data(ISIN)
        await first.get_market_data("IRO1NONE0001")
    async with make_cache(clock) as second:
        await second.get_market_data(ISIN)
        await second.get_token("u1", "gs")
    stats = await make_cache(clock).stats()
    assert stats["market"] | {"soonest_expiry": None} == {
        "entries": 1, "valid": 1, "expired": 0, "hits": 3, "misses": 1, "hit_rate": 0.75,
        "bytes": (cache_dir / f"market_data_{ISIN}.json").stat().st_size, "soonest_expiry": None,
    }
    assert stats["market"]["soonest_expiry"] == clock.now() + timedelta(minutes=5)
    assert (stats["tokens"]["hits"], stats["tokens"]["misses"], stats["tokens"]["hit_rate"]) == (0, 1, 0.0)
    assert stats["holdings"]["hit_rate"] is None


async def test_stats_on_a_missing_directory_create_nothing(clock: FakeClock, cache_dir: Path) -> None:
    async with make_cache(clock) as cache:
        stats = await cache.stats()
    assert set(stats) == {"tokens", "market", "buying_power", "order_params", "holdings"}
    assert all(s["entries"] == 0 and s["hits"] == 0 for s in stats.values())
    assert not cache_dir.exists()


async def test_unreadable_stats_start_again_from_zero(clock: FakeClock, cache_dir: Path) -> None:
    write_raw(cache_dir, "stats.json", b"{oops")
    async with make_cache(clock) as cache:
        await cache.get_market_data(ISIN)
    assert (await make_cache(clock).stats())["market"]["misses"] == 1


async def test_from_config_uses_the_configured_directory(clock: FakeClock, tmp_path: Path) -> None:
    config = load_config(environ={"OPENING_BELL__CACHE__DIR": str(tmp_path / "elsewhere")})
    cache = Cache.from_config(config, clock)
    await cache.save_market_data(ISIN, {"max": 1})
    assert (tmp_path / "elsewhere" / f"market_data_{ISIN}.json").exists()


async def test_a_token_never_reaches_the_logs(clock: FakeClock, cache_dir: Path, tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging("debug", stream=stream, json=True)
    write_raw(cache_dir, "token_u9_gs.json", b'{"token": "legacy-token-9999", "expires_at": 5}')
    cache = make_cache(clock, directory=cache_dir)
    await cache.get_token("u9", "gs")
    write_raw(cache_dir, "token_u8_gs.json", {"token": "legacy-token-8888", "expires_at": "2030-01-01T00:00:00"})
    assert (await cache.get_token("u8", "gs"))["token"] == "legacy-token-8888"
    await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(hours=1))
    (tmp_path / "blocked").write_text("")
    broken = make_cache(clock, directory=tmp_path / "blocked" / "c")
    await broken.save_token("u1", "gs", TOKEN, clock.now() + timedelta(hours=1))
    from daemon.logs import get_logger

    get_logger("test").info("leak attempt", detail=f"got {TOKEN} and legacy-token-8888")
    output = stream.getvalue()
    assert "cache_write_failed" in output and "cache_entry_corrupt" in output
    assert TOKEN not in output and "legacy-token" not in output
    assert scrub(f"x {TOKEN} y") == "x *** y"
