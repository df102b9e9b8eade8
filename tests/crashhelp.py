"""Helpers for tests/test_crash_restart.py: daemon processes a test SIGKILLs at chosen instants, and a trap that
lets it kill one inside the simulator the moment the broker has booked the first order.

A crash test needs dozens of daemon processes; each `python -m daemon` spends about 1.4 s of CPU importing
before it does anything, which on a 2-core machine is most of the test. So the processes are forked from a
zygote (`python -m tests.crashhelp`, this module) that has imported every command once: each child runs
`daemon.cli.main(argv)`, exactly what `python -m daemon ARGV` runs, in a process of its own with its own
stdout and stderr, and dies of SIGKILL like any other (tests/test_cache_kill.py forks its writers the same
way).

The zygote's protocol, JSON lines: on stdin `{"id", "argv", "cwd", "out", "err"}` (out and err are FIFOs
the test is reading); on stdout `{"id", "pid"}` once forked and `{"pid", "code"}` once reaped (code as
`subprocess` gives it: negative for a signal). Closing its stdin kills what is left and ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.clock import SystemClock
from daemon.config import Config, load_config
from daemon.firing import read_journal
from daemon.sim import RequestRecord
from daemon.simulator import DEFAULT_PASSWORD, PASSWORD_ENV, Simulator
from daemon.testing import SimulatorSolver
from daemon.warmup import warmup
from daemon.wiring import Wiring
from tests.processes import daemon_env

LINE_LIMIT = 1 << 20  # a JSON log line carrying a broker's answer can be long; the default 64 KiB would cut the reader


class DaemonProcess:
    """One forked `daemon.cli.main(argv)`: its output read as it comes (a full pipe never stalls it), and the
    `event` of every JSON log line noted, so a test can wait for one instead of sleeping."""

    def __init__(
        self, pid: int, exited: asyncio.Future[int], out: asyncio.StreamReader, err: asyncio.StreamReader
    ) -> None:
        self.pid = pid
        self._exited = exited
        self.out: list[str] = []
        self.err: list[str] = []
        self._seen: dict[str, asyncio.Event] = {}
        self._readers = [
            asyncio.ensure_future(self._read(out, self.out)),
            asyncio.ensure_future(self._read(err, self.err)),
        ]

    async def _read(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        async for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            into.append(line)
            name = _event_name(line)
            if name is not None:
                self._flag(name).set()

    def _flag(self, name: str) -> asyncio.Event:
        return self._seen.setdefault(name, asyncio.Event())

    def _signal(self, signum: int) -> None:
        if not self._exited.done():  # once reaped, the pid may be another process's
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL now. Whether it was still running shows in `wait()`'s code: -9 only if this signal ended it."""
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    async def wait(self, timeout: float) -> int | None:
        """The exit code (negative: the signal that ended it), or None if it was still running after `timeout`
        (it is then killed, so no process outlives the test)."""
        try:
            async with asyncio.timeout(timeout):
                code = await asyncio.shield(self._exited)
        except TimeoutError:
            self.kill()
            await self._exited
            code = None
        await asyncio.gather(*self._readers)
        return code

    async def wait_event(self, name: str, timeout: float) -> bool:
        """Whether a JSON log line with this `event` came within `timeout` seconds."""
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._flag(name).wait()
        except TimeoutError:
            return False
        return True

    def tail(self, lines: int = 12) -> str:
        """The last lines of its output, for a failure message (the daemon's output never holds a secret, and
        the test checks that too)."""
        shown = (self.out + self.err)[-lines:]
        return "\n".join("      | " + line[:400] for line in shown) or "      | (no output)"


def _event_name(line: str) -> str | None:
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    event = data.get("event") if isinstance(data, dict) else None
    return event if isinstance(event, str) else None


