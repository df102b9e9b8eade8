"""Resident memory of a warm daemon: services built, every account warmed, the executor armed.

    python -m bench.memory [--accounts 100,1000] [--only logins]

First `python -m daemon run` itself, twice, on a day squeezed so that it warms up at once and arms soon after
(VmRSS of the service process read from /proc once it logs `executor.armed`): once with every token in a cache
warmed beforehand (no captcha solved), once from an empty cache, so that it logs every account in through the
OCR solver (captcha spacing 0.05 s per broker) before it arms; that row also says whether the service process
has the OCR runtime mapped (onnxruntime in /proc/PID/maps) and whether a captcha worker is still running. Then,
to see where the memory goes, what such a process holds at 08:44 step by step: a child process builds `Wiring`
from a config pointing at a simulator process, runs the daemon's warmup over every account (tokens from the warm
cache; buying power and sizes fetched afresh), then arms the `Executor` for an open five minutes ahead (plans,
pre-built requests, one open connection per order, the broker's clock). It reports VmRSS from /proc/self/status
after the imports, after the warmup and once armed, and the peak (VmHWM); twice per count: as measured, and with
one captcha solved through the configured solver first, as in a daemon that logged its accounts in itself.
Targets: under 100 MB armed at 1000 accounts after logging every one in (issue 18), under 150 MB before.
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
LOGINS_TARGET_MB = 100
LOGIN_SPACING_S = 0.05  # per broker's identity service: 3 brokers, 60 captchas a second at most


def status_mb(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM of process `pid` (this one by default), in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


def model_mapped(pid: int | str = "self") -> bool:
    """Whether process `pid` has the OCR runtime (onnxruntime's library) in its memory."""
    return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text()


async def armed_daemon(config_path: Path, load_model: bool) -> dict[str, Any]:
    """The child: what a daemon process holds once warm and armed (runs in its own process).

    `load_model`: solve one captcha first through the configured solver, as a daemon that logged its accounts
    in itself has done (an in-process model would be resident from then on)."""
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
        "ocr_model_loaded": model_mapped(),
    }


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid` (every thread's list: a child belongs to the thread that started it)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def service_rss(
    snippet: dict[str, Any], cache_dir: Path, state: Path, *, logins: bool = False, timeout_s: float = 240
) -> dict[str, Any]:
    """`python -m daemon run` itself, on a day squeezed so that it warms up at once and arms a little
    later: its VmRSS read from /proc once it logs `executor.armed` (then it is killed: a bench, not a day).

    `logins`: `cache_dir` is empty, so the warmup logs every account in through the OCR solver first."""
    import json
    import time as _time
    from zoneinfo import ZoneInfo

    from daemon.clock import SystemClock

    accounts = len(snippet["accounts"])
    now = SystemClock().now()
    offset = 12 - now.hour  # a zone where it is about noon: the squeezed day never crosses midnight
    zone = f"Etc/GMT{-offset:+d}" if offset else "UTC"
    local = now.astimezone(ZoneInfo(zone))
    # time for the warmup first: cached tokens cost a few reads each; a login one OCR read (20-70 ms here) each
    arm_after_s = (10 + accounts * 0.12) if logins else (10 + accounts / 50)
    schedule = {
        "warmup": f"{local + timedelta(seconds=2):%H:%M:%S}",
        "open": f"{local + timedelta(seconds=arm_after_s + 60):%H:%M:%S}",
        "arm_before_s": 60,
        "window_s": 5,
        "official_holidays": False,
        "trading_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    }
    name = "run-logins" if logins else "run"
    data = bench_config(
        snippet, state / name, cache_dir=cache_dir, captcha_spacing_s=LOGIN_SPACING_S, extra={"timezone": zone}
    )
    data["captcha"]["timeout_s"] = 120  # a solve may queue behind hundreds of others (one model reads them)
    data["schedule"] = schedule
    path = write_config(data, state / name / "config.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--config", str(path), "--log-level", "info"],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = _time.monotonic() + timeout_s + arm_after_s
    logged_in = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if _time.monotonic() > deadline:
                raise RuntimeError("`daemon run` did not arm in time")
            event = json.loads(line)
            logged_in += event.get("event") == "login.ok"
            if event.get("event") == "executor.armed":
                fields = status_mb(proc.pid)
                mapped = model_mapped(proc.pid)
                workers = children_of(proc.pid)
                return {
                    "measured": "daemon run, logins" if logins else "daemon run",
                    "accounts": accounts,
                    "logins": logged_in,
                    "plans": event.get("plans"),
                    "rss_armed_mb": fields["VmRSS"],
                    "peak_mb": fields["VmHWM"],
                    "ocr_model_loaded": "yes" if mapped else "no" if logins else "no (tokens were cached)",
                    "worker_running": bool(workers),
                }
        raise RuntimeError("`daemon run` ended before it armed")
    finally:
        proc.kill()
        proc.wait()


def measure(accounts: int, workdir: Path, only: str = "all") -> list[dict[str, Any]]:
    """Warm a cache for `accounts` accounts, then measure an armed daemon in fresh child processes:
    `daemon run` from that cache and from an empty one (every account logged in through OCR), then the
    bare executor that found every token in the cache, and one that also solved a captcha first."""
    state = workdir / f"n{accounts}" / "memory"
    with SimProcess(accounts) as sim:
        rows = [service_rss(sim.snippet, state / "empty-cache", state, logins=True)]
    if only == "logins":
        return rows
    race = Race(accounts, RaceOptions(workdir=workdir))
    asyncio.run(race.warm())
    with SimProcess(accounts) as sim:
        config = write_config(bench_config(sim.snippet, state, cache_dir=race.cache_dir), state / "config.yaml")
        rows.insert(0, service_rss(sim.snippet, race.cache_dir, state))
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
    parser.add_argument(
        "--only", choices=("all", "logins"), default="all", help="logins: only `daemon run` logging every account in"
    )
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
        rows = [row for n in counts for row in measure(n, Path(scratch), args.only)]
    if args.json:
        print_json({"runs": rows, "target_mb": TARGET_MB, "logins_target_mb": LOGINS_TARGET_MB})
    else:
        keys = [
            "measured",
            "accounts",
            "logins",
            "warm_ok",
            "plans",
            "connections",
            "rss_imports_mb",
            "rss_warm_mb",
            "rss_armed_mb",
            "peak_mb",
            "ocr_model_loaded",
            "worker_running",
        ]
        print_table(keys, [[r.get(k, "armed executor" if k == "measured" else None) for k in keys] for r in rows])
        print(
            f"target under {TARGET_MB} MB once armed; under {LOGINS_TARGET_MB} MB armed after logging every account in"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
