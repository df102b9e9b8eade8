"""The broker's clock as seen from here, and the local monotonic instant that matches the open on it.

offset = broker clock - local wall clock (seconds): broker time = local wall time + offset.
Three sources, each a server reading paired with the local send and receive times of its request:
- the HTTP `Date` header (whole seconds): sampled densely around the instants the broker's second
  ticks over, so consecutive readings straddle a tick; each straddle is a tick observation
  (round-trip midpoints), and the estimate is their median;
- a JSON epoch `timestamp` (the trading book's), fractional or whole seconds;
- NTP (a configured server), the classic four-timestamp exchange.
The arithmetic is pure functions over `Sample`s, tested on synthetic data without sleeping; the
sampling I/O is separate, takes an async probe (a WireConnection pool, aiohttp, anything) and an
injected clock, and stamps samples from the monotonic clock so a wall-clock step mid-sampling is harmless.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, NamedTuple

import ntplib

from daemon.clock import Clock
from daemon.logs import get_logger
from daemon.net._wire import WireConnection, WireResponse

log = get_logger("clocksync")

NS = 1_000_000_000
_ONE_US = datetime.resolution


class Reading(NamedTuple):
    """A probe's answer with the monotonic times it knows better than its caller (request written, first byte back)."""

    value: float
    send_monotonic_ns: int
    recv_monotonic_ns: int


Probe = Callable[[], Awaitable[float | Reading]]
"""One request to the server, returning its clock reading (epoch seconds), bare or as a Reading."""
Sleep = Callable[[float], Awaitable[Any]]


class ClockSyncError(Exception):
    """No usable estimate: too few answers, or none that straddles a tick of the broker's second."""


# ---------------------------------------------------------------- samples and estimates (pure)


@dataclass(frozen=True, slots=True)
class Sample:
    """One server reading (epoch seconds) and the local wall times its request left and its answer came."""

    send_wall_ns: int
    recv_wall_ns: int
    server_value: float

    @property
    def midpoint_ns(self) -> int:
        return (self.send_wall_ns + self.recv_wall_ns) // 2

    @property
    def rtt_ns(self) -> int:
        return self.recv_wall_ns - self.send_wall_ns


@dataclass(frozen=True, slots=True)
class OffsetEstimate:
    """broker time = local wall time + offset_s, give or take uncertainty_s."""

    offset_s: float
    uncertainty_s: float
    samples: int
    source: str


@dataclass(frozen=True, slots=True)
class TickObservation:
    """The broker's clock turned to `second` between two local instants (round-trip midpoints)."""

    second: int
    before_ns: int
    after_ns: int
    rtt_ns: int

    @property
    def tick_wall_ns(self) -> int:
        return (self.before_ns + self.after_ns) // 2

    @property
    def offset_s(self) -> float:
        return (self.second * NS - self.tick_wall_ns) / NS

    @property
    def uncertainty_s(self) -> float:
        """Half the bracket plus half the round trip (where in it the server read its clock is unknown)."""
        return (abs(self.after_ns - self.before_ns) + self.rtt_ns) / 2 / NS


def tick_observations(samples: Iterable[Sample]) -> list[TickObservation]:
    """Every tick of the broker's second that the `Date`-style (floored) readings straddle.

    For each second N read by some samples while others read N-1, the samples of both are ordered by
    midpoint and split where the fewest disagree (latency jitter can interleave them near the tick);
    the tick lies between the two midpoints either side of the split. Where readings interleave,
    the bracket is widened to cover the whole disagreeing stretch.
    """
    by_second: dict[int, list[Sample]] = {}
    for s in samples:
        by_second.setdefault(math.floor(s.server_value), []).append(s)
    observations = []
    for second in sorted(by_second):
        if second - 1 not in by_second:
            continue
        group = sorted(by_second[second - 1] + by_second[second], key=lambda s: s.midpoint_ns)
        after = [math.floor(s.server_value) == second for s in group]
        k = _best_split(after)
        lo, hi = group[k - 1], group[k]
        last_before = max(s.midpoint_ns for s, a in zip(group, after) if not a)
        first_after = min(s.midpoint_ns for s, a in zip(group, after) if a)
        before_ns, after_ns = min(lo.midpoint_ns, first_after), max(hi.midpoint_ns, last_before)
        observations.append(TickObservation(second, before_ns, after_ns, max(lo.rtt_ns, hi.rtt_ns)))
    return observations


