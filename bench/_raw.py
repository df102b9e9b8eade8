"""Reusable core of the raw reference: a recording server in a child process, fire loops, and figures.

The server (its own process, so its work does not share our event loop) stamps the monotonic time at
which each request's first bytes were read (with the client's port), and answers every request with the
same small 200. On Linux CLOCK_MONOTONIC is one clock for every process, so its stamps compare with ours
directly. `fire_round` plans an instant, waits for it with `wait_until_monotonic`, calls a fire function
that writes one pre-built request per connection, and collects what happened, including when each request
left on the wire (the kernel's stamps from a loopback capture, `bench._capture`). The open-race benchmark
imports these pieces to compare the executor with this physical limit.
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import orjson

from bench._capture import CaptureUnavailable, WireCapture, first_sends, local_port
from daemon.clock import Clock, SystemClock
from daemon.net import ClockReference, WireConnection, build_request, wait_until_monotonic

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
ARRIVALS_PATH = "/__arrivals"
ORDER_PATH = "/gs/trading/api/v2/orders/NewOrder"
REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the recording server (child process)


class _Recorder(asyncio.Protocol):
    """Stamps each request's first bytes; `GET /__arrivals` answers (and clears) [stamp, client port] pairs as JSON."""

    def __init__(self, arrivals: list[tuple[int, int]], mono: Callable[[], int]) -> None:
        self.arrivals, self.mono = arrivals, mono
        self.parser = httptools.HttpRequestParser(self)
        self.now = 0
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.peer_port = transport.get_extra_info("peername")[1]

    def data_received(self, data: bytes) -> None:
        self.now = self.mono()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.begun = self.now

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        if self.url.decode() == ARRIVALS_PATH:
            body = orjson.dumps(self.arrivals)
            self.arrivals.clear()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
        else:
            self.arrivals.append((self.begun, self.peer_port))
            self.transport.write(OK_RESPONSE)


async def _serve(max_seconds: float) -> None:
    arrivals: list[tuple[int, int]] = []
    mono = SystemClock().monotonic_ns
    server = await asyncio.get_running_loop().create_server(
        lambda: _Recorder(arrivals, mono), "127.0.0.1", 0, backlog=4096
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(max_seconds)  # bounded: the server ends by itself even if its parent died


class RecordingServer:
    """The recording server in a child process on 127.0.0.1; use as a context manager."""

    def __init__(self, max_seconds: float = 300.0) -> None:
        self.max_seconds = max_seconds
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> RecordingServer:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench._raw", str(self.max_seconds)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        line = self._process.stdout.readline() if self._process.stdout else ""
        if not line.strip().isdigit():
            self.__exit__()
            raise RuntimeError("the recording server did not start")
        self.port = int(line)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def take_arrivals(self, clock: Clock) -> list[list[int]]:
        """The [arrival stamp, client port] pairs recorded since the last call (and forget them)."""
        async with WireConnection(self.base_url, clock) as conn:
            conn.send_nowait(build_request("GET", self.base_url + ARRIVALS_PATH, {}))
            return (await conn.next_response(30)).json()


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


# ---------------------------------------------------------------- the client side


def order_requests(base_url: str, count: int) -> list[bytes]:
    """`count` distinct pre-built NewOrder requests, shaped like the real ones (token, JSON body)."""
    return [
        build_request(
            "POST",
            base_url + ORDER_PATH,
            {"authorization": f"Bearer bench-token-{i:06d}"},
            orjson.dumps(
                {
                    "isin": "IRO1FOLD0001",
                    "side": 1,
                    "validity": 1,
                    "validityDate": None,
                    "accountType": 1,
                    "price": 12340,
                    "volume": 1000 + i,
                    "serialNumber": 0,
                }
            ),
        )
        for i in range(count)
    ]


class _RawClient(asyncio.Protocol):
    """A bare protocol: counts response bytes, since every answer is the same OK_RESPONSE."""

    def __init__(self) -> None:
        self.received = 0
        self.expected = 0
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def expect_one(self) -> asyncio.Future[None]:
        self.expected += len(OK_RESPONSE)
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.done is not None and not self.done.done() and self.received >= self.expected:
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("the recording server closed a connection"))


async def open_raw(port: int, count: int) -> list[_RawClient]:
    loop = asyncio.get_running_loop()
    return [(await loop.create_connection(_RawClient, "127.0.0.1", port))[1] for _ in range(count)]


async def open_wire(base_url: str, count: int, clock: Clock) -> list[WireConnection]:
    return [await WireConnection.open(base_url, clock) for _ in range(count)]


# ---------------------------------------------------------------- rounds and figures


