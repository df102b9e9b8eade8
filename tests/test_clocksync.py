"""Broker clock offset: pure estimation on synthetic samples, sampling on a fake clock, and real loopback servers."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from datetime import UTC, datetime
from email.utils import formatdate
from zoneinfo import ZoneInfo

import ntplib
import pytest
from aiohttp import web

from daemon.clock import FakeClock, SystemClock
from daemon.net import (
    NS,
    ClockReference,
    ClockSyncError,
    OffsetEstimate,
    Reading,
    Sample,
    WireConnection,
    build_request,
    estimate_from_date,
    estimate_from_readings,
    estimate_from_ticks,
    estimate_from_timestamps,
    measure_date_offset,
    measure_ntp_offset,
    measure_timestamp_offset,
    monotonic_deadline_ns,
    parse_http_date,
    parse_timestamp,
    sample_date_ticks,
    tick_observations,
    wait_until_monotonic,
    wire_probe,
)
from tests.loopback import serve_app

T0 = 1_795_000_000 * NS  # a local wall time in 2026, on a whole second
MS = 1_000_000


def _synthetic(
    offset_s: float, mids_ns: list[int], rng: random.Random | None = None, jitter_ms: float = 0.0, floored: bool = True
) -> list[Sample]:
    """Samples whose server read its clock (local + offset) somewhere inside each round trip."""
    out = []
    for mid in mids_ns:
        d1 = int((rng.uniform(0, jitter_ms) if rng else jitter_ms / 2) * MS)
        d2 = int((rng.uniform(0, jitter_ms) if rng else jitter_ms / 2) * MS)
        send = mid - (d1 + d2) // 2
        read_local = send + d1
        server = read_local / NS + offset_s
        out.append(Sample(send, send + d1 + d2, float(math.floor(server)) if floored else server))
    return out


def _around_ticks(offset_s: float, ticks: int, half_ms: int, step_ms: int) -> list[int]:
    """Local midpoints spaced `step_ms` across each of `ticks` broker ticks, give or take `half_ms`."""
    mids = []
    for k in range(1, ticks + 1):
        tick_local = T0 + k * NS - round(offset_s * NS) % NS
        mids += [tick_local + d * MS for d in range(-half_ms, half_ms + 1, step_ms)]
    return mids


# ---------------------------------------------------------------- pure estimation


@pytest.mark.parametrize("offset_s", [1.7, -2.0, -2.345, 0.0004, 37.25])
def test_date_ticks_recover_the_offset_from_clean_samples(offset_s: float) -> None:
    samples = _synthetic(offset_s, _around_ticks(offset_s, 3, 20, 4), jitter_ms=2.0)
    est = estimate_from_date(samples)
    assert est.source == "date" and est.samples == len(samples)
    assert abs(est.offset_s - offset_s) <= 0.003
    assert abs(est.offset_s - offset_s) <= est.uncertainty_s <= 0.004


@pytest.mark.parametrize("seed", range(8))
def test_date_ticks_hold_under_latency_jitter_and_interleaving(seed: int) -> None:
    rng = random.Random(seed)
    offset_s = rng.uniform(-3, 3)
    samples = _synthetic(offset_s, _around_ticks(offset_s, 3, 30, 3), rng, jitter_ms=15.0)
    rng.shuffle(samples)  # arrival order must not matter
    est = estimate_from_date(samples)
    error = abs(est.offset_s - offset_s)
    assert error <= 0.010, error
    assert error <= est.uncertainty_s


def test_each_straddled_tick_is_one_observation() -> None:
    samples = _synthetic(0.25, _around_ticks(0.25, 2, 10, 5))
    observations = tick_observations(samples)
    assert [o.second - T0 // NS for o in observations] == [1, 2]
    for o in observations:
        assert o.before_ns < o.tick_wall_ns < o.after_ns and o.after_ns - o.before_ns == 5 * MS


def test_a_coarse_bracket_does_not_outvote_sharp_ones() -> None:
    coarse = _synthetic(0.5, [T0 + 420 * MS, T0 + 520 * MS])  # tick at local T0 + 0.5 s, 100 ms bracket
    sharp = _synthetic(0.5, [T0 + NS + 499 * MS, T0 + NS + 501 * MS, T0 + 2 * NS + 499 * MS, T0 + 2 * NS + 501 * MS])
    est = estimate_from_date(coarse + sharp)
    assert abs(est.offset_s - 0.5) <= 0.001 and est.uncertainty_s <= 0.0011


def test_ticks_that_disagree_widen_the_uncertainty() -> None:
    """Two servers behind one host name, 50 ms apart: the estimate must not claim a few ms."""
    a = _synthetic(0.30, [T0 + 699 * MS, T0 + 701 * MS])  # second 1 ticks at local T0 + 0.70 s
    b = _synthetic(0.35, [T0 + NS + 649 * MS, T0 + NS + 651 * MS])  # second 2 ticks at local T0 + 1.65 s
    est = estimate_from_date(a + b)
    assert est.uncertainty_s >= 0.0249 and 0.30 <= est.offset_s <= 0.35


def test_no_straddled_tick_is_an_error() -> None:
    samples = _synthetic(0.0, [T0 + 100 * MS, T0 + 200 * MS])
    with pytest.raises(ClockSyncError, match="no tick"):
        estimate_from_date(samples)
    with pytest.raises(ClockSyncError):
        estimate_from_ticks([])


def test_fractional_readings_give_the_median_offset() -> None:
    samples = _synthetic(-2.0, [T0 + i * 50 * MS for i in range(7)], jitter_ms=4.0, floored=False)
    samples[3] = Sample(samples[3].send_wall_ns, samples[3].recv_wall_ns, samples[3].server_value + 0.9)  # a wild one
    est = estimate_from_readings(samples, "timestamp")
    assert abs(est.offset_s + 2.0) < 1e-6 and est.uncertainty_s == pytest.approx(0.002)
    assert estimate_from_timestamps(samples).offset_s == est.offset_s


def test_whole_second_timestamps_use_ticks_or_say_how_coarse_they_are() -> None:
    straddling = _synthetic(1.7, _around_ticks(1.7, 2, 20, 4))
    est = estimate_from_timestamps(straddling)
    assert est.source == "timestamp" and abs(est.offset_s - 1.7) <= 0.003
    within_one_second = _synthetic(1.7, [T0 + 400 * MS, T0 + 450 * MS])
    est = estimate_from_timestamps(within_one_second)
    assert abs(est.offset_s - 1.7) <= est.uncertainty_s and est.uncertainty_s >= 0.5


def test_http_dates_and_timestamps_parse() -> None:
    assert parse_http_date("Sat, 21 Nov 2026 05:15:00 GMT") == datetime(2026, 11, 21, 5, 15, tzinfo=UTC).timestamp()
    assert parse_http_date("Saturday, 21-Nov-26 05:15:00 GMT") == datetime(2026, 11, 21, 5, 15, tzinfo=UTC).timestamp()
    for bad in (None, "", "yesterday"):
        with pytest.raises(ClockSyncError):
            parse_http_date(bad)
    assert parse_timestamp({"timestamp": 1795000000.25}) == 1795000000.25
    assert parse_timestamp({"timestamp": "1795000000"}) == 1795000000.0
    assert parse_timestamp({"ts": 1795000000123}, "ts") == pytest.approx(1795000000.123)
    for bad in ({}, {"timestamp": None}, {"timestamp": "soon"}, {"timestamp": -1}, []):
        with pytest.raises(ClockSyncError):
            parse_timestamp(bad)


# ---------------------------------------------------------------- deadline on the monotonic clock

OPEN = datetime(2026, 11, 21, 8, 45, tzinfo=ZoneInfo("Asia/Tehran"))


def test_open_on_the_broker_clock_becomes_a_monotonic_deadline(clock: FakeClock) -> None:
    clock.set(datetime(2026, 11, 21, 5, 14, 0, tzinfo=UTC))  # 08:44:00 Tehran, local clock
    estimate = OffsetEstimate(offset_s=1.7, uncertainty_s=0.004, samples=30, source="date")
    reference = ClockReference.take(clock)
    deadline = monotonic_deadline_ns(OPEN, estimate, reference)
    assert deadline - clock.monotonic_ns() == (60 - 1.7) * NS  # the broker is 1.7 s ahead: fire 1.7 s sooner

    clock.step_wall(-3.0)  # NTP steps the wall clock after the plan was made
    clock.advance((deadline - clock.monotonic_ns()) / NS)
    broker_now_ns = (clock.time_ns() + 3 * NS) + round(estimate.offset_s * NS)  # the unstepped timeline
    assert broker_now_ns == OPEN.timestamp() * NS
    assert (
        monotonic_deadline_ns(OPEN, estimate, ClockReference.take(clock)) != deadline
    )  # a new reference would move it


def test_a_naive_open_time_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        monotonic_deadline_ns(
            datetime(2026, 11, 21, 8, 45), OffsetEstimate(0, 0, 0, "date"), ClockReference.take(clock)
        )


async def test_wait_returns_at_once_when_the_deadline_has_passed(clock: FakeClock) -> None:
    assert await wait_until_monotonic(clock.monotonic_ns() - 1, clock) == clock.monotonic_ns()


class TickingClock(FakeClock):
    """A fake clock that moves 1 µs every time its monotonic clock is read, as a spinning CPU sees time pass."""

    def monotonic_ns(self) -> int:
        self.advance(1e-6)
        return super().monotonic_ns()


async def test_wait_spins_to_the_deadline() -> None:
    clock = TickingClock()
    deadline = clock.monotonic_ns() + 500_000  # 0.5 ms: inside the spin window, so no sleep
    assert await wait_until_monotonic(deadline, clock) == deadline


async def test_wait_is_bounded_even_if_the_clock_never_gets_there(clock: FakeClock) -> None:
    deadline = clock.monotonic_ns() + 10 * MS
    assert await wait_until_monotonic(deadline, clock, spin_s=0.002, max_spin_s=0.005) < deadline


async def test_wait_on_the_system_clock_reaches_the_deadline() -> None:
    clock = SystemClock()
    deadline = clock.monotonic_ns() + 30 * MS
    reached = await wait_until_monotonic(deadline, clock)
    print(f"woke {(reached - deadline) / 1000:.1f} µs after the deadline")
    assert reached >= deadline


async def test_a_long_wait_sleeps_to_a_short_way_before_the_deadline_then_to_the_spin(monkeypatch) -> None:
    """A long sleep wakes late by the kernel's slack (0.1 % of it): it ends `approach_s` before the deadline, and
    only a short sleep (late by epoll's ms rounding at most) ends where the spin starts."""
    import daemon.net._clocksync as clocksync

    clock, loop = SystemClock(), asyncio.get_running_loop()
    real_sleep, asked = asyncio.sleep, []

    async def recording_sleep(seconds: float) -> None:
        asked.append((loop.time(), seconds))
        await real_sleep(seconds)

    monkeypatch.setattr(clocksync.asyncio, "sleep", recording_sleep)
    deadline = clock.monotonic_ns() + 80 * MS
    loop_deadline = loop.time() + 0.08
    assert await wait_until_monotonic(deadline, clock, spin_s=0.002, approach_s=0.02) >= deadline
    ends_before = [loop_deadline - (at + seconds) for at, seconds in asked]
    assert ends_before[0] == pytest.approx(0.02, abs=0.002)  # the long sleep: 20 ms short of the deadline
    if len(asked) > 1:  # unless the machine woke it past its approach
        assert ends_before[-1] == pytest.approx(0.002, abs=0.002) and asked[-1][1] < 0.02


# ---------------------------------------------------------------- sampling on a fake clock (no real time)


def _fake_time(clock: FakeClock):
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    return sleep


@pytest.mark.parametrize("skew_s", [1.7, -2.0, 0.999])
async def test_date_sampling_aims_at_the_ticks(clock: FakeClock, skew_s: float) -> None:
    calls = 0

    async def probe() -> float:
        nonlocal calls
        calls += 1
        if calls % 7 == 0:
            raise ConnectionResetError("lost")  # a lost probe costs a sample, not the measurement
        return float(math.floor(clock.time_ns() / NS + skew_s))

    clock.advance(0.123)
    samples = await sample_date_ticks(probe, clock, ticks=3, fine_spacing_s=0.002, sleep=_fake_time(clock))
    est = estimate_from_date(samples)
    assert abs(est.offset_s - skew_s) <= 0.001 and est.uncertainty_s <= 0.0011
    assert len(tick_observations(samples)) >= 4  # the coarse tick and the three aimed at
    assert len(samples) < 8 + 23 + 3 * 24


async def test_sampling_stamps_from_the_monotonic_clock(clock: FakeClock) -> None:
    expected = (clock.monotonic_ns() - clock.time_ns()) / NS  # the "broker" below reads our monotonic clock

    async def probe() -> float:
        clock.step_wall(5.0)  # the wall clock jumps during sampling: the estimate must not
        return float(math.floor(clock.monotonic_ns() / NS))

    est = await measure_date_offset(probe, clock, ticks=2, sleep=_fake_time(clock))
    assert abs(est.offset_s - expected) <= 0.005


# ---------------------------------------------------------------- NTP against a fake server on loopback


class _FakeNtpServer(asyncio.DatagramProtocol):
    def __init__(self, clock: FakeClock, skew_s: float, stratum: int = 2) -> None:
        self.clock, self.skew_s, self.stratum = clock, skew_s, stratum

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = ntplib.NTPPacket()
        request.from_data(data)
        now = ntplib.system_to_ntp_time(self.clock.time_ns() / NS + self.skew_s)
        reply = ntplib.NTPPacket(version=3, mode=4, tx_timestamp=now)
        reply.stratum, reply.recv_timestamp = self.stratum, now
        reply.orig_timestamp = request.tx_timestamp
        self.transport.sendto(reply.to_data(), addr)  # type: ignore[attr-defined]


async def _ntp_server(clock: FakeClock, skew_s: float, stratum: int = 2) -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _FakeNtpServer(clock, skew_s, stratum), local_addr=("127.0.0.1", 0)
    )
    return transport, transport.get_extra_info("sockname")[1]