def _best_split(after: list[bool]) -> int:
    """Index k (1..len-1) putting the fewest 'after' readings before k and 'before' readings from k on."""
    errors = [0] * (len(after) + 1)
    errors[0] = sum(1 for a in after if not a)
    for i, a in enumerate(after):
        errors[i + 1] = errors[i] + (1 if a else -1)
    best = min(errors)
    ties = [k for k, e in enumerate(errors) if e == best]
    k = round(statistics.median(ties))
    return min(max(k, 1), len(after) - 1)


def estimate_from_ticks(
    observations: Sequence[TickObservation], samples: int = 0, source: str = "date"
) -> OffsetEstimate:
    """Median offset of the sharpest tick observations (a coarse first bracket stops voting once finer ones exist)."""
    if not observations:
        raise ClockSyncError(f"no tick of the broker's second was observed in {samples} {source} readings")
    sharpest = min(o.uncertainty_s for o in observations)
    kept = [o for o in observations if o.uncertainty_s <= 2 * sharpest]
    offsets = [o.offset_s for o in kept]
    spread = (max(offsets) - min(offsets)) / 2  # ticks that disagree (several servers behind one name?) widen it
    return OffsetEstimate(
        offset_s=statistics.median(offsets),
        uncertainty_s=max(statistics.median(o.uncertainty_s for o in kept), spread),
        samples=samples,
        source=source,
    )


def estimate_from_date(samples: Sequence[Sample]) -> OffsetEstimate:
    """Offset from whole-second `Date` readings: the median over the ticks they straddle."""
    return estimate_from_ticks(tick_observations(samples), len(samples), "date")


def estimate_from_readings(samples: Sequence[Sample], source: str) -> OffsetEstimate:
    """Offset from fine-grained readings: median of (reading - local midpoint), give or take half the median
    round trip or the median deviation of the readings, whichever is larger."""
    if not samples:
        raise ClockSyncError(f"no {source} readings to estimate the broker's clock from")
    offsets = [s.server_value - s.midpoint_ns / NS for s in samples]
    middle = statistics.median(offsets)
    deviation = statistics.median(abs(o - middle) for o in offsets)  # readings that disagree widen it
    return OffsetEstimate(
        offset_s=middle,
        uncertainty_s=max(statistics.median(s.rtt_ns for s in samples) / 2 / NS, deviation),
        samples=len(samples),
        source=source,
    )


def estimate_from_timestamps(samples: Sequence[Sample]) -> OffsetEstimate:
    """Offset from a JSON epoch `timestamp`; whole-second values are treated like the `Date` header.

    Whole seconds are the floor of the server's time: with a tick straddled, the tick method applies;
    otherwise the reading stands for the middle of its second, give or take half a second.
    """
    if samples and all(float(s.server_value).is_integer() for s in samples):
        observations = tick_observations(samples)
        if observations:
            return estimate_from_ticks(observations, len(samples), "timestamp")
        centred = [Sample(s.send_wall_ns, s.recv_wall_ns, s.server_value + 0.5) for s in samples]
        est = estimate_from_readings(centred, "timestamp")
        return OffsetEstimate(est.offset_s, est.uncertainty_s + 0.5, est.samples, est.source)
    return estimate_from_readings(samples, "timestamp")


def parse_http_date(value: str | None) -> float:
    """Epoch seconds of an HTTP `Date` header (RFC 9110 IMF-fixdate; the obsolete forms too)."""
    if not value:
        raise ClockSyncError("the response carries no Date header")
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise ClockSyncError(f"the Date header {value!r} is not an HTTP date") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return float(int(when.timestamp()))


def parse_timestamp(body: Any, field: str = "timestamp") -> float:
    """The epoch seconds in `body[field]` (number or numeric string; milliseconds are recognized by size)."""
    try:
        value = float(body[field])
    except (KeyError, TypeError, ValueError):
        raise ClockSyncError(f"the response has no numeric {field!r} field") from None
    if not math.isfinite(value) or value <= 0:
        raise ClockSyncError(f"the {field!r} field is not an epoch time")
    return value / 1000 if value > 1e11 else value


