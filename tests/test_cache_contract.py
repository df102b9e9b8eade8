"""The cache's contract, one suite run against each backend (files, Redis): types, expiry, the earlier tool's
entries, bad entries, collisions, the memory layer, maintenance, stats. What only one backend does (file
modes and symlinks; Redis keys and TTLs) is tested in test_cache.py and test_cache_redis.py."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from daemon.cache import CacheKeyError, UnknownCacheType
from daemon.clock import FakeClock
from daemon.logs import configure_logging, scrub
from daemon.store import CacheBackend
from tests.cache_stores import TEHRAN, FileStore, RedisStore

ISIN = "IRO1FOLD0001"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.secret-token-value"


@pytest.fixture(params=["file", "redis"])
def store(request: pytest.FixtureRequest, cache_dir: Path) -> Iterator[FileStore | RedisStore]:
    made = FileStore(cache_dir) if request.param == "file" else RedisStore(request.getfixturevalue("redis_url"))
    yield made
    made.close()


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


# --- round trips --------------------------------------------------------------------------------------------

TYPED = [
    ("buying_power", ("u1", "gs"), "buying_power_u1_gs.json", {"buying_power": 12_000_000}),
    ("market", (ISIN,), f"market_data_{ISIN}.json", {"max_price": 1100, "min_price": 900}),
    ("order_params", ("u1", "gs", ISIN), f"order_params_u1_gs_{ISIN}.json", {"price": 1100, "volume": 10}),
    ("holdings", ("u1", "gs", ISIN), f"holdings_u1_gs_{ISIN}.json", {"shares": 500}),
]
HELPERS = {
    "buying_power": "buying_power",
    "market": "market_data",
    "order_params": "order_params",
    "holdings": "holdings",
}


@pytest.mark.parametrize(("type_", "parts", "name", "data"), TYPED, ids=[t[0] for t in TYPED])
async def test_typed_round_trip(store, clock, type_, parts, name, data) -> None:
    cache = store.make_cache(clock)
    await getattr(cache, f"save_{HELPERS[type_]}")(*parts, data)
    assert await getattr(cache, f"get_{HELPERS[type_]}")(*parts) == data

    stored = orjson.loads(store.raw(name))
    assert stored["data"] == data
    assert datetime.fromisoformat(stored["expires_at"]).tzinfo is not None
    assert datetime.fromisoformat(stored["created_at"]) == clock.now()
    # A fresh instance (empty memory layer) reads the same from the store.
    assert await getattr(store.make_cache(clock), f"get_{HELPERS[type_]}")(*parts) == data


async def test_token_round_trip(store, clock: FakeClock) -> None:
    cache = store.make_cache(clock)
    expiry = clock.now() + timedelta(minutes=30)
    await cache.save_token("u1", "gs", TOKEN, expiry, refresh_after=10)
    for reader in (cache, store.make_cache(clock)):
        got = await reader.get_token("u1", "gs")
        assert got == {
            "token": TOKEN,
            "username": "u1",
            "broker_code": "gs",
            "expires_at": expiry.isoformat(),
            "refresh_after": 10,
        }
    stored = orjson.loads(store.raw("token_u1_gs.json"))
    assert (stored["username"], stored["broker_code"]) == ("u1", "gs")
    assert await cache.drop_token("u1", "gs") is True
    assert await cache.get_token("u1", "gs") is None
    assert store.raw("token_u1_gs.json") is None


async def test_aliases_and_unknown_types(store, clock: FakeClock) -> None:
    cache = store.make_cache(clock)
    await cache.set("bp", "u1_gs", {"v": 1})
    assert await cache.get("buying", "u1_gs") == {"v": 1}
    await cache.set("params", "k", {"v": 2})
    assert await cache.get("orders", "k") == {"v": 2}
    with pytest.raises(UnknownCacheType, match="'quotes' is not a cache type; use one of tokens"):
        await cache.get("quotes", "k")


# --- expiry --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "ttl"), [("tokens", 3600), ("market", 300), ("buying_power", 60), ("order_params", 30), ("holdings", 60)]
)
async def test_entries_expire_after_their_ttl(store, clock: FakeClock, type_: str, ttl: int) -> None:
    cache = store.make_cache(clock)
    await cache.set(type_, "k", {"token": "abcd1234"})
    clock.advance(ttl - 0.001)
    assert await cache.get(type_, "k") == {"token": "abcd1234"}
    assert await store.make_cache(clock).get(type_, "k") is not None
    clock.advance(0.001)
    assert await cache.get(type_, "k") is None  # the memory layer honours expiry too
    assert await store.make_cache(clock).get(type_, "k") is None


async def test_ttl_comes_from_config(store, clock: FakeClock) -> None:
    cache = store.make_cache(clock, ttl={"market": 5})
    await cache.save_market_data(ISIN, {"max": 1})
    clock.advance(5)
    assert await cache.get_market_data(ISIN) is None


async def test_explicit_expiry_caps_the_ttl_and_never_extends_it(store, clock: FakeClock) -> None:
    cache = store.make_cache(clock)
    await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(minutes=10))
    await cache.save_token("u2", "gs", TOKEN + "2", clock.now() + timedelta(hours=5))
    await cache.set("market", ISIN, {"max": 1}, expires_at=clock.now() + timedelta(days=1))
    clock.advance(timedelta(minutes=10))
    assert await cache.get_token("u1", "gs") is None
    assert (await cache.get_token("u2", "gs"))["expires_at"] == (
        clock.now() + timedelta(hours=4, minutes=50)
    ).isoformat()
    assert await cache.get_market_data(ISIN) is None  # 5 min TTL, not a day
    clock.advance(timedelta(minutes=50))
    assert await cache.get_token("u2", "gs") is None  # the 1 h TTL, not the token's 5 h


async def test_naive_explicit_expiry_is_refused(store, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.make_cache(clock).save_token("u1", "gs", TOKEN, datetime(2026, 11, 21, 9, 0))


# --- the earlier tool's entries ------------------------------------------------------------------------------


async def test_earlier_tools_flat_token_with_naive_expiry_is_local_time(store) -> None:
    store.put_raw(
        "token_u1_gs.json",
        {
            "token": TOKEN,
            "username": "u1",
            "broker_code": "gs",
            "created_at": "2026-11-21T07:30:00.000001",
            "expires_at": "2026-11-21T08:30:00.123456",
        },
    )
    clock = FakeClock(datetime(2026, 11, 21, 8, 29, tzinfo=TEHRAN))
    got = await store.make_cache(clock).get_token("u1", "gs")
    assert got is not None and got["token"] == TOKEN
    assert datetime.fromisoformat(got["expires_at"]) == datetime(2026, 11, 21, 8, 30, 0, 123456, tzinfo=TEHRAN)
    clock.advance(timedelta(minutes=1, seconds=0.2))
    assert await store.make_cache(clock).get_token("u1", "gs") is None


@pytest.mark.parametrize(
    "expires", ["2026-11-21T08:30:00+03:30", "2026-11-21T05:00:00Z", "2026-11-21T04:59:59.5+00:00"]
)
async def test_timezone_aware_expiry_in_an_entry_is_read(store, expires: str) -> None:
    store.put_raw(f"market_data_{ISIN}.json", {"data": {"max": 7}, "expires_at": expires})
    clock = FakeClock(datetime(2026, 11, 21, 4, 59, 59, tzinfo=UTC))
    assert await store.make_cache(clock).get_market_data(ISIN) == {"max": 7}
    clock.advance(1)
    assert await store.make_cache(clock).get_market_data(ISIN) is None


# --- bad entries are misses, logged once and moved aside ----------------------------------------------------

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
async def test_bad_entries_are_misses_logged_once_and_moved_aside(store, clock: FakeClock, content: bytes) -> None:
    store.put_raw("token_u1_gs.json", content)
    cache = store.make_cache(clock)
    with capture_logs() as logs:
        assert await cache.get_token("u1", "gs") is None
        assert await cache.get_token("u1", "gs") is None
    [warning] = events(logs, "cache_entry_corrupt")
    assert warning["log_level"] == "warning" and warning["file"] == "token_u1_gs.json"
    assert store.raw("token_u1_gs.json") is None
    assert store.corrupt("token_u1_gs.json") == content
    assert TOKEN not in str(logs)


# --- keys and collisions -------------------------------------------------------------------------------------


async def test_colliding_keys_are_told_apart_by_their_identity(store, clock: FakeClock) -> None:
    cache = store.make_cache(clock)
    await cache.save_token("a_b", "c", TOKEN, clock.now() + timedelta(hours=1))
    assert await cache.get_token("a", "b_c") is None
    assert await store.make_cache(clock).get_token("a", "b_c") is None
    await cache.save_buying_power("a", "b_c", {"v": 2})
    await cache.save_buying_power("a_b", "c", {"v": 1})
    assert await cache.get_buying_power("a", "b_c") is None
    assert await store.make_cache(clock).get_buying_power("a_b", "c") == {"v": 1}
    assert [n for n in store.entry_names() if n.startswith("buying")] == ["buying_power_a_b_c.json"]


async def test_entries_without_identity_are_trusted_only_for_unambiguous_keys(store, clock: FakeClock) -> None:
    expires = (clock.now() + timedelta(minutes=1)).isoformat()
    store.put_raw("buying_power_u1_gs.json", {"buying_power": 1, "expires_at": expires})
    store.put_raw("buying_power_a_b_c.json", {"buying_power": 2, "expires_at": expires})
    cache = store.make_cache(clock)
    assert await cache.get_buying_power("u1", "gs") == {"buying_power": 1}
    assert await cache.get_buying_power("a_b", "c") is None
    assert await cache.get_buying_power("a", "b_c") is None


@pytest.mark.parametrize("username", ["../../etc/passwd", "a/b", "..", "/abs", "x\0y", "user name+é%", "u*?[x]"])
async def test_any_username_round_trips_as_one_entry(store, clock: FakeClock, username: str) -> None:
    cache = store.make_cache(clock)
    await cache.save_token(username, "gs", TOKEN, clock.now() + timedelta(hours=1))
    assert len([n for n in store.entry_names() if n.startswith("token_")]) == 1
    assert (await store.make_cache(clock).get_token(username, "gs"))["token"] == TOKEN
    assert [i.key for i in await cache.list("tokens")] == [f"{username}_gs"]


async def test_empty_or_overlong_keys_are_refused(store, clock: FakeClock) -> None:
    cache = store.make_cache(clock)
    with pytest.raises(CacheKeyError, match="cannot be empty"):
        await cache.set("market", "", {})
    with pytest.raises(CacheKeyError, match="too long"):
        await cache.set("market", "x" * 300, {})


# --- the memory layer and a failing store -------------------------------------------------------------------


class _CountingBackend:
    """Any backend, with its reads counted."""

    def __init__(self, inner: CacheBackend) -> None:
        self._inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def read(self, name: str) -> bytes | None:
        self.reads += 1
        return await self._inner.read(name)


async def test_memory_hits_cost_no_store_reads(store, clock: FakeClock) -> None:
    backend = _CountingBackend(store.backend())
    cache = store.make_cache(clock, backend=backend)
    await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(hours=2))
    for _ in range(5):
        assert (await cache.get_token("u1", "gs"))["token"] == TOKEN
    assert backend.reads == 0

    reader = store.make_cache(clock, backend=backend)  # a new process: one read fills its memory
    for _ in range(3):
        assert await reader.get_token("u1", "gs") is not None
    assert backend.reads == 1


async def test_a_failing_store_keeps_values_in_memory_and_logs_once(store, clock: FakeClock, tmp_path: Path) -> None:
    cache = store.make_cache(clock, backend=store.broken_backend(tmp_path))
    with capture_logs() as logs:
        await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(hours=1))
        await cache.save_market_data(ISIN, {"max": 1})
        assert await cache.get_market_data("IRO1NONE0001") is None
        await cache.flush()
        await cache.flush()
    assert (await cache.get_token("u1", "gs"))["token"] == TOKEN
    assert await cache.get_market_data(ISIN) == {"max": 1}
    [error] = events(logs, "cache_write_failed")
    assert error["log_level"] == "error" and TOKEN not in str(logs)
    assert len(events(logs, "cache_stats_flush_failed")) == 1
    await cache.aclose()


# --- maintenance -----------------------------------------------------------------------------------------


async def test_delete_clear_and_clean_report_what_they_removed(store, clock: FakeClock) -> None:
    cache = store.make_cache(clock)
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
    assert store.entry_names() == []


async def test_list_and_show_read_the_store(store, clock: FakeClock) -> None:
    cache = store.make_cache(clock)
    assert await cache.list("tokens") == []
    assert await cache.show("tokens", "u1_gs") is None
    assert store.is_untouched()
    await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(minutes=20))
    await cache.save_token("u2", "gs", TOKEN + "x", clock.now() + timedelta(minutes=5))
    clock.advance(timedelta(minutes=10))
    infos = await store.make_cache(clock).list("tokens")
    assert [(i.key, i.valid) for i in infos] == [("u1_gs", True), ("u2_gs", False)]
    assert infos[0].bytes == len(store.raw("token_u1_gs.json"))
    assert infos[0].data is None
    shown = await store.make_cache(clock).show("tokens", "u2_gs")
    assert shown.data["token"] == TOKEN + "x" and shown.valid is False
    assert shown.identity == {"username": "u2", "broker_code": "gs"}


async def test_stats_add_up_across_instances(store, clock: FakeClock) -> None:
    async with store.make_cache(clock) as first:
        await first.save_market_data(ISIN, {"max": 1})
        await first.get_market_data(ISIN)
        await first.get_market_data(ISIN)
        await first.get_market_data("IRO1NONE0001")
    async with store.make_cache(clock) as second:
        await second.get_market_data(ISIN)
        await second.get_token("u1", "gs")
    stats = await store.make_cache(clock).stats()
    assert stats["market"] | {"soonest_expiry": None} == {
        "entries": 1,
        "valid": 1,
        "expired": 0,
        "hits": 3,
        "misses": 1,
        "hit_rate": 0.75,
        "bytes": len(store.raw(f"market_data_{ISIN}.json")),
        "soonest_expiry": None,
    }
    assert stats["market"]["soonest_expiry"] == clock.now() + timedelta(minutes=5)
    assert (stats["tokens"]["hits"], stats["tokens"]["misses"], stats["tokens"]["hit_rate"]) == (0, 1, 0.0)
    assert stats["holdings"]["hit_rate"] is None


async def test_stats_on_an_empty_store_create_nothing(store, clock: FakeClock) -> None:
    async with store.make_cache(clock) as cache:
        stats = await cache.stats()
    assert set(stats) == {"tokens", "market", "buying_power", "order_params", "holdings"}
    assert all(s["entries"] == 0 and s["hits"] == 0 for s in stats.values())
    assert store.is_untouched()


async def test_unreadable_stats_start_again_from_zero(store, clock: FakeClock) -> None:
    store.spoil_stats()
    async with store.make_cache(clock) as cache:
        await cache.get_market_data(ISIN)
    assert (await store.make_cache(clock).stats())["market"]["misses"] == 1


async def test_a_token_never_reaches_the_logs(store, clock: FakeClock, tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging("debug", stream=stream, json=True)
    store.put_raw("token_u9_gs.json", b'{"token": "legacy-token-9999", "expires_at": 5}')
    cache = store.make_cache(clock)
    await cache.get_token("u9", "gs")
    store.put_raw("token_u8_gs.json", {"token": "legacy-token-8888", "expires_at": "2030-01-01T00:00:00"})
    assert (await cache.get_token("u8", "gs"))["token"] == "legacy-token-8888"
    await cache.save_token("u1", "gs", TOKEN, clock.now() + timedelta(hours=1))
    broken = store.make_cache(clock, backend=store.broken_backend(tmp_path))
    await broken.save_token("u1", "gs", TOKEN, clock.now() + timedelta(hours=1))
    from daemon.logs import get_logger

    get_logger("test").info("leak attempt", detail=f"got {TOKEN} and legacy-token-8888")
    output = stream.getvalue()
    assert "cache_write_failed" in output and "cache_entry_corrupt" in output
    assert TOKEN not in output and "legacy-token" not in output
    assert scrub(f"x {TOKEN} y") == "x *** y"
    await broken.aclose()


async def test_tokens_are_sealed_in_the_store_when_a_key_is_configured(store, clock: FakeClock, monkeypatch) -> None:
    from daemon.store import generate_key

    monkeypatch.setenv("CONTRACT_TOKEN_KEY", generate_key())
    await store.make_cache(clock, token_key_env="CONTRACT_TOKEN_KEY").save_token(
        "u1", "gs", TOKEN, clock.now() + timedelta(hours=1)
    )
    raw = store.raw("token_u1_gs.json")
    assert TOKEN.encode() not in raw
    assert orjson.loads(raw)["data"]["token"].startswith("fernet:")
    reader = store.make_cache(clock, token_key_env="CONTRACT_TOKEN_KEY")
    assert (await reader.get_token("u1", "gs"))["token"] == TOKEN
