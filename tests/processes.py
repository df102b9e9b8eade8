"""The daemon as a child process for tests: `python -m daemon ...` importing this checkout's code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def daemon_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment less OPENING_BELL_*, plus `env`, importing this checkout's code first."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENING_BELL")}
    child_env.update(env or {})
    child_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + child_env.get("PYTHONPATH", "")
    return child_env


def run_daemon(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m daemon ARGS` in a child process, importing this checkout's code."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        env=daemon_env(env),
        cwd=cwd or Path.cwd(),
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def start_daemon(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[str]:
    """`python -m daemon ARGS` left running, stdout and stderr piped, for tests that signal it."""
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=daemon_env(env),
        cwd=cwd or Path.cwd(),
    )