@dataclass
class Round:
    planned_ns: int
    woke_ns: int
    sent_ns: list[int]
    arrivals_ns: list[int]
    arrival_by_port: dict[int, int] = field(default_factory=dict)  # the server's stamp per client port
    wire_by_port: dict[int, int] = field(default_factory=dict)  # when it left (kernel, on the monotonic clock)

    @property
    def first_send_error_ns(self) -> int:
        return self.sent_ns[0] - self.planned_ns

    @property
    def dispatch_ns(self) -> int:
        return self.sent_ns[-1] - self.planned_ns


@dataclass
class Figures:
    label: str
    accounts: int
    rounds: list[Round] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        dispatch = [r.dispatch_ns / 1e6 for r in self.rounds]
        first = [r.first_send_error_ns / 1e3 for r in self.rounds]
        woke = [(r.woke_ns - r.planned_ns) / 1e3 for r in self.rounds]
        loop = [(r.sent_ns[-1] - r.sent_ns[0]) / 1e6 for r in self.rounds]
        arrivals = [(a - r.planned_ns) / 1e6 for r in self.rounds for a in r.arrivals_ns]
        gaps = [(b - a) / 1e3 for r in self.rounds for a, b in zip(r.sent_ns, r.sent_ns[1:])] or [0.0]
        return {
            "dispatch_ms_p50": pct(dispatch, 50),
            "dispatch_ms_p99": pct(dispatch, 99),
            "loop_ms_p50": pct(loop, 50),
            "write_us_p50": pct(gaps, 50),
            "write_us_p90": pct(gaps, 90),
            "wake_late_us_p50": pct(woke, 50),
            "wake_late_us_p99": pct(woke, 99),
            "first_send_error_us_p50": pct(first, 50),
            "first_send_error_us_p99": pct(first, 99),
            "arrival_ms_p50": pct(arrivals, 50),
            "arrival_ms_p99": pct(arrivals, 99),
            "arrival_ms_max": max(arrivals),
            **self.wire_summary(),
        }

    def wire_summary(self) -> dict[str, Any]:
        """On the wire (the kernel's stamps) after the instant: every request, and each round's first; how many
        requests have no stamp, and how many left after the server says they arrived (both 0 when sane)."""
        wire = [(w - r.planned_ns) / 1e6 for r in self.rounds for w in r.wire_by_port.values()]
        first = [(min(r.wire_by_port.values()) - r.planned_ns) / 1e3 for r in self.rounds if r.wire_by_port]
        missing = sum(len(r.arrivals_ns) - len(r.wire_by_port) for r in self.rounds)
        late = sum(w > r.arrival_by_port.get(port, w) for r in self.rounds for port, w in r.wire_by_port.items())
        return {
            "wire_ms_p50": pct(wire, 50) if wire else None,
            "wire_ms_p99": pct(wire, 99) if wire else None,
            "wire_ms_max": max(wire, default=None),
            "wire_first_us_p50": pct(first, 50) if first else None,
            "wire_first_us_p99": pct(first, 99) if first else None,
            "wire_missing": missing,
            "wire_after_arrival": late,
        }


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank, so p99 of 10 values is the largest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]


FireFn = Callable[[], list[int]]
"""Writes every pre-built request once, in one loop; returns the monotonic ns after each write."""


def raw_fire(clients: Sequence[_RawClient], requests: Sequence[bytes], clock: Clock) -> FireFn:
    return raw_loop([(c.transport, r) for c, r in zip(clients, requests)], clock)


def raw_loop(pairs: Sequence[tuple[Any, bytes]], clock: Clock) -> FireFn:
    """The physical limit: `transport.write` then a clock read, per pair, nothing else."""
    mono = clock.monotonic_ns

    def fire() -> list[int]:
        sent = []
        append = sent.append
        for transport, data in pairs:
            transport.write(data)
            append(mono())
        return sent

    return fire


