"""One login per account across processes sharing a Redis cache: the lock itself, and two `warmup` processes
racing for one account's token against the simulator, judged by its request log."""

from __future__ import annotations

import asyncio
import sys

import pytest
import yaml

from daemon.client import NoLoginLock
from daemon.config import CacheSettings
from daemon.sim.ephoenix import OK
from daemon.simulator import PASSWORD_ENV, Simulator
from daemon.store import RedisBackend
from daemon.wiring import Wiring
from tests.processes import daemon_env
from tests.simhelp import sim_config, sim_config_data, sim_settings


async def test_holders_of_one_account_key_never_overlap_and_other_keys_do_not_wait(redis_url) -> None:
    backend = RedisBackend(redis_url)
    locks = [backend.login_lock(), RedisBackend(redis_url).login_lock()]  # as two processes
    inside: list[str] = []
    overlaps = 0

    async def login(n: int, key: str) -> None:
        nonlocal overlaps
        async with locks[n % 2].hold(key):
            inside.append(key)
            overlaps += inside.count(key) > 1
            for _ in range(5):
                await asyncio.sleep(0)  # let the others run while this one "logs in"
            inside.remove(key)

    await asyncio.gather(*(login(n, "u1_gs") for n in range(6)))
    assert overlaps == 0
    async with locks[0].hold("u1_gs"):
        await asyncio.wait_for(login(1, "u2_gs"), 5)  # another account is not held up
    await backend.aclose()


async def test_a_holder_keeps_the_lock_past_its_ttl_by_renewing_it(redis_url) -> None:
    backend = RedisBackend(redis_url)
    first, second = backend.login_lock(), RedisBackend(redis_url).login_lock()
    first._ttl_s = second._ttl_s = 0.3
    order: list[str] = []
    held = asyncio.Event()

    async def slow_login() -> None:
        async with first.hold("u1_gs"):
            held.set()
            await asyncio.sleep(1.0)  # a login (captcha, throttling) longer than the lock's ttl
            order.append("first done")

    async def waiter() -> None:
        await held.wait()
        async with second.hold("u1_gs"):
            order.append("second in")

    await asyncio.gather(slow_login(), waiter())
    assert order == ["first done", "second in"]
    await backend.aclose()


async def test_services_take_the_lock_from_a_redis_cache_and_none_from_files(redis_url, monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "sim-pass")
    async with Simulator.default(accounts=1, brokers=["gs"], settings=sim_settings()) as sim:
        on_files = Wiring(sim_config(sim), sim.clock)
        on_redis = Wiring(sim_config(sim, cache={"backend": "redis", "redis_url": redis_url}), sim.clock)
        try:
            assert isinstance(on_files.login_lock, NoLoginLock)
            assert type(on_redis.login_lock).__name__ == "RedisLoginLock"
            assert on_redis.client(on_redis.config.accounts[0])._shared_lock is on_redis.login_lock
        finally:
            await on_files.aclose()
            await on_redis.aclose()
    assert CacheSettings().backend == "file"


@pytest.mark.slow
async def test_two_processes_racing_to_refresh_one_token_log_in_once(tmp_path, redis_url) -> None:
    pytest.importorskip("ddddocr")
    async with Simulator.default(accounts=1, brokers=["gs"], settings=sim_settings()) as sim:
        sim.add_fault("login:delay_ms=1500")  # a slow login: the second process asks while the first is at it
        data = sim_config_data(sim, cache={"backend": "redis", "redis_url": redis_url}, client={"cross_check": False})
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(data, allow_unicode=True))
        account = data["accounts"][0]["name"]
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "daemon",
                "warmup",
                "--config",
                str(config),
                "--accounts",
                account,
                "--json",
                env=daemon_env({PASSWORD_ENV: "sim-pass"}),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        async with asyncio.timeout(60):
            results = [await p.communicate() for p in procs]
        for proc, (_out, err) in zip(procs, results):
            assert proc.returncode == 0, err.decode()[-2000:]
        logins = [r for r in sim.request_log.records(route="login") if r.error_code == OK]
        assert len(logins) == 1
        assert len(sim.request_log.records(route="tradingbook")) == 2  # both warmed up, on the one token
