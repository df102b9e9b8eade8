"""The physical limit of the first send: N pre-built requests written in one loop to N pre-opened connections.

    python -m bench.raw_reference --accounts 100 --runs 3
    python -m bench.raw_reference --accounts 1000 --runs 3

A recording server runs in a child process on 127.0.0.1. Each round plans an instant 50 ms ahead,
waits for it (sleep, then a short spin), and writes every request in one loop; `raw` writes with
`transport.write`, `wire` with `WireConnection.send_nowait` (through `fire_all`); rounds alternate.
Printed per mode: dispatch (planned instant -> last write returned), loop (first -> last write), per
write (the gap between consecutive writes, over all rounds), wake late (the wait's return - planned
instant), first-send error (first write returned - planned instant), arrival at the server after
the instant (over every request of every round), and on the wire: when each request left the client's TCP
stack, from the kernel's stamps on a loopback capture (`bench/_capture.py`; needs CAP_NET_RAW), with each
round's first segment after the instant ("wire first") and, per run, the wire/raw ratios of the two loops. Last, the Python cost per account of each loop with
writes that do nothing, which isolates what the WireConnection wrapper adds. Bounded: rounds x
accounts requests, a 30 s answer timeout, a server that stops by itself after 5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import this checkout, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._raw import RecordingServer, loop_overhead_ns, measure  # noqa: E402
from daemon.cli.output import print_json, print_table  # noqa: E402
from daemon.logs import configure_logging  # noqa: E402

COLUMNS = [
    ("dispatch_ms_p50", "dispatch p50 ms"),
    ("dispatch_ms_p99", "p99"),
    ("loop_ms_p50", "loop p50 ms"),
    ("write_us_p50", "per write p50 µs"),
    ("write_us_p90", "p90"),
    ("wake_late_us_p50", "wake late p50 µs"),
    ("wake_late_us_p99", "p99"),
    ("first_send_error_us_p50", "first-send err p50 µs"),
    ("first_send_error_us_p99", "p99"),
    ("arrival_ms_p50", "arrival p50 ms"),
    ("arrival_ms_p99", "p99"),
    ("arrival_ms_max", "max"),
    ("wire_ms_p50", "on the wire p50 ms"),
    ("wire_ms_p99", "p99"),
    ("wire_ms_max", "max"),
    ("wire_first_us_p50", "wire first p50 µs"),
    ("wire_first_us_p99", "p99"),
    ("wire_missing", "unstamped"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100, help="connections and requests per round (default 100)")
    parser.add_argument("--rounds", type=int, default=10, help="planned instants per run (default 10)")
    parser.add_argument("--runs", type=int, default=1, help="whole runs, each with a fresh server (default 1)")
    parser.add_argument("--mode", choices=["raw", "wire", "both"], default="both")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if not (1 <= args.accounts <= 5000 and 1 <= args.rounds <= 100 and 1 <= args.runs <= 10):
        parser.error("keep it bounded: --accounts 1..5000, --rounds 1..100, --runs 1..10")
    configure_logging("warning", stream=sys.stderr)
    modes = ["raw", "wire"] if args.mode == "both" else [args.mode]
    rows = []
    for run in range(1, args.runs + 1):
        with RecordingServer() as server:
            for figures in asyncio.run(measure(args.accounts, args.rounds, modes, server)):
                rows.append(
                    {
                        "run": run,
                        "mode": figures.label,
                        "accounts": args.accounts,
                        "rounds": args.rounds,
                        **figures.summary(),
                    }
                )
    overhead = loop_overhead_ns(args.accounts)
    ratios = wire_ratios(rows)
    if args.json:
        print_json({"runs": rows, "ratios": ratios, "python_cost_per_account": overhead})
    else:
        print_table(
            ["run", "mode", "accounts", *(title for _, title in COLUMNS)],
            [[r["run"], r["mode"], r["accounts"], *(_round(r[key]) for key, _ in COLUMNS)] for r in rows],
        )
        if ratios:
            print_table(list(ratios[0]), [list(r.values()) for r in ratios])
        print(
            f"Python cost per account without the send syscall: raw loop {overhead['raw_ns_per_account']:.0f} ns, "
            f"fire_all {overhead['fire_all_ns_per_account']:.0f} ns"
        )
    return 0


def wire_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run with both loops: wire / raw of arrival max and of on-the-wire max (what the wrapper costs)."""
    out = []
    for run in sorted({r["run"] for r in rows}):
        by = {r["mode"]: r for r in rows if r["run"] == run}
        if {"raw", "wire"} <= by.keys():
            out.append(
                {
                    "run": run,
                    "wire/raw arrival max": _ratio(by["wire"]["arrival_ms_max"], by["raw"]["arrival_ms_max"]),
                    "wire/raw on the wire max": _ratio(by["wire"]["wire_ms_max"], by["raw"]["wire_ms_max"]),
                }
            )
    return out


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 2) if top is not None and bottom else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    sys.exit(main())