# ---------------------------------------------------------------- from the broker's clock to a local deadline (pure)


@dataclass(frozen=True, slots=True)
class ClockReference:
    """The wall and monotonic clocks read at one instant, to carry wall-clock plans onto the monotonic clock."""

    wall_ns: int
    monotonic_ns: int

    @classmethod
    def take(cls, clock: Clock) -> ClockReference:
        before = clock.monotonic_ns()
        wall = clock.time_ns()
        after = clock.monotonic_ns()
        return cls(wall, (before + after) // 2)

    def wall_of(self, monotonic_ns: int) -> int:
        return self.wall_ns + (monotonic_ns - self.monotonic_ns)

    def monotonic_of(self, wall_ns: int) -> int:
        return self.monotonic_ns + (wall_ns - self.wall_ns)


def monotonic_deadline_ns(open_at: datetime, estimate: OffsetEstimate, reference: ClockReference) -> int:
    """The local monotonic instant (ns) at which the broker's clock reads `open_at`.

    Fixed on the monotonic clock, a later step of the wall clock (NTP, an operator) cannot move it.
    """
    if open_at.tzinfo is None:
        raise ValueError("open_at must be timezone-aware (the broker's local time, e.g. Asia/Tehran)")
    broker_ns = (open_at - datetime(1970, 1, 1, tzinfo=UTC)) // _ONE_US * 1000
    local_wall_ns = broker_ns - round(estimate.offset_s * NS)
    return reference.monotonic_of(local_wall_ns)


async def wait_until_monotonic(
    deadline_ns: int,
    clock: Clock,
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    spin_s: float = 0.002,
    max_spin_s: float = 0.02,
    approach_s: float = 0.02,
) -> int:
    """Sleep on the event loop until `spin_s` before the deadline, then spin on the clock to hit it.

    A long sleep first ends `approach_s` before the deadline, and a short one takes it to the spin: a sleep
    wakes late by the kernel's timer slack, 0.1 % of its length at normal priority (1.7 ms on a 1.7 s sleep,
    measured: 2.2-3.4 ms late with epoll's rounding up to the ms, past the 2 ms spin), and by up to 1 ms of
    that rounding even at real-time priority; a sleep of under 20 ms is late by its rounding alone.

    Returns the clock's monotonic ns when it stopped: at or just past the deadline, at once if the
    deadline has passed. The wait is bounded in real (loop) time by the time left plus `max_spin_s`
    of spinning, even if `clock` is not the loop's clock (a FakeClock never reaches the deadline).
    """
    loop = loop or asyncio.get_running_loop()
    mono = clock.monotonic_ns
    now = mono()
    if now >= deadline_ns:
        return now
    if getattr(clock, "virtual", False):  # a test's loop-time clock: fake time moves only while we sleep
        while (now := mono()) < deadline_ns:
            await asyncio.sleep(max((deadline_ns - now) / NS, 1e-9))
        return now
    loop_time = loop.time
    loop_deadline = loop_time() + (deadline_ns - now) / NS
    approach_s = max(approach_s, spin_s)  # the long sleep never ends inside the spin
    while (left := loop_deadline - loop_time()) > spin_s:
        await asyncio.sleep(left - approach_s if left > approach_s + spin_s else left - spin_s)
    give_up = loop_deadline + max_spin_s
    while (now := mono()) < deadline_ns and loop_time() < give_up:
        pass
    return now


# ---------------------------------------------------------------- sampling (I/O)


async def _take(probe: Probe, clock: Clock, ref: ClockReference) -> Sample:
    send = clock.monotonic_ns()
    answer = await probe()
    recv = clock.monotonic_ns()
    if isinstance(answer, Reading):
        return Sample(ref.wall_of(answer.send_monotonic_ns), ref.wall_of(answer.recv_monotonic_ns), answer.value)
    return Sample(ref.wall_of(send), ref.wall_of(recv), answer)


class _Sampler:
    """Probes launched at planned local instants, at most `max_in_flight` at once; failures are counted, not fatal."""

    def __init__(self, probe: Probe, clock: Clock, max_in_flight: int, timeout_s: float, sleep: Sleep) -> None:
        self.probe, self.clock, self.timeout_s, self.sleep = probe, clock, timeout_s, sleep
        self.ref = ClockReference.take(clock)
        self.slots = asyncio.Semaphore(max_in_flight)
        self.samples: list[Sample] = []
        self.failures = 0

    def now_wall_ns(self) -> int:
        return self.ref.wall_of(self.clock.monotonic_ns())

    def rtt_ns(self) -> int:
        return int(statistics.median(s.rtt_ns for s in self.samples)) if self.samples else 0

    async def one(self) -> None:
        async with self.slots:
            try:
                async with asyncio.timeout(self.timeout_s):
                    self.samples.append(await _take(self.probe, self.clock, self.ref))
            except Exception as exc:  # a lost probe is a lost sample; the rest still measure
                self.failures += 1
                log.debug("clock_probe_failed", error=type(exc).__name__)

    async def at(self, targets_wall_ns: Iterable[int]) -> None:
        """One probe per target, each sent so that its round-trip midpoint lands near the target."""
        half_rtt = self.rtt_ns() // 2
        tasks = []
        for target in targets_wall_ns:
            delay = (target - half_rtt - self.now_wall_ns()) / NS
            if delay > 0:
                await self.sleep(delay)
            tasks.append(asyncio.ensure_future(self.one()))
        await asyncio.gather(*tasks)


async def sample_date_ticks(
    probe: Probe,
    clock: Clock,
    *,
    ticks: int = 3,
    coarse_spacing_s: float = 0.05,
    fine_spacing_s: float = 0.004,
    margin_s: float = 0.01,
    max_in_flight: int = 8,
    max_probes_per_tick: int = 24,
    timeout_s: float = 2.0,
    sleep: Sleep = asyncio.sleep,
) -> list[Sample]:
    """Whole-second readings taken where they bracket the broker's ticks (about `ticks` + 2 seconds).

    Warm-up: `max_in_flight` concurrent probes (opens the probe's connections, measures the round
    trip). Coarse: one second of probes `coarse_spacing_s` apart, which straddles one tick. Fine: for
    each of the next `ticks` broker seconds, probes `fine_spacing_s` apart across the predicted tick
    give or take the current uncertainty plus `margin_s`; each round narrows the prediction for the next.
    """
    sampler = _Sampler(probe, clock, max_in_flight, timeout_s, sleep)
    await asyncio.gather(*(sampler.one() for _ in range(max_in_flight)))
    coarse = int(coarse_spacing_s * NS)
    start = sampler.now_wall_ns() + sampler.rtt_ns()
    await sampler.at(range(start, start + NS + 2 * coarse, coarse))
    for _ in range(ticks):
        est = estimate_from_date(sampler.samples)
        half_ns = int(min(max(est.uncertainty_s + margin_s, 2 * fine_spacing_s), 0.5) * NS)
        spacing = max(int(fine_spacing_s * NS), 2 * half_ns // max(max_probes_per_tick - 1, 1))
        offset_ns = round(est.offset_s * NS)
        earliest_broker_ns = sampler.now_wall_ns() + offset_ns + half_ns + sampler.rtt_ns()
        tick_wall_ns = (earliest_broker_ns // NS + 1) * NS - offset_ns
        await sampler.at(range(tick_wall_ns - half_ns, tick_wall_ns + half_ns + 1, spacing))
    if sampler.failures:
        log.info("clock_probes_lost", lost=sampler.failures, kept=len(sampler.samples))
    return sampler.samples


async def sample_readings(
    probe: Probe,
    clock: Clock,
    *,
    count: int = 7,
    spacing_s: float = 0.05,
    timeout_s: float = 2.0,
    sleep: Sleep = asyncio.sleep,
) -> list[Sample]:
    """`count` readings one after another, `spacing_s` apart (for fractional timestamps)."""
    sampler = _Sampler(probe, clock, 1, timeout_s, sleep)
    start = sampler.now_wall_ns()
    await sampler.at(range(start, start + count * int(spacing_s * NS), int(spacing_s * NS)))
    return sampler.samples


async def measure_date_offset(probe: Probe, clock: Clock, **options: Any) -> OffsetEstimate:
    """Sample the `Date` header around ticks (options as for `sample_date_ticks`) and estimate."""
    return estimate_from_date(await sample_date_ticks(probe, clock, **options))


async def measure_timestamp_offset(probe: Probe, clock: Clock, **options: Any) -> OffsetEstimate:
    """Sample a JSON `timestamp` (options as for `sample_readings`) and estimate."""
    return estimate_from_timestamps(await sample_readings(probe, clock, **options))


def wire_probe(
    connections: Sequence[WireConnection],
    request: bytes | Callable[[], bytes],
    source: Literal["date", "timestamp"] = "date",
    *,
    field: str = "timestamp",
    timeout_s: float = 2.0,
) -> Probe:
    """A probe over pre-opened connections (one probe in flight per connection) reading `Date` or `field`.

    Its times are the write and the first byte of the answer, free of event-loop wake-up delays (so
    the connections must run on the clock given to the sampler). A connection the server dropped, or
    one left busy by a lost probe, is reopened before its next use. A callable `request` makes each probe's
    bytes when it is sent (a request signed for the second it leaves in, Exir's).
    """
    idle: asyncio.Queue[WireConnection] = asyncio.Queue()
    for conn in connections:
        idle.put_nowait(conn)

    def read(response: WireResponse) -> float:
        if source == "date":
            return parse_http_date(response.date)
        return parse_timestamp(response.json(), field)

    async def probe() -> Reading:
        conn = await idle.get()
        try:
            if not conn.is_alive() or conn.in_flight:
                await conn.reconnect()
            sent_ns = conn.send_nowait(request() if callable(request) else request)
            response = await conn.next_response(timeout_s)
            return Reading(read(response), sent_ns, response.first_byte_ns)
        finally:
            idle.put_nowait(conn)

    return probe


# ---------------------------------------------------------------- NTP


class _NtpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes | OSError] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.answers.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.answers.put_nowait(exc)  # e.g. ICMP port unreachable: nobody serves NTP there


async def sample_ntp(
    server: str,
    clock: Clock,
    *,
    port: int = 123,
    count: int = 5,
    spacing_s: float = 0.2,
    timeout_s: float = 2.0,
    sleep: Sleep = asyncio.sleep,
) -> list[Sample]:
    """`count` NTP exchanges with `server`; each sample is (t1, t4, (t2 + t3) / 2), the classic offset."""
    loop = asyncio.get_running_loop()
    ref = ClockReference.take(clock)
    try:
        transport, protocol = await loop.create_datagram_endpoint(_NtpProtocol, remote_addr=(server, port))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClockSyncError(f"NTP server {server}:{port} cannot be reached ({reason})") from None
    samples: list[Sample] = []
    try:
        for i in range(count):
            if i:
                await sleep(spacing_s)
            t1 = ref.wall_of(clock.monotonic_ns())
            request = ntplib.NTPPacket(version=3, mode=3, tx_timestamp=ntplib.system_to_ntp_time(t1 / NS))
            transport.sendto(request.to_data())
            try:
                async with asyncio.timeout(timeout_s):
                    data = await protocol.answers.get()
            except TimeoutError:
                continue
            if isinstance(data, OSError):
                reason = data.strerror or type(data).__name__
                raise ClockSyncError(f"NTP server {server}:{port} cannot be reached ({reason})")
            t4 = ref.wall_of(clock.monotonic_ns())
            value = _ntp_server_time(data, t1 / NS)
            if value is not None:
                samples.append(Sample(t1, t4, value))
    finally:
        transport.close()
    if not samples:
        raise ClockSyncError(f"no valid answer from NTP server {server}:{port}")
    return samples


def _ntp_server_time(data: bytes, sent_s: float) -> float | None:
    """(t2 + t3) / 2 of a valid server reply to our request; None for anything else."""
    reply = ntplib.NTPStats()
    try:
        reply.from_data(data)
    except ntplib.NTPException:
        return None
    if reply.mode != 4 or reply.stratum == 0 or abs(reply.orig_time - sent_s) > 1e-5:
        return None  # not a server reply, a kiss-o'-death, or an answer to some other request
    return (reply.recv_time + reply.tx_time) / 2


async def measure_ntp_offset(server: str, clock: Clock, **options: Any) -> OffsetEstimate:
    """NTP offset (options as for `sample_ntp`): median of the exchanges, half the median round trip."""
    return estimate_from_readings(await sample_ntp(server, clock, **options), "ntp")
