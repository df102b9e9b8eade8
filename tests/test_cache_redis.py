"""What only the Redis backend does: its keys, Redis's own expiry, the group-wide counters, the CLI on Redis,
and what a user sees when Redis or its client library is missing."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
import redis
import yaml

from daemon.cache import Cache
from daemon.cli import main
from daemon.clock import FakeClock, SystemClock
from daemon.config import CacheSettings, load_config
from daemon.errors import ConfigError, UserError
from daemon.logs import scrub
from daemon.store import RedisBackend, redact_url
from daemon.store import _redis as cache_redis

ISIN = "IRO1FOLD0001"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.redis-secret-token"


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def redis_cache(url: str, clock, **fields) -> Cache:
    return Cache(CacheSettings(backend="redis", redis_url=url, **fields), clock)


async def test_entries_live_under_opening_bell_type_key_with_redis_ttl(redis_url, r, clock: FakeClock) -> None:
    async with redis_cache(redis_url, clock) as cache:
        await cache.save_token("0012345678", "gs", TOKEN, clock.now() + timedelta(minutes=20))
        await cache.save_market_data(ISIN, {"max": 1})
        await cache.save_order_params("u/1", "gs", ISIN, {"v": 1})
    assert sorted(k.decode() for k in r.keys("opening-bell:*")) == [
        "opening-bell:market:IRO1FOLD0001",
        "opening-bell:order_params:u/1_gs_IRO1FOLD0001",
        "opening-bell:tokens:0012345678_gs",
    ]
    assert 19 * 60_000 < r.pttl("opening-bell:tokens:0012345678_gs") <= 20 * 60_000  # the token's own expiry
    assert 299_000 < r.pttl(f"opening-bell:market:{ISIN}") <= 300_000  # the type's TTL


async def test_redis_itself_expires_entries(redis_url, r) -> None:
    clock = FakeClock()  # never moves: only Redis can make the entry go
    cache = redis_cache(redis_url, clock, ttl={"market": 0.2})
    await cache.save_market_data(ISIN, {"max": 1})
    assert r.exists(f"opening-bell:market:{ISIN}")
    deadline = time.monotonic() + 5
    while r.exists(f"opening-bell:market:{ISIN}") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # Redis's expiry runs on its own clock
    assert not r.exists(f"opening-bell:market:{ISIN}")
    assert await redis_cache(redis_url, clock).get_market_data(ISIN) is None
    assert await cache.list("market") == []
    await cache.aclose()


async def test_counters_are_one_hash_every_process_adds_to(redis_url, r, clock: FakeClock) -> None:
    for _ in range(3):  # three processes, each with its own hits and misses
        async with redis_cache(redis_url, clock) as cache:
            await cache.save_market_data(ISIN, {"max": 1})
            await cache.get_market_data(ISIN)
            await cache.get_token("u1", "gs")
    assert r.hgetall("opening-bell:stats") == {
        b"market:hits": b"3",
        b"market:misses": b"0",
        b"tokens:hits": b"0",
        b"tokens:misses": b"3",
    }


async def test_a_corrupt_entry_is_kept_aside_for_a_day(redis_url, r, clock: FakeClock) -> None:
    r.set("opening-bell:tokens:u1_gs", b"garbage")
    assert await redis_cache(redis_url, clock).get_token("u1", "gs") is None
    assert r.get("opening-bell:corrupt:tokens:u1_gs") == b"garbage"
    assert 0 < r.ttl("opening-bell:corrupt:tokens:u1_gs") <= 86400


def test_the_cache_cli_works_on_redis_and_shows_the_whole_group(redis_url, tmp_path, capsys) -> None:
    async def fill() -> None:
        for _ in range(2):
            async with redis_cache(redis_url, SystemClock()) as cache:
                await cache.save_token("u1", "gs", TOKEN, SystemClock().now() + timedelta(minutes=30))
                await cache.get_token("u1", "gs")

    asyncio.run(fill())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"cache": {"backend": "redis", "redis_url": redis_url}}))
    assert main(["--config", str(config), "cache", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["dir"] == redis_url
    assert stats["types"]["tokens"] | {"soonest_expiry": None, "bytes": 0} == {
        "entries": 1,
        "valid": 1,
        "expired": 0,
        "hits": 2,
        "misses": 0,
        "hit_rate": 1.0,
        "bytes": 0,
        "soonest_expiry": None,
    }
    assert main(["--config", str(config), "cache", "list", "tokens", "--json"]) == 0
    assert [e["key"] for e in json.loads(capsys.readouterr().out)] == ["u1_gs"]
    assert main(["--config", str(config), "cache", "show", "tokens", "u1_gs"]) == 0
    assert TOKEN not in capsys.readouterr().out
    assert main(["--config", str(config), "cache", "clear", "tokens", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1


def test_an_unreachable_redis_is_one_sentence_in_the_cli(tmp_path, capsys) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"cache": {"backend": "redis", "redis_url": f"redis://127.0.0.1:{port}/0"}, "group": {"enabled": True}}
        )
    )
    assert main(["--config", str(config), "group"]) == 2
    err = capsys.readouterr().err
    assert f"cannot read the group: redis at redis://127.0.0.1:{port}/0" in err and "Traceback" not in err


def test_the_password_in_the_url_is_never_shown() -> None:
    url = "redis://:s3cret-pw@127.0.0.1:6390/0"
    backend = RedisBackend(url)
    assert backend.location == "redis://:***@127.0.0.1:6390/0" == redact_url(url)
    assert scrub(f"failed at {url}") == "failed at redis://:***@127.0.0.1:6390/0"
    assert redact_url("redis://127.0.0.1/0") == "redis://127.0.0.1/0"


def test_without_the_redis_library_the_user_is_told_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(cache_redis, "aioredis", None)
    with pytest.raises(UserError, match=r"pip install 'opening-bell\[redis\]'"):
        Cache(CacheSettings(backend="redis", redis_url="redis://127.0.0.1/0"), SystemClock())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cache": {"backend": "redis"}}, "backend redis needs cache.redis_url"),
        ({"cache": {"backend": "redis", "redis_url": "http://x"}}, "give a URL like redis://"),
        ({"group": {"enabled": True}}, "group.enabled needs cache.backend redis"),
        ({"group": {"lease_ttl_s": 4, "heartbeat_s": 3}}, "heartbeat_s must be at most half of lease_ttl_s"),
        ({"cache": {"backend": "memcached"}}, "cache.backend"),
    ],
)
def test_bad_settings_are_one_sentence(tmp_path, data, message) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_config(config)
