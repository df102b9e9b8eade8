"""The simulator in its own process, and the bench's config pointing at it.

Benchmarks run `python -m daemon simulate` as a child process on 127.0.0.1 (port 0), so its work never
shares the measured process's event loop. The child prints its base URL and the config snippet; the
request log it writes (`--request-log`) stamps each request's first byte on the host clock, which is
what arrival times are read from. A fresh child with the same `--seed` signs tokens with the same key,
so one warm cache serves every simulator a benchmark starts.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import yaml

from daemon.cli.simulate import SNIPPET_END, SNIPPET_START
from daemon.sim_config import sim_config_data
from daemon.simulator import DEFAULT_PASSWORD, PASSWORD_ENV

REPO_ROOT = Path(__file__).resolve().parent.parent
TEHRAN = ZoneInfo("Asia/Tehran")
BENCH_SEED = 7
START_TIMEOUT_S = 60.0


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child that must import this checkout (not an installed copy)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENING_BELL")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env[PASSWORD_ENV] = DEFAULT_PASSWORD
    env.update(extra or {})
    return env


def use_sim_password() -> None:
    """The simulated accounts' password for this process's clients (the config names the variable)."""
    os.environ[PASSWORD_ENV] = DEFAULT_PASSWORD


@dataclass
class Arrival:
    """One NewOrder request as the simulator saw it."""

    username: str
    time_ns: int  # host wall clock at the request's first byte
    status: int | None
    error_code: int | None


@dataclass
class SimProcess:
    """`python -m daemon simulate` in a child process; a context manager. `open_at` None: open at once."""

    accounts: int
    brokers: tuple[str, ...] = ("gs", "shahr", "bbi")
    open_at: datetime | None = None
    request_log: Path | None = None
    login_limit: str = "100000/60"
    seed: int = BENCH_SEED
    max_seconds: float = 600.0  # the child is ended after this, even if its parent died
    base_url: str = ""
    snippet: dict[str, Any] = field(default_factory=dict)
    _process: subprocess.Popen[str] | None = None
    _stderr: Any = None

    def argv(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "daemon",
            "simulate",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--accounts",
            str(self.accounts),
            "--brokers",
            ",".join(self.brokers),
            "--seed",
            str(self.seed),
            "--login-limit",
            self.login_limit,
            "--log-level",
            "warning",
        ]
        if self.open_at is not None:
            args += ["--open-at", open_at_text(self.open_at)]
        if self.request_log is not None:
            args += ["--request-log", str(self.request_log)]
        return args

    def __enter__(self) -> SimProcess:
        # `timeout` bounds the child's life: it is ended even if this process dies without cleaning up.
        argv = ["timeout", "--signal=TERM", str(int(math.ceil(self.max_seconds))), *self.argv()]
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty child can never block on it
        self._process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            stderr=self._stderr,
            text=True,
            env=child_env(),
            cwd=REPO_ROOT,
        )
        try:
            self._read_announcement()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _read_announcement(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        lines: list[str] = []
        inside = False
        for line in _bounded_lines(self._process.stdout, limit=20_000):
            if line.startswith("Simulated ") and " at http" in line:  # one platform's brokers, or several
                self.base_url = line.split(" at ", 1)[1].split(" ", 1)[0]
            if line.startswith(SNIPPET_END):
                break
            if inside:
                lines.append(line)
            inside = inside or line.startswith(SNIPPET_START)
        else:
            self._stderr.seek(0)
            said = self._stderr.read().decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"the simulator did not start: {' / '.join(said) or 'no message'}")
        self.snippet = yaml.safe_load("".join(lines))

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        self._stderr.close()
        process.send_signal(signal.SIGTERM)  # `timeout` passes it on; the simulator flushes its log
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def records(self, route: str | None = None) -> list[dict[str, Any]]:
        """The simulator's request log (complete once it stopped), optionally one route's records."""
        if self.request_log is None or not self.request_log.exists():
            return []
        records = [orjson.loads(line) for line in self.request_log.read_bytes().splitlines() if line.strip()]
        return [r for r in records if route is None or r.get("route") == route]

    def new_orders(self) -> list[Arrival]:
        """Every NewOrder the simulator logged for a known account."""
        return [
            Arrival(r["username"], r["time_ns"], r["status"], r["error_code"])
            for r in self.records("new_order")
            if r.get("username")
        ]


def _bounded_lines(stream: Any, limit: int) -> Iterator[str]:
    for _ in range(limit):
        line = stream.readline()
        if not line:
            return
        yield line


def open_at_text(when: datetime) -> str:
    """The simulator's --open-at: Tehran wall time today, to the microsecond."""
    local = when.astimezone(TEHRAN)
    return local.strftime("%H:%M:%S.%f")


def bench_config(
    snippet: dict[str, Any],
    workdir: Path,
    *,
    cache_dir: Path,
    captcha_spacing_s: float = 0.0,
    clock_source: str = "none",
    window_s: float = 5.0,
    final_check_s: float = 5.0,
    realtime: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A config for the simulator in `snippet`: private state dir, shared cache, TTLs long enough that a
    cache warmed at the start of the benchmark still serves its last contender; `realtime` None keeps the
    executor's default (auto)."""
    data = sim_config_data(
        snippet,
        state_dir=workdir / "state",
        cache_dir=cache_dir,
        cache={"ttl": {"market": 3600, "buying_power": 3600, "order_params": 3600, "holdings": 3600}},
        captcha={"solver": "ocr", "spacing_s": captcha_spacing_s},
        executor={
            "clock_source": clock_source,
            "final_check_s": final_check_s,
            **({"realtime": realtime} if realtime else {}),
        },
        schedule={"window_s": window_s},
        client={"cross_check": False, "timeout_s": 30},
    )
    data.update(extra or {})  # whole sections: `extra` replaces what the bench set, it does not merge
    return data


def write_config(data: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    path.chmod(0o600)
    return path
