"""The contenders of the open race, each against a fresh simulator process opening at its own instant.

daemon  the executor, armed `arm_lead_s` before the open from the warm cache (final check, fire, follow)
raw     pre-opened sockets and pre-built bytes, one `transport.write` per account in one loop at the instant
locust  the earlier tool: Locust started at the instant, one user per account spraying NewOrder

Arrival times are the simulator's own first-byte stamps (host wall clock) minus the open instant, so the
three are measured by one yardstick. On the wire (daemon and raw): when each account's first request left
the client's TCP stack, the kernel's stamps from a loopback capture opened after the connections were warmed
(`bench._capture`), on the same wall clock. `daemon rt=on` / `daemon rt=off`: the daemon with
`executor.realtime` set so, when the race runs it both ways. Every wait is bounded; only 127.0.0.1 is used.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench._capture import Segment, first_sends, local_port
from bench._prepared import prepared_orders
from bench._raw import _raise_fd_limit, open_capture, pct, raw_fire
from bench._sim import REPO_ROOT, SimProcess, bench_config, child_env, use_sim_password, write_config
from daemon.clock import Clock, SystemClock
from daemon.config import Config, validate_config
from daemon.executor import Executor
from daemon.firing import Journal, read_journal
from daemon.net import ClockReference, RealtimeWindow, ResponseReader, WireResponse, wait_until_monotonic
from daemon.warmup import warmup
from daemon.wiring import Wiring

NS = 1_000_000_000
CONTENDERS = ("locust", "daemon", "raw")
TOO_SOON, CLOSED = 1018, 1017
SIM_START_ALLOWANCE_S = 4.0  # plus SIM_START_PER_ACCOUNT_S each: the simulator child is listening within this
SIM_START_PER_ACCOUNT_S = 0.008  # measured at load average 7.5 on 2 vCPUs: 3.2-5.4 s at 100 accounts, 11.4 s at 1000
SIM_START_MARGIN = 1.5  # and at least this times the slowest start seen so far (13-17 s at 5 accounts, load 13)
WARMUP_BATCH = 200


@dataclass
class RaceOptions:
    workdir: Path
    arm_lead_s: float = 10.0  # the executor is armed this long before the open (a minute in production)
    locust_time_s: float = 3.0
    locust_bin: str | None = None
    clock_source: str = "none"
    final_check_s: float = 5.0  # the daemon's default: the final check starts this long before the instant
    brokers: tuple[str, ...] = ("gs", "shahr", "bbi")
    captcha_spacing_s: float = 0.002
    realtime: str | None = None  # executor.realtime for a plain "daemon" (None: the config's default, auto)
    raw_realtime: str = "off"  # the same setting for a plain "raw" (off: normal priority, as before)


@dataclass
class Outcome:
    """One contender at one open, as the simulator and the contender saw it."""

    contender: str
    accounts: int
    arrivals_ms: list[float] = field(default_factory=list)  # each account's first NewOrder, after the open
    requests: dict[str, int] = field(default_factory=dict)  # NewOrder requests per account
    accepted: int = 0
    accounts_accepted: int = 0  # accounts with at least one accepted order (accepted - this = duplicates)
    too_soon: int = 0  # 1018: self-caused, the account's own previous attempt was under the spacing
    closed: int = 0  # 1017: sent before the open
    dispatch_ms: float | None = None  # the instant -> the last account's first write
    first_send_error_ms: float | None = None  # the instant -> the first write
    max_attempts: int | None = None  # the plan's attempt cap (daemon only)
    phases_s: dict[str, float] = field(default_factory=dict)  # how long the steps before the instant took
    by_platform: dict[str, dict[str, Any]] = field(default_factory=dict)  # daemon: dispatch per broker platform
    note: str = ""
    arrival_by_account: dict[str, float] = field(default_factory=dict)  # username -> its first arrival, ms
    wire_ms: dict[str, float] = field(default_factory=dict)  # username -> its first request on the wire, ms
    wire_lost: int = 0  # segments the capture's buffer dropped (0, or the wire figures miss requests)

    def summary(self) -> dict[str, Any]:
        arrivals = self.arrivals_ms
        wire = list(self.wire_ms.values())
        per_account = list(self.requests.values())
        late = [u for u, w in self.wire_ms.items() if u in self.arrival_by_account and w > self.arrival_by_account[u]]
        return {
            "contender": self.contender,
            "accounts": self.accounts,
            "arrived": len(arrivals),
            "arrival_ms_p50": _r(pct(arrivals, 50)) if arrivals else None,
            "arrival_ms_p99": _r(pct(arrivals, 99)) if arrivals else None,
            "arrival_ms_max": _r(max(arrivals)) if arrivals else None,
            "wired": len(wire),
            "wire_ms_p50": _r(pct(wire, 50)) if wire else None,
            "wire_ms_p99": _r(pct(wire, 99)) if wire else None,
            "wire_ms_max": _r(max(wire)) if wire else None,
            "wire_first_ms": _r(min(wire)) if wire else None,
            "wire_after_arrival": len(late),
            "wire_lost": self.wire_lost,
            "spread_ms": _r(max(arrivals) - min(arrivals)) if arrivals else None,
            "dispatch_ms": _r(self.dispatch_ms),
            "first_send_error_ms": _r(self.first_send_error_ms),
            "requests_per_account_mean": _r(statistics.fmean(per_account)) if per_account else None,
            "requests_per_account_max": max(per_account, default=None),
            "requests_total": sum(per_account),
            "accepted": self.accepted,
            "duplicates": self.accepted - self.accounts_accepted,
            "rejected_1018": self.too_soon,
            "rejected_1017": self.closed,
            "max_attempts": self.max_attempts,
            "note": self.note,
            "final_check_s": _r(self.phases_s.get("final_check")),
            "phases_s": {k: _r(v, 6) for k, v in self.phases_s.items()},
            "by_platform": self.by_platform,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "arrivals_ms": [_r(a) for a in sorted(self.arrivals_ms)],
            "wire_and_arrival_ms": sorted([_r(w), _r(self.arrival_by_account.get(u))] for u, w in self.wire_ms.items()),
        }


def _by_platform(config: Config, firsts: list[dict[str, Any]], planned: int) -> dict[str, dict[str, Any]]:
    """Per broker platform, from the journal's first sends in the one loop: how many, the instant -> its last
    first write (`dispatch_ms`), and the median gap from the write before each of its writes (`write_us`: what
    one more account of that platform costs in the loop, e.g. Exir's signed bytes against Ephoenix's)."""
    ordered = sorted(firsts, key=lambda r: r["monotonic_ns"])
    platform_of = {b: config.broker(b).platform for b in {r["broker"] for r in ordered}}
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(platform_of.values())):
        mine = [i for i, r in enumerate(ordered) if platform_of[r["broker"]] == name]
        gaps = [(ordered[i]["monotonic_ns"] - ordered[i - 1]["monotonic_ns"]) / 1e3 for i in mine if i > 0]
        out[name] = {
            "accounts": len(mine),
            "dispatch_ms": _r((ordered[mine[-1]]["monotonic_ns"] - planned) / 1e6),
            "write_us_p50": _r(statistics.median(gaps)) if gaps else None,
        }
    return out


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# ---------------------------------------------------------------- the shared warm cache


class Race:
    """N accounts: one warm cache, then a fresh simulator (same seed) and a fresh open per contender."""

    def __init__(self, accounts: int, options: RaceOptions, clock: Clock | None = None) -> None:
        self.n = accounts
        self.options = options
        self.clock = clock or SystemClock()
        self.dir = options.workdir / f"n{accounts}"
        self.cache_dir = self.dir / "cache"
        self.runs = 0
        self.warmup_s: float | None = None
        self.slowest_start_s = 0.0  # the slowest simulator start seen: a loaded machine starts the child late
        use_sim_password()

    def config_data(self, sim: SimProcess, state: Path, realtime: str | None = None) -> dict[str, Any]:
        return bench_config(
            sim.snippet,
            state,
            cache_dir=self.cache_dir,
            clock_source=self.options.clock_source,
            captcha_spacing_s=self.options.captcha_spacing_s,
            final_check_s=self.options.final_check_s,
            realtime=realtime,
        )

    async def warm(self) -> float:
        """Log every account in (OCR captchas, the simulator's login limit raised) into the shared cache;
        accounts already warm (a reused --workdir) cost no login. Returns the seconds it took."""
        started = self.clock.monotonic_ns()
        with SimProcess(self.n, self.options.brokers) as sim:
            self._started(started)
            config = validate_config(self.config_data(sim, self.dir / "warm"), source="bench config")
            started = self.clock.monotonic_ns()
            results = []
            async with Wiring(config, self.clock) as services:
                for start in range(0, self.n, WARMUP_BATCH):  # bounded concurrency: the simulator is one process
                    results += await warmup(
                        services.clients(config.accounts[start : start + WARMUP_BATCH]), services.clock
                    )
            self.warmup_s = (self.clock.monotonic_ns() - started) / NS
        failed = [r for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"warmup failed for {len(failed)} of {self.n} accounts: {failed[0].error}")
        return self.warmup_s

    async def run(self, contender: str) -> Outcome:
        """One contender at a fresh open on a fresh simulator; `daemon rt=MODE` is the daemon with that
        `executor.realtime` (`raw rt=MODE` the raw loop at the same priority)."""
        self.runs += 1
        kind, _, realtime = contender.partition(" rt=")
        state = self.dir / f"{kind}{'-rt-' + realtime if realtime else ''}-{self.runs}"
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        # the daemon arms arm_lead_s ahead; the others need only open their connections (under 1 ms each)
        lead = self.options.arm_lead_s + 1.0 if kind == "daemon" else 3.0 + 0.004 * self.n
        start = max(SIM_START_ALLOWANCE_S + SIM_START_PER_ACCOUNT_S * self.n, SIM_START_MARGIN * self.slowest_start_s)
        open_at = self.clock.now() + timedelta(seconds=start + lead)
        sim = SimProcess(self.n, self.options.brokers, open_at=open_at, request_log=state / "requests.jsonl")
        starting = self.clock.monotonic_ns()
        with sim:
            self._started(starting)
            default = {"daemon": self.options.realtime, "raw": self.options.raw_realtime}.get(kind)
            data = self.config_data(sim, state, realtime or default)
            config = validate_config(data, source="bench config")
            config_path = write_config(data, state / "config.yaml")
            runner = {"daemon": self._daemon, "raw": self._raw, "locust": self._locust}[kind]
            outcome = await runner(config, config_path, open_at, state)
        outcome.contender = contender
        _add_arrivals(outcome, sim, open_at, [a.username for a in config.accounts])
        return outcome

    def _started(self, since_ns: int) -> None:
        self.slowest_start_s = max(self.slowest_start_s, (self.clock.monotonic_ns() - since_ns) / NS)

    # ---- the contenders ------------------------------------------------------------------------

    async def _daemon(self, config: Config, _path: Path, open_at: datetime, state: Path) -> Outcome:
        reference = ClockReference.take(self.clock)
        arm_at = reference.monotonic_of(_wall_ns(open_at) - int(self.options.arm_lead_s * NS))
        await wait_until_monotonic(arm_at, self.clock)
        day = open_at.astimezone(config.tz).date()
        capture = None
        owners: dict[int, str] = {}
        segments: list[Segment] = []
        async with Wiring(config, self.clock) as services:
            executor = Executor.from_wiring(services, Journal(config.state_dir, day), day=day)
            try:
                started = self.clock.monotonic_ns()
                plans = await executor.arm(config.accounts, open_at.astimezone(config.tz))
                armed = self.clock.monotonic_ns()
                first_send = min(p.send_at_ns for p in plans)
                check_at = first_send - int(config.executor.final_check_s * NS)
                checking = max(check_at, armed)
                checked = 0

                def ready() -> None:  # after the pings' answers: the next request on each connection is the order
                    nonlocal capture, owners, checked
                    checked = self.clock.monotonic_ns()
                    capture = open_capture(_ports(config))
                    owners = _daemon_ports(executor)

                # as the service runs it: the final check cut at its budget, real-time priority (when the config
                # allows it) from the final check to the end of the first-send loop
                await executor.run_after_arm(before_fire=ready)
                owners |= _daemon_ports(executor)  # a connection reopened in the window
                segments = capture.collect() if capture is not None else []
            finally:
                if capture is not None:
                    capture.close()
                await executor.aclose()
        records = read_journal(config.state_dir, day)
        firsts = [r for r in records if r.get("kind") == "send" and r.get("attempt") == 1]
        outcome = Outcome(
            "daemon",
            self.n,
            max_attempts=config.executor.max_attempts,
            note=f"armed {self.options.arm_lead_s:g} s before the open, final check from "
            f"{config.executor.final_check_s:g} s before; clock {config.executor.clock_source}",
            phases_s={
                "arm": (armed - started) / NS,
                "final_check": (checked - checking) / NS,
                "final_check_budget": config.executor.final_check_s,
                # negative: the arm ended after the first planned send (the final check is cut at its budget,
                # FINAL_CHECK_MARGIN_NS before it), which then went out that late
                "ready_ahead": (first_send - checked) / NS,
            },
        )
        if firsts:
            planned = min(r["planned_ns"] for r in firsts)
            sent = sorted(r["monotonic_ns"] for r in firsts)
            outcome.dispatch_ms = (sent[-1] - planned) / 1e6
            outcome.first_send_error_ms = (sent[0] - planned) / 1e6
            outcome.by_platform = _by_platform(config, firsts, planned)
        _add_wire(outcome, segments, owners, open_at, capture.dropped if capture is not None else 0)
        outcome.note += f"; executor.realtime {config.executor.realtime}"
        return outcome

    async def _raw(self, config: Config, _path: Path, open_at: datetime, _state: Path) -> Outcome:
        orders = await prepared_orders(config)
        second = int(open_at.timestamp())  # the simulator runs on this host's clock: the open's UTC second
        requests = [o.request_bytes(second) for o in orders]
        _raise_fd_limit(len(orders) + 256)
        loop = asyncio.get_running_loop()
        port = urlsplit(orders[0].trading_url).port
        clients: list[_Answered] = []
        waiting: list[asyncio.Future[None]] = []
        capture = None
        window = RealtimeWindow(config.executor.realtime, config.executor.realtime_priority, self.clock)
        try:
            for start in range(0, len(orders), 100):  # pre-opened, a hundred at a time
                opened = await asyncio.gather(
                    *(loop.create_connection(_Answered, "127.0.0.1", port) for _ in orders[start : start + 100])
                )
                clients += [protocol for _, protocol in opened]
            # warmed as the executor's are by its final-check ping: one request answered on each connection
            pings = [c.expect() for c in clients]
            for client, order in zip(clients, orders):
                client.transport.write(order.probe_bytes(int(self.clock.time_ns() // NS)))
            async with asyncio.timeout(30):
                await asyncio.gather(*pings)
            waiting = [c.expect() for c in clients]
            # executor.realtime as the daemon takes it after its final check's pings: to the end of the loop,
            # the memory kept locked until the answers are in
            with window:
                capture = open_capture(_ports(config))  # after the warming answers: the next request is the order
                owners = {local_port(c.transport): o.username for c, o in zip(clients, orders)}
                planned = ClockReference.take(self.clock).monotonic_of(_wall_ns(open_at))
                ready_ahead = _require_ahead(planned, self.clock, "raw: connections were not open before the instant")
                fire = raw_fire(clients, requests, self.clock)
                woke = await wait_until_monotonic(planned, self.clock)
                sent = fire()
            async with asyncio.timeout(30):
                await asyncio.gather(*waiting, return_exceptions=True)
            segments = capture.collect() if capture is not None else []
        finally:
            window.leave()
            if capture is not None:
                capture.close()
            for waiter in waiting:
                waiter.cancel()  # no-op for the answered; an unanswered one is not an error to report twice
            for client in clients:
                client.transport.close()
        outcome = Outcome(
            "raw",
            self.n,
            dispatch_ms=(sent[-1] - planned) / 1e6,
            first_send_error_ms=(sent[0] - planned) / 1e6,
            note=f"one write per account, no retry; executor.realtime {config.executor.realtime}",
            phases_s={
                "ready_ahead": ready_ahead,
                "wake_late": (woke - planned) / NS,
                "first_write": (sent[0] - woke) / NS,
            },
        )
        _add_wire(outcome, segments, owners, open_at, capture.dropped if capture is not None else 0)
        return outcome

    async def _locust(self, _config: Config, path: Path, open_at: datetime, state: Path) -> Outcome:
        binary = self.options.locust_bin or locust_binary()
        if binary is None:
            raise RuntimeError("locust is not installed; pip install '.[bench]'")
        sends = state / "locust-sends.json"
        argv = [
            binary,
            "-f",
            str(REPO_ROOT / "bench" / "locustfile.py"),
            "--headless",
            "-u",
            str(self.n),
            "-r",
            str(self.n),
            "-t",
            f"{self.options.locust_time_s:g}s",
            "--only-summary",
            "--loglevel",
            "WARNING",
            "--stop-timeout",
            "1",
        ]
        env = child_env({"OPENING_BELL_CONFIG": str(path), "OPENING_BELL_LOCUST_SENDS": str(sends)})
        instant = ClockReference.take(self.clock).monotonic_of(_wall_ns(open_at))
        _require_ahead(instant, self.clock, "locust: the instant passed before the start")
        await wait_until_monotonic(instant, self.clock)
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=state, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            async with asyncio.timeout(self.options.locust_time_s + 60):
                _, stderr = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RuntimeError("locust did not stop in time") from None
        outcome = Outcome(
            "locust", self.n, note=f"started at the open; -u {self.n} -r {self.n} -t {self.options.locust_time_s:g}s"
        )
        if sends.exists():
            first = list(orjson.loads(sends.read_bytes())["first_send_ns"].values())
            if first:
                outcome.dispatch_ms = (max(first) - _wall_ns(open_at)) / 1e6
                outcome.first_send_error_ms = (min(first) - _wall_ns(open_at)) / 1e6
        elif process.returncode not in (0, 1):  # 1: requests failed (1018s), which is the point
            raise RuntimeError(f"locust failed: {stderr.decode(errors='replace')[-500:]}")
        return outcome


def locust_binary() -> str | None:
    """The locust next to this interpreter (the `bench` extra), else one on PATH."""
    beside = Path(sys.executable).with_name("locust")
    return str(beside) if beside.exists() else shutil.which("locust")


class _Answered(asyncio.Protocol):
    """A bare client connection for the raw contender: counts whole HTTP answers, nothing else."""

    def __init__(self) -> None:
        self.reader = ResponseReader(self._answered)
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def expect(self) -> asyncio.Future[None]:
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data, 0)

    def _answered(self, _response: WireResponse) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the simulator closed a connection"))


def _require_ahead(deadline_ns: int, clock: Clock, what: str) -> float:
    """Seconds left before `deadline_ns`; a benchmark that is not ready in time stops rather than mismeasures."""
    left = (deadline_ns - clock.monotonic_ns()) / NS
    if left <= 0:
        raise RuntimeError(f"{what}; raise the lead")
    return left


def _wall_ns(when: datetime) -> int:
    return int(round(when.timestamp() * 1e6)) * 1000


def _ports(config: Config) -> set[int]:
    """The trading ports the accounts' orders go to (the simulator's one, here)."""
    return {urlsplit(config.broker(a.broker).trading_url).port or 80 for a in config.accounts}


def _daemon_ports(executor: Executor) -> dict[int, str]:
    """Each open connection's local port -> its plan's username."""
    out = {}
    for plan in executor.plans:
        port = plan.conn.local_port if plan.conn is not None else None
        if port is not None:
            out[port] = plan.username
    return out


def _add_wire(
    outcome: Outcome, segments: list[Segment], owners: dict[int | None, str], open_at: datetime, lost: int
) -> None:
    """Per account: its first request's segment as the kernel stamped it, in ms after the open."""
    open_ns = _wall_ns(open_at)
    stamps = first_sends(segments, {p: u for p, u in owners.items() if p is not None})
    outcome.wire_ms = {u: (ns - open_ns) / 1e6 for u, ns in stamps.items()}
    outcome.wire_lost = lost


