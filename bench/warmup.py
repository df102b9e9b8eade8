"""Warmup's wall time against its lower bound: captcha logins spaced per identity host.

    python -m bench.warmup [--accounts 40] [--brokers gs,shahr,bbi,karamad] [--spacing-s 1] [--runs 3]

A simulator process on 127.0.0.1 serves the brokers; the daemon's warmup (`daemon.warmup.warmup`,
the OCR solver, whose model loads on the first solve, inside the timed part; a cold cache each run) logs every account in, reads buying power and limits and sizes
the orders. Captcha fetches to one identity host are spaced `--spacing-s` apart, so a broker with k
accounts needs at least k x spacing: the lower bound printed beside the wall time (target: within
1.2x). Captcha fetches and wrong captchas are counted from the simulator's request log; each misread
costs one more spaced fetch.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import this checkout, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._sim import SimProcess, bench_config, use_sim_password  # noqa: E402
from daemon.cli.output import print_json, print_table  # noqa: E402
from daemon.clock import SystemClock  # noqa: E402
from daemon.config import validate_config  # noqa: E402
from daemon.logs import configure_logging  # noqa: E402
from daemon.warmup import warmup  # noqa: E402
from daemon.wiring import Wiring  # noqa: E402

WRONG_CAPTCHA = -1000


async def one_run(accounts: int, brokers: tuple[str, ...], spacing_s: float, workdir: Path) -> dict[str, Any]:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    clock = SystemClock()
    with SimProcess(accounts, brokers, request_log=workdir / "requests.jsonl", login_limit="150/60") as sim:
        data = bench_config(
            sim.snippet,
            workdir,
            cache_dir=workdir / "cache",
            captcha_spacing_s=spacing_s,
            extra={"client": {"cross_check": True}},
        )
        config = validate_config(data, source="bench config")
        async with Wiring(config, clock) as services:
            started = clock.monotonic_ns()
            results = await warmup(services.clients(config.accounts), services.clock)
            wall_s = (clock.monotonic_ns() - started) / 1e9
    captchas = sim.records("captcha")
    logins = sim.records("login")
    per_broker = Counter(a["broker"] for a in data["accounts"])
    bound_s = max(per_broker.values()) * spacing_s
    return {
        "accounts": accounts,
        "brokers": len(brokers),
        "spacing_s": spacing_s,
        "wall_s": round(wall_s, 3),
        "lower_bound_s": round(bound_s, 3),
        "ratio": round(wall_s / bound_s, 3) if bound_s else None,
        "captcha_fetches": len(captchas),
        "wrong_captchas": sum(r["error_code"] == WRONG_CAPTCHA for r in logins),
        "throttled_429": sum(r["status"] == 429 for r in captchas + logins),
        "ok": sum(r.ok for r in results),
        "failed": sum(not r.ok for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--brokers", default="gs,shahr,bbi,karamad")
    parser.add_argument("--spacing-s", type=float, default=1.0, help="captcha spacing per identity host (default 1)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    brokers = tuple(b.strip() for b in args.brokers.split(",") if b.strip())
    if not (1 <= args.accounts <= 500 and brokers and 0 < args.spacing_s <= 5 and 1 <= args.runs <= 10):
        parser.error("keep it bounded: --accounts 1..500, at least one broker, --spacing-s (0, 5], --runs 1..10")
    if math.ceil(args.accounts / len(brokers)) * 2 > 150:
        parser.error("too many accounts per broker for the simulator's default login limit (150 calls a minute)")
    configure_logging("error", stream=sys.stderr)
    use_sim_password()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-warmup-") as scratch:
        for run in range(1, args.runs + 1):
            rows.append(
                {"run": run, **asyncio.run(one_run(args.accounts, brokers, args.spacing_s, Path(scratch) / str(run)))}
            )
    if args.json:
        print_json({"runs": rows})
    else:
        keys = [
            "run",
            "accounts",
            "brokers",
            "spacing_s",
            "wall_s",
            "lower_bound_s",
            "ratio",
            "captcha_fetches",
            "wrong_captchas",
            "throttled_429",
            "ok",
            "failed",
        ]
        print_table(keys, [[r[k] for k in keys] for r in rows])
        print("lower bound = the most accounts on one broker x the spacing; target: wall time within 1.2x of it")
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
