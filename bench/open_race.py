"""The open race: the daemon's executor against the raw limit and against Locust, on the simulator.

    python -m bench.open_race --accounts 10,100,1000 [--runs 3] [--contenders locust,daemon,raw]

For each account count N: one simulator process (seed fixed, login limit raised) and one warmup log
every account in with the OCR solver into a shared cache; then each contender gets a fresh simulator
process (same seed, so the cached tokens hold) opening at its own instant a few seconds ahead:

  locust  started at the open instant, as users did before (`-u N -r N`, bounded `-t`)
  daemon  the executor armed `--arm-lead-s` before the open (a minute in production), final check, fire
  raw     pre-opened sockets and pre-built bytes, one write per account in one loop at the instant

Printed per contender: first-order arrival after the open at the simulator (p50, p99, max; its own
first-byte stamps), on the wire (p50, p99, max: when each account's first request left the client's TCP
stack, the kernel's stamps from a loopback capture; daemon and raw), spread (max - min), dispatch (the instant -> the last account's first write;
Locust's from its users' first request times), NewOrder requests per account, accepted orders,
self-caused 1018 rejections; then the ratios daemon/raw and locust/daemon, and the first send after the
planned instant over every open (the journal's stamps, and the first segment on the wire after the open).
`--realtime on,off` runs the daemon both ways in each run (`daemon rt=on`, `daemon rt=off`); `--raw-realtime`
the same for the raw loop (default off: normal priority). JSON and a PNG of the
arrival CDFs go to `--out` (default bench/results/). Only 127.0.0.1 is used; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import this checkout, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._race import CONTENDERS, Race, RaceOptions, locust_binary, ratios  # noqa: E402
from bench._raw import pct  # noqa: E402
from bench._sim import REPO_ROOT  # noqa: E402
from daemon.cli.output import print_json, print_table  # noqa: E402
from daemon.clock import SystemClock  # noqa: E402
from daemon.logs import configure_logging  # noqa: E402

COLUMNS = [
    ("arrived", "arrived"),
    ("arrival_ms_p50", "arrival p50 ms"),
    ("arrival_ms_p99", "p99"),
    ("arrival_ms_max", "max"),
    ("wired", "wired"),
    ("wire_ms_p50", "on the wire p50 ms"),
    ("wire_ms_p99", "p99"),
    ("wire_ms_max", "max"),
    ("spread_ms", "spread ms"),
    ("dispatch_ms", "dispatch ms"),
    ("first_send_error_ms", "first send ms"),
    ("requests_per_account_mean", "req/account"),
    ("requests_per_account_max", "max"),
    ("accepted", "accepted"),
    ("duplicates", "dup"),
    ("rejected_1018", "1018s"),
    ("final_check_s", "check s"),
]
RANGE_KEYS = [
    "arrival_ms_p50",
    "arrival_ms_p99",
    "arrival_ms_max",
    "wire_ms_p50",
    "wire_ms_p99",
    "wire_ms_max",
    "wire_first_ms",
    "spread_ms",
    "dispatch_ms",
    "first_send_error_ms",
    "requests_per_account_mean",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--accounts", default="10,100,1000", help="account counts, comma-separated (default 10,100,1000)"
    )
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="any of locust,daemon,raw (default all)")
    parser.add_argument("--runs", type=int, default=1, help="opens per contender and count (default 1, at most 30)")
    parser.add_argument(
        "--realtime",
        default="auto",
        metavar="MODE[,MODE]",
        help="the daemon's executor.realtime: auto, on or off; two or three (e.g. on,off) run the daemon once per "
        "mode in each run, side by side (default auto, the daemon's)",
    )
    parser.add_argument(
        "--raw-realtime",
        default="off",
        metavar="MODE[,MODE]",
        help="the same for the raw loop (default off: normal priority); with --realtime on,off too, each daemon "
        "is compared with the raw loop of its own mode",
    )
    parser.add_argument(
        "--arm-lead-s",
        type=float,
        default=10.0,
        help="arm the executor this long before the open (default 10; the daemon uses 60)",
    )
    parser.add_argument(
        "--final-check-s",
        type=float,
        default=5.0,
        help="the executor's final check starts this long before the instant (default 5, the daemon's)",
    )
    parser.add_argument("--locust-time-s", type=float, default=3.0, help="Locust's -t, in seconds (default 3)")
    parser.add_argument(
        "--clock-source",
        choices=["none", "date", "timestamp"],
        default="none",
        help="the executor's broker clock; the simulator runs on this host's clock (default none)",
    )
    parser.add_argument(
        "--brokers",
        default="gs,shahr,bbi",
        metavar="CODE[:PLATFORM],...",
        help="the simulator's brokers, accounts spread over them in turn (default gs,shahr,bbi; e.g. "
        "gs,khobregan:exir for as many Ephoenix as Exir accounts: the daemon's figures then come per platform)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep caches, configs and logs here (reused: a warm cache stays warm)"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results", help="where JSON and PNG go")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    try:
        args.counts = [int(x) for x in args.accounts.split(",") if x.strip()]
    except ValueError:
        parser.error("--accounts takes counts like 10,100,1000")
    args.contender_list = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if not args.counts or not all(1 <= n <= 2000 for n in args.counts):
        parser.error("keep it bounded: --accounts counts between 1 and 2000")
    if not args.contender_list or set(args.contender_list) - set(CONTENDERS):
        parser.error(f"--contenders takes any of {','.join(CONTENDERS)}")
    args.realtime_modes = list(dict.fromkeys(m.strip() for m in args.realtime.split(",") if m.strip()))
    args.raw_realtime_modes = list(dict.fromkeys(m.strip() for m in args.raw_realtime.split(",") if m.strip()))
    for modes, flag in ((args.realtime_modes, "--realtime"), (args.raw_realtime_modes, "--raw-realtime")):
        if not modes or set(modes) - {"auto", "on", "off"}:
            parser.error(f"{flag} takes auto, on or off, or several of them like on,off")
    if not (
        1 <= args.runs <= 30
        and 3 <= args.arm_lead_s <= 120
        and 1 <= args.locust_time_s <= 60
        and 0.5 <= args.final_check_s < args.arm_lead_s
    ):
        parser.error(
            "keep it bounded: --runs 1..30, --arm-lead-s 3..120, --locust-time-s 1..60, "
            "--final-check-s from 0.5 to below --arm-lead-s"
        )
    others = any(":" in b and not b.strip().endswith(":ephoenix") for b in args.brokers.split(","))
    if others and set(args.contender_list) - {"daemon"}:
        parser.error(
            "with brokers on other platforms only the daemon contends (--contenders daemon): Locust speaks "
            "Ephoenix only, and the raw loop cannot log in, while a fresh simulator process holds no Exir session"
        )
    if "locust" in args.contender_list and locust_binary() is None:
        parser.error("locust is not installed (pip install '.[bench]'); leave it out with --contenders daemon,raw")
    variants = {"daemon": args.realtime_modes, "raw": args.raw_realtime_modes}
    args.contender_list = [  # a contender run in several modes: once per mode, in its place
        v
        for c in args.contender_list
        for v in ([f"{c} rt={m}" for m in variants[c]] if len(variants.get(c, ())) > 1 else [c])
    ]
    return args


async def race(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    options = RaceOptions(
        workdir=workdir,
        arm_lead_s=args.arm_lead_s,
        locust_time_s=args.locust_time_s,
        clock_source=args.clock_source,
        final_check_s=args.final_check_s,
        brokers=tuple(b.strip() for b in args.brokers.split(",") if b.strip()),
        realtime=args.realtime_modes[0] if len(args.realtime_modes) == 1 else None,
        raw_realtime=args.raw_realtime_modes[0] if len(args.raw_realtime_modes) == 1 else "off",
    )
    clock = SystemClock()
    machine_at_start = machine()
    runs: list[dict[str, Any]] = []
    warmups: dict[str, float] = {}
    for n in args.counts:
        contest = Race(n, options, clock)
        warmups[str(n)] = round(await contest.warm(), 2)
        print(f"N={n}: warm cache in {warmups[str(n)]} s", file=sys.stderr, flush=True)
        for run in range(1, args.runs + 1):
            order = args.contender_list[run - 1 :] + args.contender_list[: run - 1]  # rotate: drift hits all alike
            outcomes = [await contest.run(name) for name in order]
            outcomes.sort(key=lambda o: args.contender_list.index(o.contender))
            runs.append(
                {"run": run, "accounts": n, "outcomes": [o.to_dict() for o in outcomes], "ratios": ratios(outcomes)}
            )
            print(
                f"N={n} run {run}: "
                + ", ".join(f"{o.contender} max {o.summary()['arrival_ms_max']} ms" for o in outcomes),
                file=sys.stderr,
                flush=True,
            )
    return {
        "machine": {**machine_at_start, "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "options": {
            "arm_lead_s": args.arm_lead_s,
            "locust_time_s": args.locust_time_s,
            "clock_source": args.clock_source,
            "final_check_s": args.final_check_s,
            "runs": args.runs,
            "realtime": args.realtime_modes,
            "raw_realtime": args.raw_realtime_modes,
        },
        "warmup_s": warmups,
        "runs": runs,
        "ranges": ranges(runs),
        "first_send": first_send_over_opens(runs),
    }


def first_send_over_opens(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per account count and contender, over every open: the first send after the planned instant (the contender's
    own stamps: the daemon's journal, the raw loop's clock reads) and the first segment on the wire after the
    open, p50 / p99 / max in ms (nearest rank: p99 of fewer than 100 opens is the largest); `late_starts` counts
    the daemon's opens whose arm and final check ended after the instant (a loaded machine), which count too."""
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for run in runs:
        for outcome in run["outcomes"]:
            grouped.setdefault((run["accounts"], outcome["contender"]), []).append(outcome)
    out = []
    for (n, contender), rows in grouped.items():
        late = sum((r.get("phases_s") or {}).get("ready_ahead", 0) < 0 for r in rows)
        row: dict[str, Any] = {"accounts": n, "contender": contender, "opens": len(rows), "late_starts": late}
        for key in ("first_send_error_ms", "wire_first_ms"):
            values = [r[key] for r in rows if r.get(key) is not None]
            for p in (50, 99):
                row[f"{key}_p{p}"] = pct(values, p) if values else None
            row[f"{key}_max"] = max(values, default=None)
        out.append(row)
    return out


