"""The client's CPU right after the first-send loop: following every order to its first answer.

    python -m bench.follow_cpu [--accounts 1000] [--runs 3] [--log-level info]

The real executor, in this process, against a simulator in its own process on 127.0.0.1 (`bench/_sim.py`),
as the open race's daemon contender runs it: one warmup logs every account in (OCR) into a cache shared by
the runs (`--workdir` keeps it for the next invocation), then per run a fresh simulator opening a few seconds
ahead, the executor armed `--arm-lead-s` before the open, its final check, and the fire. Two instants are
stamped inside the fire: just after the first-send loop's writes returned (`fire_all`), and when the last
order's first answer has been read and journaled. Between them it prints this process's CPU time (all
threads: the journal's writer too; `time.process_time`, user and system from `getrusage`), the event
loop's thread alone (`time.thread_time`), the wall time and the garbage collections. What the simulator
spends is not counted: it is another process (on the same cores, which is why this work matters).
`--profile FILE` writes a cProfile of the event loop's thread between the two instants (it inflates them).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import this checkout, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._race import SIM_START_ALLOWANCE_S, Race, RaceOptions  # noqa: E402
from bench._sim import SimProcess  # noqa: E402
from daemon import executor as executor_module  # noqa: E402
from daemon.cli.output import print_json, print_table  # noqa: E402
from daemon.clock import SystemClock  # noqa: E402
from daemon.config import validate_config  # noqa: E402
from daemon.executor import Executor  # noqa: E402
from daemon.firing import Journal, read_journal  # noqa: E402
from daemon.logs import configure_logging  # noqa: E402
from daemon.net import NS, ClockReference, wait_until_monotonic  # noqa: E402
from daemon.wiring import Wiring  # noqa: E402


@dataclass(frozen=True, slots=True)
class Stamp:
    """Where this process stood at one instant: wall, CPU (all threads, this thread, user, system), GCs."""

    wall_ns: int
    process_ns: int
    thread_ns: int
    user_s: float
    system_s: float
    collections: int
    full_collections: int
    threads: dict[str, int]

    @classmethod
    def now(cls) -> Stamp:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cls(
            time.perf_counter_ns(),
            time.process_time_ns(),
            time.thread_time_ns(),
            usage.ru_utime,
            usage.ru_stime,
            sum(s["collections"] for s in gc.get_stats()),
            gc.get_stats()[-1]["collections"],
            _thread_ticks(),
        )


def _thread_ticks() -> dict[str, int]:
    """Each thread's user + system clock ticks (/proc), summed by its Python name (the main thread, the journal's
    writer in asyncio's default executor, ...; a thread Python did not start is named by its native name)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    ticks: dict[str, int] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        native = raw[raw.index("(") + 1 : raw.rindex(")")]
        name = names.get(int(task.name), f"{native} (native)").split("_")[0]
        fields = raw[raw.rindex(")") + 2 :].split()
        ticks[name] = ticks.get(name, 0) + int(fields[11]) + int(fields[12])
    return ticks


@dataclass
class Stamps:
    """The two instants of one fire, taken by the wrapped `fire_all` and the journal below."""

    planned: int = 0
    profile: cProfile.Profile | None = None
    loop_end: Stamp | None = None
    last_answer: Stamp | None = None
    answered: set[tuple[Any, ...]] = field(default_factory=set)

    def after_loop(self) -> None:
        self.loop_end = Stamp.now()
        if self.profile is not None:
            self.profile.enable()

    def answer(self, key: tuple[Any, ...]) -> None:
        if self.loop_end is None or self.last_answer is not None or key in self.answered:
            return
        self.answered.add(key)
        if len(self.answered) == self.planned:
            if self.profile is not None:
                self.profile.disable()
            self.last_answer = Stamp.now()