async def test_ntp_offset_from_a_loopback_server(clock: FakeClock) -> None:
    transport, port = await _ntp_server(clock, skew_s=-2.0)
    try:
        est = await measure_ntp_offset("127.0.0.1", clock, port=port, count=3, sleep=_fake_time(clock))
    finally:
        transport.close()
    assert est.source == "ntp" and est.samples == 3
    assert abs(est.offset_s + 2.0) < 1e-5


async def test_ntp_kiss_of_death_is_not_a_reading(clock: FakeClock) -> None:
    transport, port = await _ntp_server(clock, skew_s=0.0, stratum=0)
    try:
        with pytest.raises(ClockSyncError, match="no valid answer"):
            await measure_ntp_offset("127.0.0.1", clock, port=port, count=2, sleep=_fake_time(clock))
    finally:
        transport.close()


async def test_ntp_port_unreachable_is_an_error(clock: FakeClock) -> None:
    transport, port = await _ntp_server(clock, 0.0)
    transport.close()  # nobody listens there now: loopback answers ICMP port unreachable
    with pytest.raises(ClockSyncError, match="cannot be reached|no valid answer"):
        await measure_ntp_offset("127.0.0.1", clock, port=port, count=1, timeout_s=2.0)


# ---------------------------------------------------------------- real broker-like servers on loopback


