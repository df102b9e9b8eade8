"""Shared fixtures: every test runs in its own directory, with its own cache and a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog

from daemon.clock import FakeClock

if TYPE_CHECKING:
    from daemon.simulator import Simulator

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    0012345601 at shahr (password daemon.simulator.DEFAULT_PASSWORD), market open, on 127.0.0.1."""
    from daemon.simulator import Simulator

    async with Simulator.default(accounts=2, brokers=["gs", "shahr"], clock=clock) as simulator:
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
