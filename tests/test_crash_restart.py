"""Issue 12: exactly one order per account and symbol, even when the daemon is SIGKILLed at the open.

How. One simulator on loopback and one cache, warmed once by `python -m daemon warmup`, serve every
round, so no restart needs a captcha. Rounds run in waves: a wave has an open T a few seconds ahead (the
simulator opens then, unless an earlier wave's restart is still at work) and one round per variant, each
on its own broker of the simulator (a fault is that broker's alone), with two fresh accounts of three buy
orders each, its own config and state_dir. A round starts `fire --at T` (or `run` on a day whose open is
T), SIGKILLs it at its kill point, starts the same command again at once and lets it finish; then the
simulator's books are the evidence. The next wave starts as soon as this one's kills are done, so its
processes start while this wave's restarts run. Every daemon process is `daemon.cli.main(argv)` in a process
of its own, forked from a zygote that has done the imports (tests/crashhelp.py says why).

Kill points: `first` is the moment the simulator has booked the round's first NewOrder, before its answer
is written (after the first-send loop, before the daemon has seen any answer); numbers are seconds from T, from 50 ms
before it to after the last planned send (an account's three orders leave one spacing apart, at T,
T+0.32 and T+0.64 s). A kill counts only if it ended a process that had armed: one that had already
ended by itself is still restarted (a restart after a finished window must send nothing), and spare
waves run until MIN_KILLS kills have counted (the machine's load decides how late processes arm).

Variants: plain; slow (every NewOrder answered 300 ms late; the simulator reads the body after the delay,
so an order whose sender was killed meanwhile is never booked); lost (the order booked, then the connection
closed unanswered); unread (lost answers, and GetOpenOrders and GetOrders answer 503, so the daemon can
never learn what the broker holds).

What is provable, and asserted per round from the simulator's own books:
- Never a duplicate: at most one booked order per account and ISIN, whatever the kill point and variant.
- The report agrees with the broker: an order `report --json` shows accepted is booked exactly once, and
  where the broker can be asked (every variant but unread) an order booked once is reported accepted.
- None missing while the window allowed it: if the restart had the window (it armed at least
  RESEND_MARGIN_S before the window's end, or it ended without arming while the window was still open,
  i.e. it refused a window it had) and the broker's books can be read, every order is booked. A restart
  that came later (a slow start on a loaded machine) may find no time left to send a never-sent order,
  so only the other rules hold for it.
- Unread: the daemon cannot tell a booked order from one never sent, so it may neither send it again nor
  claim it: every order not reported accepted is reported as `unknown...`.
- The restarted fire's exit code matches its report: 0 exactly when every order is accepted, else 1.
- `run`: the restarted service resumes the day inside the window (its `report.day` comes) and ends 0 on
  SIGTERM.
- No output of any process carries the accounts' password.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from daemon.simulator import DEFAULT_PASSWORD, PASSWORD_ENV, SimSettings, Simulator
from tests.crashhelp import DaemonProcess, NewOrderTrap, Zygote, counts_by_order, report_rows
from tests.simhelp import sim_config_data

pytest.importorskip("ddddocr")

SEED = 12  # the simulator's draws: captchas, serial numbers, fault draws
ISINS = ("IRO1FOLD0001", "IRO1IKCO0001", "IRO1MSMI0001")
ACCOUNTS_PER_ROUND = 2
BUYING_POWER = (
    20_000_000_000  # every order is capped by its instrument's maxeq, so a duplicate is never refused for money
)
VARIANTS = {  # broker code = variant: the faults are that broker's only
    "plain": (),
    "slow": ("new_order@slow:delay_ms=300",),
    "lost": ("new_order@lost:drop,after",),
    "unread": ("new_order@unread:drop,after", "open_orders@unread:status=503", "orders@unread:status=503"),
}
FIRE_POINTS: tuple[str | float, ...] = ("first", -0.05, 0.0, 0.03, 0.1, 0.2, 0.35, 0.5, 1.2)
RUN_POINTS: dict[int, str | float] = {1: "first", 3: -0.05, 5: 0.1, 7: 0.4}  # wave -> kill point of its `run` round
WAVES = len(FIRE_POINTS)  # variant v of wave w is killed at FIRE_POINTS[(w + 2 v) % WAVES]: each variant at every point
SPARE_WAVES = 3  # played only while fewer than MIN_KILLS kills have counted
MIN_KILLS = 30
FIRST_LEAD_S = 5.0  # the first wave's start to its T: the first processes start and arm before it
MIN_LEAD_S, MAX_LEAD_S = 3.5, 30.0  # later waves: 1.5 times the last wave's slowest arm, plus a second
WINDOW_S = 8.0  # long enough for a restart's start and arm even on a loaded machine
ARM_BEFORE_S = 1.5
RESEND_MARGIN_S = 1.0  # a restart armed later than this before the window's end may find no time to send
EXECUTOR = {"clock_source": "none", "final_check_s": 0.3, "answer_timeout_s": 1.0, "max_attempts": 10}
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass
class Round:
    number: int
    wave: int
    command: str  # fire | run
    variant: str
    point: str | float
    names: dict[str, str]  # username -> account name
    config: Path
    # instants in seconds from T, on the event loop's clock
    started: float | None = None  # the first process started
    armed: float | None = None  # it logged executor.armed
    kill_s: float | None = None  # the SIGKILL went
    killed: bool = False  # the SIGKILL ended it (it had not ended by itself)
    restart_s: float | None = None  # the restart started
    restart_armed: float | None = None
    restart_end: float | None = None
    restart_code: int | None = None
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    rows: dict[tuple[str, str], dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tails: dict[str, str] = field(default_factory=dict)

    @property
    def counted_kill(self) -> bool:
        """A kill that counts: it ended a process that had armed (one killed while importing tests little)."""
        return self.killed and self.armed is not None and self.kill_s is not None and self.armed <= self.kill_s

    @property
    def had_the_window(self) -> bool:
        """Whether the restart got going while the window could still take a send (see the module docstring)."""
        if self.restart_armed is not None:
            return self.restart_armed <= WINDOW_S - RESEND_MARGIN_S
        return self.restart_end is not None and self.restart_end < WINDOW_S

    @property
    def label(self) -> str:
        point = self.point if isinstance(self.point, str) else f"{self.point:+.3f} s"
        return f"round {self.number} (wave {self.wave}, {self.command}, variant {self.variant}, kill point {point})"

    def counts_text(self) -> str:
        per_account: dict[str, list[str]] = {}
        for (name, isin), n in sorted(self.counts.items()):
            per_account.setdefault(name, []).append(f"{isin[4:8]}={n}")
        return "; ".join(f"{name}: {' '.join(parts)}" for name, parts in per_account.items())

    def summary(self) -> str:
        def at(value: float | None) -> str:
            return f"{value:+.3f} s" if value is not None else "never"

        verdict = "FAIL" if self.problems else "ok"
        state = "killed" if self.killed else "had already ended"
        return (
            f"{verdict:4} {self.label}: armed {at(self.armed)}, SIGKILL {at(self.kill_s)} ({state}); restart "
            f"{at(self.restart_s)}, armed {at(self.restart_armed)}, exit {self.restart_code}; booked {self.counts_text()}"
        )

    def failure(self) -> str:
        lines = [self.summary(), *(f"    - {p}" for p in self.problems), *(f"    note: {n}" for n in self.notes)]
        for name, tail in self.tails.items():
            lines += [f"    {name}:", tail]
        return "\n".join(lines)


async def test_sigkill_at_the_open_never_doubles_or_drops_an_order(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(PASSWORD_ENV, DEFAULT_PASSWORD)
    caplog.set_level(logging.CRITICAL, "aiohttp.server")  # a killed daemon's half-read request is expected here
    sim = Simulator.default(accounts=0, brokers=list(VARIANTS), settings=SimSettings(seed=SEED))
    async with sim, Zygote.running(tmp_path / "fifos") as daemons:
        rounds = _plan_rounds(sim, tmp_path)
        await _warm_the_cache(daemons, sim, tmp_path, rounds)
        for faults in VARIANTS.values():
            for fault in faults:
                sim.add_fault(fault)
        zone = _noon_zone(sim)
        trap = NewOrderTrap(sim)
        lead_s = FIRST_LEAD_S
        busy: list[asyncio.Future[None]] = []  # every restart so far: the simulator's open moves only when all are done
        with trap.installed():
            for wave in range(WAVES + SPARE_WAVES):
                if wave >= WAVES and sum(r.counted_kill for r in rounds) >= MIN_KILLS:
                    break
                mine = [r for r in rounds if r.wave == wave]
                killed, restarts = await _play_wave(daemons, sim, trap, zone, mine, lead_s, list(busy))
                await killed
                busy.append(restarts)
                lead_s = _next_lead(mine, lead_s)
            await asyncio.gather(*busy)
    played = [r for r in rounds if r.restart_s is not None]
    for r in played:
        print(r.summary())
    failing = [r for r in played if r.problems]
    assert not failing, f"{len(failing)} of {len(played)} rounds failed:\n" + "\n".join(r.failure() for r in failing)
    kills = sum(r.counted_kill for r in played)
    assert kills >= MIN_KILLS, (
        f"only {kills} of {len(played)} rounds killed an armed daemon (at least {MIN_KILLS} "
        "needed):\n" + "\n".join(r.summary() for r in played if not r.counted_kill)
    )


def _plan_rounds(sim: Simulator, tmp_path: Path) -> list[Round]:
    """Every round's accounts (the spare waves' too), added to the simulator, and where its config will be."""
    plans: list[tuple[int, str, str, str | float]] = []
    for wave in range(WAVES + SPARE_WAVES):
        plans += [(wave, "fire", variant, FIRE_POINTS[(wave + 2 * v) % WAVES]) for v, variant in enumerate(VARIANTS)]
        if wave in RUN_POINTS:
            plans.append((wave, "run", "plain", RUN_POINTS[wave]))
    rounds = []
    for number, (wave, command, variant, point) in enumerate(plans, start=1):
        names = {}
        for j in range(ACCOUNTS_PER_ROUND):
            username = f"{60_000_000 + number * 10 + j:010d}"
            sim.add_account(variant, username, DEFAULT_PASSWORD, buying_power=BUYING_POWER)
            names[username] = f"r{number:02d}-{variant}-{j}"
        rounds.append(
            Round(number, wave, command, variant, point, names, tmp_path / f"round{number:02d}" / "config.yaml")
        )
    return rounds


def _accounts(rounds: list[Round]) -> list[dict]:
    return [
        {
            "name": name,
            "broker": r.variant,
            "username": username,
            "password_env": PASSWORD_ENV,
            "orders": [{"isin": isin, "side": "buy", "price": "max", "volume": "auto"} for isin in ISINS],
        }
        for r in rounds
        for username, name in r.names.items()
    ]


async def _warm_the_cache(daemons: Zygote, sim: Simulator, tmp_path: Path, rounds: list[Round]) -> None:
    """One warmup for every round's accounts: tokens (captcha logins), buying power, limits, all in the one cache."""
    path = tmp_path / "warmup.yaml"
    data = sim_config_data(
        sim,
        state_dir=str(tmp_path / "warmup-state"),
        cache={"dir": str(tmp_path / "cache")},
        accounts=_accounts(rounds),
    )
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    warm = await daemons.start("warmup", "--config", str(path))
    code = await warm.wait(timeout=180)
    assert code == 0, f"the warmup of every round's accounts failed (exit {code}):\n{warm.tail(30)}"


