"""Resident memory of a warm daemon: services built, every account warmed, the executor armed.

    python -m bench.memory [--accounts 100,1000]

First `python -m daemon run` itself, on a day squeezed so that it warms up at once and arms soon after
(VmRSS of the service process read from /proc once it logs `executor.armed`). Then, to see where the
memory goes, what such a process holds at 08:44 step by step: a child process builds `Wiring` from a
config pointing at a simulator process, runs the daemon's warmup over every account (tokens from a cache warmed beforehand, so no captcha is solved and
the OCR model is not loaded; buying power and sizes fetched afresh), then arms the `Executor` for an
open five minutes ahead (plans, pre-built requests, one open connection per order, the broker's clock).
It reports VmRSS from /proc/self/status after the imports, after the warmup and once armed, and the
peak (VmHWM); twice per count: as measured, and with the OCR model loaded too (one captcha solved
first), as in a daemon that logged its accounts in itself. Target: under 150 MB at 1000 accounts.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import this checkout, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from bench._race import WARMUP_BATCH, Race, RaceOptions  # noqa: E402
from bench._sim import REPO_ROOT, SimProcess, bench_config, child_env, write_config  # noqa: E402
from daemon.cli.output import print_json, print_table  # noqa: E402

TARGET_MB = 150


def status_mb() -> dict[str, float]:
    """VmRSS and VmHWM of this process, in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


async def armed_daemon(config_path: Path, load_model: bool) -> dict[str, Any]:
    """The child: what a daemon process holds once warm and armed (runs in its own process).

    `load_model`: solve one captcha first, as a daemon that logged its accounts in itself has done,
    so the OCR model (onnxruntime) is resident too."""
    import random

    from daemon.clock import SystemClock
    from daemon.config import load_config
    from daemon.executor import Executor
    from daemon.firing import Journal
    from daemon.logs import configure_logging
    from daemon.sim import render_captcha
    from daemon.warmup import warmup
    from daemon.wiring import Wiring

    configure_logging("error", stream=sys.stderr)
    imported = status_mb()["VmRSS"]
    config = load_config(config_path, require_file=True)
    clock = SystemClock()
    async with Wiring(config, clock) as services:
        if load_model:
            await services.solver.solve(render_captcha("12345", "png", random.Random(1)))
        warmed = []
        for start in range(0, len(config.accounts), WARMUP_BATCH):
            warmed += await warmup(services.clients(config.accounts[start : start + WARMUP_BATCH]), services.clock)
        after_warmup = status_mb()["VmRSS"]
        open_at = (clock.now() + timedelta(minutes=5)).astimezone(config.tz)
        executor = Executor.from_wiring(services, Journal(config.state_dir, open_at.date()), day=open_at.date())
        try:
            plans = await executor.arm(config.accounts, open_at)
            armed = status_mb()
            connected = sum(1 for p in plans if p.conn is not None and p.conn.is_alive())
        finally:
            await executor.aclose()
    return {
        "accounts": len(config.accounts),
        "warm_ok": sum(r.ok for r in warmed),
        "plans": len(plans),
        "connections": connected,
        "rss_imports_mb": imported,
        "rss_warm_mb": after_warmup,
        "rss_armed_mb": armed["VmRSS"],
        "peak_mb": armed["VmHWM"],
        "ocr_model_loaded": "ddddocr" in sys.modules,
    }