async def fire_round(
    server: RecordingServer,
    fire: FireFn,
    expect: Callable[[], list[asyncio.Future]],
    accounts: int,
    clock: Clock,
    lead_s: float = 0.05,
    response_timeout_s: float = 30.0,
    capture: WireCapture | None = None,
    ports: Sequence[int | None] = (),
) -> Round:
    """Plan an instant `lead_s` ahead, wait for it, fire, await every answer, and collect the arrivals (and, with
    a capture, when each request on `ports`, the fired connections' local ports, left)."""
    waiting = expect()
    if capture is not None:
        capture.collect()  # the previous round's and the arrivals' requests: not this round's
    reference = ClockReference.take(clock)
    planned = clock.monotonic_ns() + int(lead_s * 1e9)
    woke = await wait_until_monotonic(planned, clock)
    sent = fire()
    async with asyncio.timeout(response_timeout_s):
        await asyncio.gather(*waiting)
    wire: dict[int, int] = {}
    if capture is not None:
        stamps = first_sends(capture.collect(), {p: str(p) for p in ports if p is not None})
        wire = {int(port): reference.monotonic_of(ns) for port, ns in stamps.items()}
    pairs = await server.take_arrivals(clock)
    if len(pairs) != accounts:
        raise RuntimeError(f"the server saw {len(pairs)} requests, not {accounts}")
    return Round(planned, woke, sent, sorted(a for a, _ in pairs), {p: a for a, p in pairs}, wire)


async def measure(
    accounts: int, rounds: int, modes: Sequence[str], server: RecordingServer, clock: Clock | None = None
) -> list[Figures]:
    """The raw transport.write loop and/or the WireConnection loop (fire_all), rounds alternating between modes.

    Each mode has its own `accounts` connections, all opened first; alternating the rounds spreads
    the machine's drifts (other processes, the server's state) over the modes alike.
    """
    from daemon.net import fire_all

    clock = clock or SystemClock()
    _raise_fd_limit(accounts * 2 * len(modes) + 256)
    requests = order_requests(server.base_url, accounts)
    plans: list[tuple[Figures, FireFn, Callable[[], list[asyncio.Future]], list[int | None]]] = []
    closers: list[Callable[[], object]] = []
    capture = open_capture([server.port])
    if capture is not None:
        closers.append(capture.close)
    try:
        for mode in modes:
            if mode == "raw":
                clients = await open_raw(server.port, accounts)
                closers += [c.transport.close for c in clients]
                plans.append(
                    (
                        Figures(mode, accounts),
                        raw_fire(clients, requests, clock),
                        lambda clients=clients: [c.expect_one() for c in clients],
                        [local_port(c.transport) for c in clients],
                    )
                )
            elif mode == "wire":
                conns = await open_wire(server.base_url, accounts, clock)
                closers += [c.close for c in conns]
                pairs = list(zip(conns, requests))
                plans.append(
                    (
                        Figures(mode, accounts),
                        lambda pairs=pairs: fire_all(pairs),  # type: ignore[misc]
                        lambda conns=conns: [asyncio.ensure_future(c.next_response(30)) for c in conns],
                        [c.local_port for c in conns],
                    )
                )
            else:
                raise ValueError(f"unknown mode {mode!r}; use raw or wire")
        for _ in range(rounds):
            for figures, fire, expect, ports in plans:
                figures.rounds.append(
                    await fire_round(server, fire, expect, accounts, clock, capture=capture, ports=ports)
                )
    finally:
        for close in closers:
            close()
    if capture is not None and capture.dropped:
        print(f"on the wire: the capture lost {capture.dropped} segments; its figures miss them", file=sys.stderr)
    return [figures for figures, _, _, _ in plans]


def open_capture(ports: Sequence[int]) -> WireCapture | None:
    """A loopback capture of the requests to `ports`, or None (said once on stderr) where it is not permitted."""
    try:
        return WireCapture(ports).open()
    except CaptureUnavailable as exc:
        print(f"{exc}.", file=sys.stderr)
        return None


class _NullTransport:
    """Takes writes and does nothing: isolates the Python cost of a fire loop from the send syscall."""

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def loop_overhead_ns(accounts: int, clock: Clock | None = None) -> dict[str, float]:
    """Python-side cost per account of the raw loop and of `fire_all`, with writes that do nothing (best of 7)."""
    import timeit

    from daemon.net import fire_all

    clock = clock or SystemClock()
    data = order_requests("http://127.0.0.1:1", 1)[0]
    conns = [WireConnection("http://127.0.0.1:1", clock) for _ in range(accounts)]
    for conn in conns:  # attach a null transport, as connect() would attach a real one
        conn._transport, conn._error = _NullTransport(), None  # type: ignore[assignment]
    pairs = [(conn, data) for conn in conns]
    raw = raw_loop([(_NullTransport(), data) for _ in range(accounts)], clock)

    def best(fn: Callable[[], object]) -> float:
        return min(timeit.repeat(fn, number=20, repeat=7)) / 20 / accounts * 1e9

    return {"raw_ns_per_account": best(raw), "fire_all_ns_per_account": best(lambda: fire_all(pairs))}


if __name__ == "__main__":  # the child process: python -m bench._raw MAX_SECONDS
    _raise_fd_limit(8192)
    asyncio.run(_serve(float(sys.argv[1])))