def _noon_zone(sim: Simulator) -> str:
    """A zone where it is about noon now, so no wave's day crosses midnight."""
    offset = 12 - sim.now().hour
    return f"Etc/GMT{-offset:+d}" if offset else "UTC"


def _next_lead(wave: list[Round], lead_s: float) -> float:
    """The next wave's lead from how long this wave's fires took to arm: the machine's load (other jobs on a
    shared host) changes from minute to minute, and a process still importing at T would test little."""
    took = [r.armed - r.started for r in wave if r.command == "fire" and r.armed is not None and r.started is not None]
    if len(took) < len([r for r in wave if r.command == "fire"]):
        return min(lead_s * 2, MAX_LEAD_S)  # one did not arm before its kill: much more time
    return min(max(1.5 * max(took) + 1.0, MIN_LEAD_S), MAX_LEAD_S)


def _write_config(sim: Simulator, r: Round, zone: str, warmup_at: datetime, open_at: datetime) -> None:
    r.config.parent.mkdir(parents=True, exist_ok=True)
    cache_dir = r.config.parent.parent / "cache"
    schedule = {
        "warmup": f"{warmup_at:%H:%M:%S.%f}",
        "open": f"{open_at:%H:%M:%S.%f}",
        "arm_before_s": ARM_BEFORE_S,
        "window_s": WINDOW_S,
        "refresh_s": 60,
        "trading_days": ALL_DAYS,
        "official_holidays": False,
    }
    data = sim_config_data(
        sim,
        timezone=zone,
        state_dir=str(r.config.parent / "state"),
        cache={"dir": str(cache_dir)},
        schedule=schedule,
        executor=EXECUTOR,
        accounts=_accounts([r]),
    )
    r.config.write_text(yaml.safe_dump(data, allow_unicode=True))