def service_rss(snippet: dict[str, Any], cache_dir: Path, state: Path, timeout_s: float = 240) -> dict[str, Any]:
    """`python -m daemon run` itself, on a day squeezed so that it warms up at once and arms a little
    later: its VmRSS read from /proc once it logs `executor.armed` (then it is killed: a bench, not a day)."""
    import json
    import time as _time
    from zoneinfo import ZoneInfo

    from daemon.clock import SystemClock

    now = SystemClock().now()
    offset = 12 - now.hour  # a zone where it is about noon: the squeezed day never crosses midnight
    zone = f"Etc/GMT{-offset:+d}" if offset else "UTC"
    local = now.astimezone(ZoneInfo(zone))
    arm_after_s = 10 + len(snippet["accounts"]) / 50  # time for the warmup first (its tokens are cached)
    schedule = {
        "warmup": f"{local + timedelta(seconds=2):%H:%M:%S}",
        "open": f"{local + timedelta(seconds=arm_after_s + 60):%H:%M:%S}",
        "arm_before_s": 60,
        "window_s": 5,
        "official_holidays": False,
        "trading_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    }
    data = bench_config(snippet, state / "run", cache_dir=cache_dir, extra={"timezone": zone})
    data["schedule"] = schedule
    path = write_config(data, state / "run" / "config.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--config", str(path), "--log-level", "info"],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = _time.monotonic() + timeout_s
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if _time.monotonic() > deadline:
                raise RuntimeError("`daemon run` did not arm in time")
            event = json.loads(line)
            if event.get("event") == "executor.armed":
                fields = {}
                for row in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    name, _, value = row.partition(":")
                    if name in ("VmRSS", "VmHWM"):
                        fields[name] = round(int(value.split()[0]) / 1024, 1)
                return {
                    "measured": "daemon run",
                    "accounts": len(snippet["accounts"]),
                    "plans": event.get("plans"),
                    "rss_armed_mb": fields["VmRSS"],
                    "peak_mb": fields["VmHWM"],
                    "ocr_model_loaded": "no (tokens were cached)",
                }
        raise RuntimeError("`daemon run` ended before it armed")
    finally:
        proc.kill()
        proc.wait()


def measure(accounts: int, workdir: Path) -> list[dict[str, Any]]:
    """Warm a cache for `accounts` accounts, then measure an armed daemon in fresh child processes:
    one that found every token in the cache, one that also has the OCR model loaded."""
    race = Race(accounts, RaceOptions(workdir=workdir))
    asyncio.run(race.warm())
    with SimProcess(accounts) as sim:
        state = workdir / f"n{accounts}" / "memory"
        config = write_config(bench_config(sim.snippet, state, cache_dir=race.cache_dir), state / "config.yaml")
        rows = [service_rss(sim.snippet, race.cache_dir, state)]
        for model in ("", "--ocr-model"):
            child = subprocess.run(
                [sys.executable, "-m", "bench.memory", "--child", str(config), *filter(None, [model])],
                cwd=REPO_ROOT,
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=300,
                stdin=subprocess.DEVNULL,
            )
            if child.returncode != 0:
                raise RuntimeError(f"the measured daemon failed: {child.stderr[-800:]}")
            rows.append(orjson.loads(child.stdout.strip().splitlines()[-1]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="100,1000", help="account counts, comma-separated (default 100,1000)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ocr-model", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.stdout.write(orjson.dumps(asyncio.run(armed_daemon(args.child, args.ocr_model))).decode() + "\n")
        return 0
    try:
        counts = [int(x) for x in args.accounts.split(",") if x.strip()]
    except ValueError:
        parser.error("--accounts takes counts like 100,1000")
    if not counts or not all(1 <= n <= 2000 for n in counts):
        parser.error("keep it bounded: --accounts counts between 1 and 2000")
    from daemon.logs import configure_logging

    configure_logging("error", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
        rows = [row for n in counts for row in measure(n, Path(scratch))]
    if args.json:
        print_json({"runs": rows, "target_mb": TARGET_MB})
    else:
        keys = [
            "measured",
            "accounts",
            "warm_ok",
            "plans",
            "connections",
            "rss_imports_mb",
            "rss_warm_mb",
            "rss_armed_mb",
            "peak_mb",
            "ocr_model_loaded",
        ]
        print_table(keys, [[r.get(k, "armed executor" if k == "measured" else None) for k in keys] for r in rows])
        print(f"target under {TARGET_MB} MB once armed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