def ranges(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per account count and contender: [min, max] of each figure over the runs (machines are noisy)."""
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = {}
    ratio_groups: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        ratio_groups.setdefault(run["accounts"], []).append(run["ratios"])
        for outcome in run["outcomes"]:
            grouped.setdefault((run["accounts"], outcome["contender"]), []).append(outcome)
    out = []
    for (n, contender), rows in grouped.items():
        out.append({"accounts": n, "contender": contender, **{k: _span([r.get(k) for r in rows]) for k in RANGE_KEYS}})
    for n, rows in ratio_groups.items():
        out.append({"accounts": n, "contender": "ratios", **{k: _span([r[k] for r in rows]) for k in rows[0]}})
    return out


def _span(values: list[Any]) -> list[float] | None:
    present = [v for v in values if v is not None]
    return [min(present), max(present)] if present else None


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "system": platform.platform(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def print_report(result: dict[str, Any]) -> None:
    rows = []
    for run in result["runs"]:
        for o in run["outcomes"]:
            rows.append([run["accounts"], run["run"], o["contender"], *(o[key] for key, _ in COLUMNS)])
    print_table(["N", "run", "contender", *(title for _, title in COLUMNS)], rows)
    print()
    ratio_rows = [
        [run["accounts"], run["run"], pair, *(values.get(m) for m in RATIO_METRICS)]
        for run in result["runs"]
        for pair, values in ratio_table(run["ratios"]).items()
    ]
    if ratio_rows:
        print_table(["N", "run", "ratio", *RATIO_METRICS], ratio_rows)
    notes = {o["contender"]: o["note"] for run in result["runs"] for o in run["outcomes"]}
    print()
    for contender, note in notes.items():
        print(f"{contender}: {note}")
    print("warmup (shared by the contenders): " + ", ".join(f"N={n} {s} s" for n, s in result["warmup_s"].items()))
    print()
    print("first send after the planned instant over every open (ms; wire: the first segment after the open):")
    print_table(
        ["N", "contender", "opens", "late starts", "first send p50", "p99", "max", "wire first p50", "p99", "max"],
        [
            [
                row["accounts"],
                row["contender"],
                row["opens"],
                row["late_starts"],
                *(
                    row[f"{key}_{stat}"]
                    for key in ("first_send_error_ms", "wire_first_ms")
                    for stat in ("p50", "p99", "max")
                ),
            ]
            for row in result["first_send"]
        ],
    )
    mixed = [(run, o) for run in result["runs"] for o in run["outcomes"] if len(o.get("by_platform") or {}) > 1]
    if mixed:
        print()
        print("the daemon's first-send loop per broker platform (dispatch: the instant -> its last first write):")
        print_table(
            ["N", "run", "platform", "accounts", "dispatch ms", "write us p50", "dispatch / ephoenix"],
            [
                [
                    run["accounts"],
                    run["run"],
                    name,
                    figures["accounts"],
                    figures["dispatch_ms"],
                    figures["write_us_p50"],
                    _over(figures["dispatch_ms"], o["by_platform"].get("ephoenix", {}).get("dispatch_ms")),
                ]
                for run, o in mixed
                for name, figures in o["by_platform"].items()
            ],
        )


RATIO_METRICS = ("arrival max", "arrival p50", "wire max", "wire p50", "dispatch")


def ratio_table(ratios: dict[str, float | None]) -> dict[str, dict[str, float | None]]:
    """{"daemon rt=on/raw wire max": 0.9, ...} as {"daemon rt=on/raw": {"wire max": 0.9, ...}}: one row per pair."""
    out: dict[str, dict[str, float | None]] = {}
    for key, value in ratios.items():
        metric = next((m for m in RATIO_METRICS if key.endswith(" " + m)), None)
        if metric is not None:
            out.setdefault(key[: -len(metric) - 1], {})[metric] = value
    return out


def _over(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 3) if top is not None and bottom else None


def plot(result: dict[str, Any], path: Path) -> bool:
    """Arrival-time CDF per contender, one panel per account count (every run drawn); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    counts = sorted({run["accounts"] for run in result["runs"]})
    fig, axes = plt.subplots(1, len(counts), figsize=(5 * len(counts), 4), squeeze=False)
    colors = {"locust": "tab:red", "daemon": "tab:blue", "raw": "tab:green"}
    for ax, n in zip(axes[0], counts):
        labelled: set[str] = set()
        for run in (r for r in result["runs"] if r["accounts"] == n):
            for o in run["outcomes"]:
                xs = [max(x, 0.01) for x in o["arrivals_ms"]]
                if not xs:
                    continue
                xs, ys = [xs[0], *xs], [0.0, *((i + 1) / n for i in range(len(xs)))]
                ax.step(
                    xs,
                    ys,
                    where="post",
                    color=colors.get(o["contender"]),
                    alpha=0.8,
                    label=None if o["contender"] in labelled else o["contender"],
                )
                labelled.add(o["contender"])
        ax.set_xscale("log")
        ax.set_xlabel("first order's arrival after the open (ms, log)")
        ax.set_ylabel("fraction of accounts")
        ax.set_title(f"{n} accounts")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("error", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="open-race-") as scratch:
        result = asyncio.run(race(args, args.workdir or Path(scratch)))
    if args.json:
        print_json(result)
    else:
        print_report(result)
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        print_json(result, stream=(args.out / "open_race.json").open("w"))
        drawn = plot(result, args.out / "open_race.png")
        print(
            f"wrote {args.out / 'open_race.json'}"
            + (f" and {args.out / 'open_race.png'}" if drawn else " (no PNG: matplotlib is not installed)"),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