async def _play_wave(
    daemons: Zygote,
    sim: Simulator,
    trap: NewOrderTrap,
    zone: str,
    rounds: list[Round],
    lead_s: float,
    earlier: list[asyncio.Future[None]],
) -> tuple[asyncio.Future[object], asyncio.Future[object]]:
    """Start the wave's rounds for an open `lead_s` ahead (ARM_BEFORE_S more with a `run` round, whose service
    arms that long before the open). Returns two futures: every first process killed (and reaped), and every
    restart done. The simulator's open moves to this T only once every earlier restart is done (one still
    sending would meet "market closed"); if that is too late, the market simply stays open."""
    loop = asyncio.get_running_loop()
    now = sim.now().astimezone(ZoneInfo(zone))
    if any(r.command == "run" for r in rounds):
        lead_s += ARM_BEFORE_S
    open_at = now + timedelta(seconds=lead_s)
    open_at = open_at.replace(microsecond=open_at.microsecond // 1000 * 1000)  # `--at` takes milliseconds
    open_loop = loop.time() + (open_at - sim.now()).total_seconds()  # T on the event loop's clock
    for r in rounds:
        _write_config(sim, r, zone, now - timedelta(seconds=1), open_at)

    async def open_then() -> None:
        await asyncio.gather(*earlier)
        if sim.now() < open_at:
            sim.set_open_at(open_at)

    opened = asyncio.ensure_future(open_then())
    at = f"{open_at:%H:%M:%S.%f}"[:-3]
    kills = [loop.create_future() for _ in rounds]
    plays = [asyncio.ensure_future(_play(daemons, sim, trap, r, at, open_loop, k)) for r, k in zip(rounds, kills)]
    return asyncio.gather(*kills), asyncio.gather(opened, *plays)


async def _play(
    daemons: Zygote,
    sim: Simulator,
    trap: NewOrderTrap,
    r: Round,
    at: str,
    open_loop: float,
    killed: asyncio.Future[None],
) -> None:
    """Start, SIGKILL at the round's point, restart the same command, let it finish, check the books."""
    loop = asyncio.get_running_loop()

    def now() -> float:
        return loop.time() - open_loop

    args = (
        ("fire", "--config", str(r.config), "--at", at) if r.command == "fire" else ("run", "--config", str(r.config))
    )
    try:
        r.started = now()
        first = await daemons.start(*args)
        noting = asyncio.ensure_future(_note_armed(first, r, open_loop, "armed"))
        if r.point == "first":
            hit = asyncio.Event()

            def kill_now(record: object) -> None:
                first.kill()
                r.kill_s = now()
                hit.set()

            trap.on_first(r.names, kill_now)
            try:
                async with asyncio.timeout(max(WINDOW_S - now(), 0.0)):
                    await hit.wait()
            except TimeoutError:
                trap.cancel(r.names)
                r.notes.append("no NewOrder of the round reached the simulator before the window's end")
                first.kill()
                r.kill_s = now()
        else:
            assert isinstance(r.point, float)
            await asyncio.sleep(max(r.point - now(), 0.0))  # the deliberate wait until the kill instant
            first.kill()
            r.kill_s = now()
        code = await first.wait(timeout=30)
        noting.cancel()
        r.killed = code == -signal.SIGKILL
        if not r.killed:
            r.notes.append(f"the first {r.command} had ended by itself (exit {code}) before its kill point")
        r.tails["first " + r.command] = first.tail()
    finally:
        killed.set_result(None)
    r.restart_s = now()
    second = await daemons.start(*args)
    noting = asyncio.ensure_future(_note_armed(second, r, open_loop, "restart_armed"))
    if r.command == "fire":
        r.restart_code = await second.wait(timeout=WINDOW_S + 90)
        r.restart_end = now()
    else:
        if not await second.wait_event("report.day", timeout=WINDOW_S + 30 - now()):
            r.problems.append("the restarted run never reported the day (no report.day): it did not resume the window")
        r.restart_end = now()
        second.terminate()
        r.restart_code = await second.wait(timeout=30)
    noting.cancel()
    r.tails["restarted " + r.command] = second.tail()
    if _leaks(first) or _leaks(second):
        r.problems.append("the daemon's output shows the accounts' password")
    await _check(daemons, sim, r)


async def _note_armed(proc: DaemonProcess, r: Round, open_loop: float, attribute: str) -> None:
    if await proc.wait_event("executor.armed", timeout=MAX_LEAD_S + WINDOW_S + 90):
        setattr(r, attribute, asyncio.get_running_loop().time() - open_loop)


def _leaks(proc: DaemonProcess) -> bool:
    return any(DEFAULT_PASSWORD in line for line in proc.out + proc.err)


async def _check(daemons: Zygote, sim: Simulator, r: Round) -> None:
    """The round's books at the broker against its report (see the module docstring for what is asserted)."""
    r.counts = counts_by_order(sim, r.names, ISINS)
    report = await daemons.start("report", "--config", str(r.config), "--json")
    code = await report.wait(timeout=60)
    r.rows = report_rows("\n".join(report.out))
    if code != 0 or not r.rows:
        r.problems.append(f"report --json exited {code} with {len(r.rows)} rows")
        r.tails["report"] = report.tail()
    if _leaks(report):
        r.problems.append("report's output shows the accounts' password")
    readable = r.variant != "unread"
    if not r.had_the_window:
        r.notes.append("the restart came too late in the window to require every order sent")
    for (name, isin), n in sorted(r.counts.items()):
        what = f"{name} {isin}"
        if n > 1:
            r.problems.append(f"DUPLICATE: {what} booked {n} times at the broker")
        row = r.rows.get((name, isin))
        if row is None:
            if r.rows:
                r.problems.append(f"{what}: no row in report --json")
            if readable and n == 0 and r.had_the_window:
                r.problems.append(f"MISSING: {what} never booked though the restart had the window")
            continue
        accepted, result = bool(row.get("accepted")), str(row.get("result"))
        if accepted and n != 1:
            r.problems.append(f"{what}: reported accepted, booked {n} times")
        if readable and n == 1 and not accepted:
            r.problems.append(f"{what}: booked once, reported {result!r}")
        if readable and n == 0 and r.had_the_window:
            r.problems.append(f"MISSING: {what} never booked though the restart had the window; reported {result!r}")
        if not readable and not accepted and not result.startswith("unknown"):
            r.problems.append(f"{what}: reported {result!r}; the broker cannot be asked, so it must be unknown")
    if r.command == "fire":
        everything = len(r.rows) >= len(r.counts) and all(row.get("accepted") for row in r.rows.values())
        expected = 0 if everything else 1
        if r.restart_code != expected:
            r.problems.append(f"the restarted fire exited {r.restart_code}, expected {expected} for its report")
    elif r.restart_code != 0:
        r.problems.append(f"the restarted run exited {r.restart_code} on SIGTERM, expected 0")
