"""Shared fixtures: every test runs in its own directory, with its own cache and a clean environment.

Helpers live in modules (daemon.testing, tests/simhelp.py, tests/processes.py), never imported from here."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import hypothesis
import pytest
import structlog

from daemon.clock import FakeClock
from daemon.testing import SIM_SEED, LoopClock, running_simulator, sim_settings

if TYPE_CHECKING:
    from daemon.simulator import Simulator

# Property tests draw the same examples every run (no test may fail by chance, nor pass by it);
# HYPOTHESIS_PROFILE=explore draws new ones, for a hunt by hand.
hypothesis.settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis.settings.register_profile("explore", derandomize=False)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (so the default `.cache` is this test's own) and no OPENING_BELL_* variables."""
    for name in list(os.environ):
        if name.startswith("OPENING_BELL") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


@pytest.fixture(autouse=True)
def reset_logging() -> object:
    """A CLI test points structlog at its captured stderr, which is closed afterwards: start each test afresh."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def cache_dir(isolated: Path) -> Path:
    return isolated / ".cache"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Simulator]:
    """The one running simulator of a test (daemon.testing.running_simulator): on 127.0.0.1, seeded with SIM_SEED,
    its password exported; by default on the `clock` fixture, the default instruments, market open, account
    0012345600 at gs and 0012345601 at shahr (password daemon.simulator.DEFAULT_PASSWORD). A module or test asks
    for another with `pytest.mark.sim(accounts=12, brokers=("gs", "shahr", "bbi"), real_time=True, seed=1205)`:
    `real_time` puts it on the system clock, `loop_time` on a `LoopClock` (the loop's own time: with
    `pytest.mark.looptime` a whole open runs in fake time; `daemon_clock(sim)` is the same clock for the daemon)."""
    options = dict(marker.kwargs) if (marker := request.node.get_closest_marker("sim")) else {}
    real_time = options.pop("real_time", False)
    loop_time = options.pop("loop_time", False)
    seed = options.pop("seed", SIM_SEED)
    chosen = LoopClock() if loop_time else None if real_time else clock
    async with running_simulator(settings=sim_settings(seed=seed), clock=chosen, **options) as simulator:
        yield simulator


# ---- Redis: OPENING_BELL_TEST_REDIS (as .ci/run sets), else a private redis-server, else skip (never in CI) ----

REDIS_ENV = "OPENING_BELL_TEST_REDIS"
_GIVEN_REDIS = os.environ.get(REDIS_ENV)  # read now: the `isolated` fixture removes OPENING_BELL_* per test


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A Redis URL for tests; its database is flushed before each test that uses `redis_url`."""
    if _GIVEN_REDIS:
        yield _GIVEN_REDIS
        return
    binary = shutil.which("redis-server")
    if binary is None:
        reason = f"no Redis for the Redis tests: set {REDIS_ENV}=redis://HOST:PORT/DB or install redis-server"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run them: .ci/run installs and starts redis-server)")
        pytest.skip(reason)
    with _private_redis(binary) as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The test Redis, emptied: every test starts from no keys."""
    import redis

    client = redis.Redis.from_url(redis_server)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server


@contextlib.contextmanager
def _private_redis(binary: str) -> Iterator[str]:
    """redis-server on a free loopback port (it cannot take port 0), no persistence, gone afterwards."""
    import redis

    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)  # polling for the server to listen, with a deadline
        else:
            process.kill()
            process.wait()
            continue  # the port was taken in between, or it died: try another
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=10)
        return
    raise RuntimeError("redis-server did not start on a loopback port")
