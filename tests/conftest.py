"""Shared fixtures: every test runs in its own directory, with its own cache and a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from daemon.clock import FakeClock

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


def run_daemon(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m daemon ARGS` in a child process, importing this checkout's code."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENING_BELL")}
    child_env.update(env or {})
    child_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + child_env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True, text=True, env=child_env, cwd=cwd or Path.cwd(), timeout=timeout, input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