class Zygote:
    """The test's side of the zygote: `start(*argv)` is a `python -m daemon ARGV` that skips the imports."""

    def __init__(self, proc: asyncio.subprocess.Process, fifo_dir: Path) -> None:
        self._proc = proc
        self._fifo_dir = fifo_dir
        self._count = 0
        self._started: dict[int, asyncio.Future[tuple[int, asyncio.Future[int]]]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, fifo_dir: Path) -> AsyncIterator[Zygote]:
        fifo_dir.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.crashhelp",
            env=daemon_env({PASSWORD_ENV: DEFAULT_PASSWORD}),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
            limit=LINE_LIMIT,
        )
        zygote = cls(proc, fifo_dir)
        try:
            yield zygote
        finally:
            assert proc.stdin is not None
            proc.stdin.close()  # it kills and reaps what is left, then ends
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
            await zygote._reader

    async def _read(self) -> None:
        assert self._proc.stdout is not None
        async for raw in self._proc.stdout:
            message = json.loads(raw)
            if "id" in message:
                exited = self._exits[message["pid"]] = asyncio.get_running_loop().create_future()
                self._started.pop(message["id"]).set_result((message["pid"], exited))
            else:
                self._exits.pop(message["pid"]).set_result(message["code"])
        for waiting in [*self._started.values(), *self._exits.values()]:
            if not waiting.done():
                waiting.set_exception(RuntimeError("the zygote ended before its children"))

    async def start(self, *argv: str) -> DaemonProcess:
        self._count += 1
        loop = asyncio.get_running_loop()
        fifos = [self._fifo_dir / f"{self._count}.{name}" for name in ("out", "err")]
        readers = []
        for fifo in fifos:
            os.mkfifo(fifo, 0o600)
            readers.append(
                os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            )  # opened first, so the zygote's open never blocks
        started = self._started[self._count] = loop.create_future()
        request = {
            "id": self._count,
            "argv": list(argv),
            "cwd": os.getcwd(),
            "out": str(fifos[0]),
            "err": str(fifos[1]),
        }
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(request).encode() + b"\n")
        await self._proc.stdin.drain()
        pid, exited = await started  # the child holds the FIFOs' write ends now: reading sees EOF only when it ends
        streams = []
        for fd in readers:
            stream = asyncio.StreamReader(limit=LINE_LIMIT)
            await loop.connect_read_pipe(lambda s=stream: asyncio.StreamReaderProtocol(s), os.fdopen(fd, "rb", 0))
            streams.append(stream)
        for fifo in fifos:
            fifo.unlink()
        return DaemonProcess(pid, exited, *streams)


def serve_forks() -> None:
    """The zygote (see the module docstring): import every command once, then fork one child per request."""
    from daemon import cli

    cli.build_parser()  # imports every command module
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    children: set[int] = set()
    pending = b""

    def say(message: dict[str, Any]) -> None:
        os.write(1, json.dumps(message).encode() + b"\n")

    def reap() -> None:
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            children.discard(pid)
            say({"pid": pid, "code": os.waitstatus_to_exitcode(status)})

    while True:
        for key, _ in selector.select():
            if key.fd == wake_r:
                os.read(wake_r, 4096)
                reap()
                continue
            data = os.read(0, 65536)
            if not data:
                for pid in children:
                    os.kill(pid, signal.SIGKILL)
                while children:
                    pid, _status = os.waitpid(-1, 0)
                    children.discard(pid)
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                out = os.open(request["out"], os.O_WRONLY)
                err = os.open(request["err"], os.O_WRONLY)
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    selector.close()
                    for fd in (wake_r, wake_w):
                        os.close(fd)
                    _child(request, out, err)
                os.close(out)
                os.close(err)
                children.add(pid)
                say({"id": request["id"], "pid": pid})


def _child(request: dict[str, Any], out: int, err: int) -> None:
    """What `python -m daemon ARGV` does, in the forked child; never returns."""
    null = os.open(os.devnull, os.O_RDONLY)
    for source, target in ((null, 0), (out, 1), (err, 2)):
        os.dup2(source, target)
        os.close(source)
    code = 1
    try:
        os.chdir(request["cwd"])
        from daemon import cli

        code = cli.main(request["argv"])
    except SystemExit as exc:  # argparse's own exits
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 (the child must always end through os._exit below)
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class NewOrderTrap:
    """Calls an action inside the simulator the moment it has handled the first NewOrder of a watched account.

    The simulator's request log takes a record once the handler has booked (or refused) the order and before
    the answer is written to the socket, so a SIGKILL sent from the action lands after the broker booked the
    order and before the daemon could see the answer, let alone write it to its journal."""

    def __init__(self, sim: Simulator, route: str = "new_order") -> None:
        self._route = route  # the platform's order route: easytrader's is "batch"
        self._log = sim.request_log
        self._add = sim.request_log.add
        self._watched: dict[frozenset[str], Callable[[RequestRecord], None]] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator[NewOrderTrap]:
        self._log.add = self._added  # type: ignore[method-assign]
        try:
            yield self
        finally:
            del self._log.add  # the class's method again

    def on_first(self, usernames: Iterable[str], action: Callable[[RequestRecord], None]) -> None:
        self._watched[frozenset(usernames)] = action

    def cancel(self, usernames: Iterable[str]) -> None:
        self._watched.pop(frozenset(usernames), None)

    def _added(self, record: RequestRecord) -> None:
        self._add(record)
        if record.route != self._route:
            return
        for usernames, action in list(self._watched.items()):
            if record.username in usernames:
                del self._watched[usernames]
                action(record)