def _skewed_app(skew_s: float, max_latency_ms: float, seed: int = 7, date: str | None = None) -> web.Application:
    """Date header and JSON timestamp from a clock `skew_s` off ours, read in the middle of 0..max latency."""
    clock, rng = SystemClock(), random.Random(seed)

    async def book(request: web.Request) -> web.Response:
        await asyncio.sleep(rng.uniform(0, max_latency_ms / 2) / 1000)
        now = clock.time_ns() / NS + skew_s
        await asyncio.sleep(rng.uniform(0, max_latency_ms / 2) / 1000)
        return web.json_response(
            {"buyingPower": 1, "timestamp": now}, headers={"Date": date or formatdate(now, usegmt=True)}
        )

    app = web.Application()
    app.router.add_get("/api/v2/tradingbook/GetLastTradingBook", book)
    return app


async def test_wire_probe_reads_the_date_header_with_precise_times() -> None:
    app = _skewed_app(0.0, 0.0, date="Sat, 21 Nov 2026 05:15:00 GMT")
    async with serve_app(app) as base:
        url = f"{base}/api/v2/tradingbook/GetLastTradingBook"
        conn = await WireConnection.open(url, SystemClock())
        probe = wire_probe([conn], build_request("GET", url, {"authorization": "Bearer x" * 3}))
        reading = await probe()
        conn.close()
        reading2 = await probe()  # a closed connection is reopened
        conn.close()
    assert isinstance(reading, Reading)
    assert reading.value == reading2.value == datetime(2026, 11, 21, 5, 15, tzinfo=UTC).timestamp()
    assert reading.send_monotonic_ns <= reading.recv_monotonic_ns and conn.connects == 2


