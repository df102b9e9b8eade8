"""Shared fixtures: every test runs in its own directory, with its own cache and a clean environment."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import hypothesis
import pytest
import structlog

from daemon.clock import FakeClock

if TYPE_CHECKING:
    from daemon.simulator import Simulator

REPO_ROOT = Path(__file__).resolve().parent.parent

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
async def sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    """A running simulated market on the fake clock: the default instruments, account 0012345600 at gs and
    0012345601 at shahr (password daemon.simulator.DEFAULT_PASSWORD), market open, on 127.0.0.1, seeded
    (tests.simhelp.SIM_SEED) so its fault draws, captchas and serials are the same in every run."""
    from daemon.simulator import Simulator
    from tests.simhelp import sim_settings

    simulator = Simulator.default(accounts=2, brokers=["gs", "shahr"], clock=clock, settings=sim_settings())
    async with simulator:
        yield simulator


def daemon_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment less OPENING_BELL_*, plus `env`, importing this checkout's code first."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENING_BELL")}
    child_env.update(env or {})
    child_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + child_env.get("PYTHONPATH", "")
    return child_env


def run_daemon(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m daemon ARGS` in a child process, importing this checkout's code."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True, text=True, env=daemon_env(env), cwd=cwd or Path.cwd(), timeout=timeout, input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def start_daemon(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[str]:
    """`python -m daemon ARGS` left running, stdout and stderr piped, for tests that signal it."""
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=daemon_env(env), cwd=cwd or Path.cwd(),
    )


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
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