@dataclass
class KilledOpen:
    """A platform's kill test: what the broker held when the first `fire` died, and how the second one ended."""

    config: Config
    open_at: datetime
    names: dict[str, str]  # {username: account name}
    logins_warmed: int  # logins the simulator had seen once the warmup was done
    held_at_kill: int  # orders the simulator had booked when the first process died
    seen_at_kill: Any  # what `at_kill(sim)` returned then
    restart_code: int | None
    restart: DaemonProcess
    rows: dict[tuple[str, str], dict[str, Any]]  # `report --json`'s rows after the restart

    def assert_each_order_booked_once(self, sim: Simulator, isins: Iterable[str]) -> None:
        """The broker holds each order once; the restart found what the killed process had booked (a `lookup`
        record each) and sent the rest; and `report` says every order was accepted."""
        isins = tuple(isins)
        assert self.held_at_kill in (1, 2)  # the other account's first order left in the same loop, maybe booked too
        assert self.restart_code == 0, self.restart.tail(30)
        counts = counts_by_order(sim, self.names, isins)
        assert counts == {key: 1 for key in counts} and len(counts) == len(self.names) * len(isins)
        records = read_journal(self.config.state_dir, self.open_at.date())
        found = [r for r in records if r["kind"] == "lookup" and r["presence"] == "found" and r["reason"] == "restart"]
        assert len(found) == self.held_at_kill  # what the killed process sent and was booked, found in its lists
        assert len(self.rows) == len(counts) and all(r["accepted"] for r in self.rows.values())


async def fire_killed_at_first_order(
    sim: Simulator,
    path: Path,
    fifo_dir: Path,
    route: str = "new_order",
    lead_s: float = 6.0,
    at_kill: Callable[[Simulator], Any] = lambda sim: None,
) -> KilledOpen:
    """Warm the config's accounts, then `fire --at` an open `lead_s` ahead, SIGKILLed the moment the simulator has
    booked the first order (before its answer is written); start it again at once, and read `report --json`."""
    config = load_config(path)
    async with Wiring(config, SystemClock(), solver=SimulatorSolver(sim)) as services:  # the cache, warm
        assert all(r.ok for r in await warmup(services.clients(list(config.accounts)), services.clock))
    logins = len(sim.request_log.records(route="login"))
    names = {a.username: a.name for a in config.accounts}
    open_at = sim.now().astimezone(config.tz) + timedelta(seconds=lead_s)
    open_at = open_at.replace(microsecond=open_at.microsecond // 1000 * 1000)
    sim.set_open_at(open_at)
    at = f"{open_at:%H:%M:%S.%f}"[:-3]
    trap = NewOrderTrap(sim, route)
    async with Zygote.running(fifo_dir) as daemons:
        with trap.installed():
            first = await daemons.start("fire", "--config", str(path), "--at", at)
            hit = asyncio.Event()
            trap.on_first(names, lambda record: (first.kill(), hit.set()))
            async with asyncio.timeout(30):
                await hit.wait()
            assert await first.wait(timeout=30) == -9, first.tail()
        held, seen = len(sim.orders()), at_kill(sim)
        again = await daemons.start("fire", "--config", str(path), "--at", at)
        code = await again.wait(timeout=60)
        report = await daemons.start("report", "--config", str(path), "--json")
        assert await report.wait(timeout=60) == 0, report.tail()
    return KilledOpen(config, open_at, names, logins, held, seen, code, again, report_rows("\n".join(report.out)))


def counts_by_order(sim: Simulator, usernames: dict[str, str], isins: Iterable[str]) -> dict[tuple[str, str], int]:
    """Orders the simulator booked, per (account name, isin) of the accounts given as {username: name}."""
    counts = {(name, isin): 0 for name in usernames.values() for isin in isins}
    for order in sim.orders():
        name = usernames.get(order.username)
        if name is not None:
            counts[(name, order.isin)] = counts.get((name, order.isin), 0) + 1
    return counts


def report_rows(stdout: str) -> dict[tuple[str, str], dict[str, Any]]:
    """`report --json`'s rows by (account, isin); empty when the output is not that JSON."""
    try:
        data = json.loads(stdout)
    except ValueError:
        return {}
    rows = data.get("orders") if isinstance(data, dict) else None
    return {(str(r.get("account")), str(r.get("isin"))): r for r in rows or [] if isinstance(r, dict)}


if __name__ == "__main__":
    serve_forks()