class StampingJournal(Journal):
    """The executor's journal, noting each order's first answer (a set lookup per answer line)."""

    stamps: Stamps

    def record(self, kind: str, **fields: Any) -> None:
        if kind == "answer":
            self.stamps.answer((fields.get("account"), fields.get("isin"), fields.get("side")))
        super().record(kind, **fields)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000, help="accounts, one order each (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="opens, each on a fresh simulator (default 3)")
    parser.add_argument(
        "--arm-lead-s", type=float, default=15.0, help="arm the executor this long before the open (default 15)"
    )
    parser.add_argument(
        "--final-check-s",
        type=float,
        default=8.0,
        help="the final check starts this long before (default 8: on a loaded machine 5 s ran over at 1000 "
        "accounts, and a check cut short leaves connections closed mid-ping)",
    )
    parser.add_argument(
        "--answer-timeout-s",
        type=float,
        default=30.0,
        help="the executor's answer timeout (default 30: a loaded machine's simulator answering after the daemon's "
        "3 s would send the run down the lookups' path, which is not what is measured)",
    )
    parser.add_argument("--window-s", type=float, default=60.0, help="the fire window (default 60)")
    parser.add_argument(
        "--brokers", default="gs,shahr,bbi", metavar="CODE[:PLATFORM],...", help="the simulator's brokers"
    )
    parser.add_argument(
        "--log-level", default="info", help="the daemon's log level, lines to /dev/null (default info: the service's)"
    )
    parser.add_argument("--workdir", type=Path, help="keep the warm cache (and each run's journal) here")
    parser.add_argument("--log-file", type=Path, help="the daemon's log lines go here (default: nowhere)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the measured span here (inflates it)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if not (1 <= args.accounts <= 2000 and 1 <= args.runs <= 10):
        parser.error("keep it bounded: --accounts 1..2000, --runs 1..10")
    if not (3 <= args.arm_lead_s <= 120 and 0.5 <= args.final_check_s < args.arm_lead_s):
        parser.error("keep it bounded: --arm-lead-s 3..120, --final-check-s from 0.5 to below --arm-lead-s")
    if not (0.1 <= args.answer_timeout_s <= 120 and 1 <= args.window_s <= 300):
        parser.error("keep it bounded: --answer-timeout-s 0.1..120, --window-s 1..300")
    return args


async def one_open(
    race: Race,
    options: RaceOptions,
    run: int,
    profile: cProfile.Profile | None,
    answer_timeout_s: float,
    window_s: float,
) -> dict[str, Any]:
    """A fresh simulator opening ahead, the executor armed, checked and fired with the two instants stamped."""
    clock = race.clock
    state = race.dir / f"follow-{os.getpid()}-{run}"  # kept: a run unlike the others can be looked into
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    open_at = clock.now() + timedelta(seconds=SIM_START_ALLOWANCE_S + options.arm_lead_s + 1.0)
    stamps = Stamps(profile=profile)
    checks: list[float] = []
    load_before = os.getloadavg()[0]
    fire_all = executor_module.fire_all

    def stamped_fire_all(pairs: Any) -> Any:
        sent = fire_all(pairs)
        stamps.after_loop()  # the last loop's end counts (one loop here: one order per account)
        return sent

    with SimProcess(race.n, options.brokers, open_at=open_at, request_log=state / "requests.jsonl") as sim:
        data = race.config_data(sim, state)
        data["executor"] = {**data["executor"], "answer_timeout_s": answer_timeout_s}
        data["schedule"] = {**data["schedule"], "window_s": window_s}
        config = validate_config(data, source="bench config")
        arm_at = ClockReference.take(clock).monotonic_of(_wall_ns(open_at) - int(options.arm_lead_s * NS))
        await wait_until_monotonic(arm_at, clock)
        day = open_at.astimezone(config.tz).date()
        journal = StampingJournal(config.state_dir, day)
        journal.stamps = stamps
        executor_module.fire_all = stamped_fire_all
        try:
            async with Wiring(config, clock) as services:
                executor = Executor.from_wiring(services, journal, day=day)
                try:
                    plans = await executor.arm(config.accounts, open_at.astimezone(config.tz))
                    stamps.planned = len(plans)
                    check = executor.final_check

                    async def timed_check() -> None:
                        started = time.perf_counter()
                        try:
                            await check()
                        finally:  # a check cut short at its budget ends here too (the cancel passes through)
                            checks.append(time.perf_counter() - started)

                    executor.final_check = timed_check  # type: ignore[method-assign]
                    await executor.run_after_arm()
                finally:
                    await executor.aclose()
        finally:
            executor_module.fire_all = fire_all
            if profile is not None and stamps.loop_end is not None and stamps.last_answer is None:
                profile.disable()  # a run whose orders were not all answered: its profile ends with it
        accepted = sum(r.accepted for r in executor.outcome())
        troubles = _troubles(read_journal(config.state_dir, day))
    check_s = round(checks[0], 2) if checks else None
    return {**_figures(run, stamps, accepted, load_before), **troubles, "final_check_s": check_s}


def _troubles(records: list[dict[str, Any]]) -> dict[str, int]:
    """What made a run unlike the others (a loaded machine): first writes that failed (a final check that ran
    over closes the connections mid-ping), answers that came after the answer timeout, sends beyond the first."""
    errors = [r for r in records if r.get("kind") == "error" and r.get("attempt") == 1]
    return {
        "first_writes_failed": sum(not str(r.get("reason", "")).startswith("answer lost") for r in errors),
        "answers_late": sum(str(r.get("reason", "")).startswith("answer lost") for r in errors),
        "resends": sum(r.get("kind") == "send" and r.get("attempt", 1) > 1 for r in records),
    }


def _wall_ns(when: Any) -> int:
    return int(round(when.timestamp() * 1e6)) * 1000


def _figures(run: int, stamps: Stamps, accepted: int, load_before: float) -> dict[str, Any]:
    start, end = stamps.loop_end, stamps.last_answer
    out: dict[str, Any] = {
        "run": run,
        "orders": stamps.planned,
        "answered": len(stamps.answered),
        "accepted": accepted,
        "load_1m": round(load_before, 2),
    }
    if start is None or end is None:
        return {**out, "cpu_ms": None, "note": "not every order had a first answer in the window"}
    process_ns, thread_ns = end.process_ns - start.process_ns, end.thread_ns - start.thread_ns
    return {
        **out,
        "cpu_ms": round(process_ns / 1e6, 1),
        "loop_thread_ms": round(thread_ns / 1e6, 1),
        "other_threads_ms": round((process_ns - thread_ns) / 1e6, 1),
        "user_ms": round((end.user_s - start.user_s) * 1e3, 1),
        "system_ms": round((end.system_s - start.system_s) * 1e3, 1),
        "wall_ms": round((end.wall_ns - start.wall_ns) / 1e6, 1),
        "gc_collections": end.collections - start.collections,
        "gc_full": end.full_collections - start.full_collections,
        "threads_ms": {
            name: (count - start.threads.get(name, 0)) * 1000 // os.sysconf("SC_CLK_TCK")
            for name, count in end.threads.items()
            if count != start.threads.get(name, 0)
        },
    }


COLUMNS = [
    ("run", "run"),
    ("orders", "orders"),
    ("answered", "answered"),
    ("accepted", "accepted"),
    ("cpu_ms", "CPU ms"),
    ("loop_thread_ms", "loop thread"),
    ("other_threads_ms", "other threads"),
    ("user_ms", "user"),
    ("system_ms", "system"),
    ("wall_ms", "wall ms"),
    ("gc_collections", "GCs"),
    ("gc_full", "full"),
    ("first_writes_failed", "writes failed"),
    ("answers_late", "late"),
    ("resends", "resends"),
    ("final_check_s", "check s"),
    ("load_1m", "load 1m"),
]


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    options = RaceOptions(workdir=workdir, arm_lead_s=args.arm_lead_s, final_check_s=args.final_check_s)
    options.brokers = tuple(b.strip() for b in args.brokers.split(",") if b.strip())
    race = Race(args.accounts, options, SystemClock())
    warm_s = await race.warm()
    print(f"N={args.accounts}: warm cache in {warm_s:.1f} s", file=sys.stderr, flush=True)
    profile = cProfile.Profile() if args.profile else None
    runs = []
    for run in range(1, args.runs + 1):
        runs.append(await one_open(race, options, run, profile, args.answer_timeout_s, args.window_s))
        print(f"run {run}: CPU {runs[-1]['cpu_ms']} ms, wall {runs[-1].get('wall_ms')} ms", file=sys.stderr, flush=True)
    if profile is not None:
        profile.dump_stats(args.profile)
    cpu = [r["cpu_ms"] for r in runs if r["cpu_ms"] is not None]
    return {
        "accounts": args.accounts,
        "log_level": args.log_level,
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "runs": runs,
        "cpu_ms_median": statistics.median(cpu) if cpu else None,
        "cpu_ms_range": [min(cpu), max(cpu)] if cpu else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with open(args.log_file or os.devnull, "w") as sink:
        configure_logging(args.log_level, stream=sink, json=True)  # the service's JSON lines, written nowhere
        with tempfile.TemporaryDirectory(prefix="follow-cpu-") as scratch:
            result = asyncio.run(measure(args, args.workdir or Path(scratch)))
    if args.json:
        print_json(result)
        return 0
    print_table([title for _, title in COLUMNS], [[r.get(key) for key, _ in COLUMNS] for r in result["runs"]])
    print(
        f"\nCPU from the end of the first-send loop to the last first answer, {result['accounts']} accounts: "
        f"median {result['cpu_ms_median']} ms, range {result['cpu_ms_range']} (log level {result['log_level']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