def _add_arrivals(outcome: Outcome, sim: SimProcess, open_at: datetime, usernames: list[str]) -> None:
    """Per account: its first NewOrder's arrival after the open, how many it sent, and the answers."""
    open_ns = _wall_ns(open_at)
    first: dict[str, int] = {}
    counts: Counter[str] = Counter()
    accepted: set[str] = set()
    for arrival in sim.new_orders():
        counts[arrival.username] += 1
        first[arrival.username] = min(arrival.time_ns, first.get(arrival.username, arrival.time_ns))
        if arrival.status == 200 and arrival.error_code == 0:
            outcome.accepted += 1
            accepted.add(arrival.username)
        outcome.too_soon += arrival.error_code == TOO_SOON
        outcome.closed += arrival.error_code == CLOSED
    outcome.arrivals_ms = [(ns - open_ns) / 1e6 for ns in first.values()]
    outcome.arrival_by_account = {u: (ns - open_ns) / 1e6 for u, ns in first.items()}
    outcome.accounts_accepted = len(accepted)
    outcome.requests = {u: counts[u] for u in usernames if counts[u]}


def ratios(outcomes: list[Outcome]) -> dict[str, float | None]:
    """daemon / raw (how close the executor gets to the limit, per daemon variant) and locust / daemon (what it
    saves)."""
    by = {o.contender: o.summary() for o in outcomes}

    def ratio(top: str, bottom: str, key: str) -> float | None:
        a, b = by.get(top, {}).get(key), by.get(bottom, {}).get(key)
        return round(a / b, 2) if a is not None and b not in (None, 0) else None

    daemons = [o.contender for o in outcomes if o.contender.startswith("daemon")] or ["daemon"]
    raws = [o.contender for o in outcomes if o.contender.startswith("raw")] or ["raw"]
    out: dict[str, float | None] = {}
    for d in daemons:
        for r in raws:
            if " rt=" in d and " rt=" in r and d.split(" rt=")[1] != r.split(" rt=")[1]:
                continue  # both run both ways: like with like
            out |= {
                f"{d}/{r} arrival max": ratio(d, r, "arrival_ms_max"),
                f"{d}/{r} arrival p50": ratio(d, r, "arrival_ms_p50"),
                f"{d}/{r} dispatch": ratio(d, r, "dispatch_ms"),
                f"{d}/{r} wire max": ratio(d, r, "wire_ms_max"),
                f"{d}/{r} wire p50": ratio(d, r, "wire_ms_p50"),
            }
    return out | {
        "locust/daemon arrival max": ratio("locust", daemons[0], "arrival_ms_max"),
        "locust/daemon arrival p50": ratio("locust", daemons[0], "arrival_ms_p50"),
    }
