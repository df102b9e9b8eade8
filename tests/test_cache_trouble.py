"""The cache directory deleted, replaced, read-only or full in the middle of the morning.

Through the client and warmup against the simulator: the daemon keeps what it has in memory, logs one
error (not one per call), warms up every account without a new login, and writes again once it can.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.simulator import Simulator
from daemon.testing import SimulatorSolver, daemon_clock
from daemon.warmup import warmup
from daemon.wiring import Wiring
from tests.simhelp import sim_config

pytestmark = [pytest.mark.sim(accounts=3, brokers=("gs", "shahr", "bbi"), loop_time=True), pytest.mark.looptime]


def replace_by_a_file(directory: Path, monkeypatch) -> None:
    shutil.rmtree(directory)
    directory.write_text("someone put a file here")


def read_only(directory: Path, monkeypatch) -> None:
    """A read-only filesystem (root ignores modes, and a read-only bind mount needs privileges): EROFS."""
    real_mkstemp = __import__("tempfile").mkstemp

    def refuse(*args: Any, **kwargs: Any):
        if Path(kwargs.get("dir", "")) == directory:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr("daemon.store._files.tempfile.mkstemp", refuse)
    monkeypatch.setattr("daemon.store._files.os.open", _refusing_writes(directory, os.open))


def _refusing_writes(directory: Path, real_open):
    def opener(path, flags, *args):
        if Path(path).parent == directory and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(path, flags, *args)

    return opener


def disk_full(directory: Path, monkeypatch) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("daemon.store._files.os.fsync", no_space)


def chmod_0500(directory: Path, monkeypatch) -> None:
    directory.chmod(0o500)


def errors(logs: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in logs if e["log_level"] == "error"]


def logins(sim: Simulator) -> int:
    return len(sim.request_log.records(route="login"))


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(replace_by_a_file, id="replaced by a file"),
        pytest.param(read_only, id="read-only filesystem"),
        pytest.param(disk_full, id="disk full"),
        pytest.param(
            chmod_0500,
            id="chmod 0500",
            marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a 0500 directory anyway"),
        ),
    ],
)
async def test_writes_failing_mid_morning_keep_memory_and_log_once(sim, isolated: Path, monkeypatch, break_it) -> None:
    config = sim_config(sim)
    directory = isolated / ".cache"
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        assert all(r.ok for r in await warmup(services.clients(config.accounts), services.clock))
        before = logins(sim)
        break_it(directory, monkeypatch)
        with capture_logs() as logs:
            results = await warmup(services.clients(config.accounts), services.clock)
            await warmup(services.clients(config.accounts), services.clock)
            await services.cache.get_market_data("IRO1XXXX0001")  # a miss that goes to the broken store
            await services.cache.stats()
            await services.cache.flush()
        assert all(r.ok for r in results), [r.error for r in results]
        assert logins(sim) == before  # the tokens were still in memory: no captcha spent
    assert errors(logs).count("cache_write_failed") == 1
    assert set(errors(logs)) <= {"cache_write_failed", "cache_read_failed", "cache_stats_flush_failed"}
    assert len(errors(logs)) == len(set(errors(logs)))  # each said once
    assert not [e for e in logs if e["event"] == "cache_entry_corrupt"]
    assert "sim-pass" not in str(logs)


async def test_the_directory_deleted_is_made_again(sim, isolated: Path) -> None:
    config = sim_config(sim)
    directory = isolated / ".cache"
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        assert all(r.ok for r in await warmup(services.clients(config.accounts), services.clock))
        before = logins(sim)
        shutil.rmtree(directory)
        with capture_logs() as logs:
            assert all(r.ok for r in await warmup(services.clients(config.accounts), services.clock))
        assert logins(sim) == before
    assert errors(logs) == [] and [e for e in logs if e["event"] == "cache_dir_recreated"]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert len(list(directory.glob("token_*.json"))) == 3  # memory was written back: a restart needs no login


async def test_writes_land_again_once_the_directory_is_back(sim, isolated: Path, monkeypatch) -> None:
    config = sim_config(sim)
    directory = isolated / ".cache"
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        assert all(r.ok for r in await warmup(services.clients(config.accounts), services.clock))
        replace_by_a_file(directory, monkeypatch)
        await warmup(services.clients(config.accounts), services.clock)
        directory.unlink()
        with capture_logs() as logs:
            assert all(r.ok for r in await warmup(services.clients(config.accounts), services.clock))
    assert "cache_write_recovered" in [e["event"] for e in logs]
    assert len(list(directory.glob("buying_power_*.json"))) == 3
    assert len(list(directory.glob("token_*.json"))) == 3  # written back from memory, not by new logins