@pytest.mark.slow
@pytest.mark.parametrize("skew_s", [1.7, -2.0])
async def test_date_header_offset_against_a_skewed_loopback_server(skew_s: float) -> None:
    clock = SystemClock()
    async with serve_app(_skewed_app(skew_s, max_latency_ms=30.0)) as base:
        url = f"{base}/api/v2/tradingbook/GetLastTradingBook"
        conns = [await WireConnection.open(url, clock) for _ in range(8)]
        request = build_request("GET", url, {"authorization": "Bearer test"})
        date_est = await measure_date_offset(wire_probe(conns, request), clock, ticks=2)
        stamp_est = await measure_timestamp_offset(wire_probe(conns, request, "timestamp"), clock, count=7)
        for conn in conns:
            conn.close()
    date_error, stamp_error = date_est.offset_s - skew_s, stamp_est.offset_s - skew_s
    print(
        f"skew {skew_s:+.3f} s: Date error {date_error * 1000:+.1f} ms (±{date_est.uncertainty_s * 1000:.1f}, "
        f"{date_est.samples} samples); timestamp error {stamp_error * 1000:+.1f} ms (±{stamp_est.uncertainty_s * 1000:.1f})"
    )
    assert abs(date_error) <= 0.025
    assert abs(stamp_error) <= 0.025
    assert statistics.fmean([date_est.uncertainty_s, stamp_est.uncertainty_s]) < 0.1
