"""Many connections' answers awaited at once (AnswerWatch) against real loopback servers: each handler is called
exactly once, with the answer, the connection's end, or a WireTimeout from the one shared timer."""

from __future__ import annotations

import asyncio

import pytest

from daemon.clock import FakeClock
from daemon.net import (
    AnswerWatch,
    WireClosedError,
    WireConnection,
    WireError,
    WireResponse,
    WireTimeout,
    build_request,
)
from tests.loopback import read_request, serve_raw

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _released(gate: asyncio.Event, reply: bytes = OK):
    """A raw handler answering each request once `gate` is set (at once when it already is)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            await gate.wait()
            writer.write(reply)
            await writer.drain()

    return handler


class Handed:
    """What the handlers were given, per connection, and an event once `expected` of them were."""

    def __init__(self, expected: int) -> None:
        self.got: dict[int, list[WireResponse | WireError]] = {}
        self.expected = expected
        self.all = asyncio.Event()

    def handler(self, key: int):
        def handle(outcome: WireResponse | WireError) -> None:
            self.got.setdefault(key, []).append(outcome)
            if sum(map(len, self.got.values())) >= self.expected:
                self.all.set()

        return handle


async def _connections(base: str, clock: FakeClock, count: int) -> list[WireConnection]:
    return [await WireConnection.open(base, clock) for _ in range(count)]


async def test_every_answer_reaches_its_handler_once_and_the_timer_is_not_left_armed(clock: FakeClock) -> None:
    gate = asyncio.Event()
    gate.set()
    async with serve_raw(_released(gate)) as base:
        conns = await _connections(base, clock, 5)
        watch, handed = AnswerWatch(clock), Handed(5)
        for key, conn in enumerate(conns):
            conn.send_nowait(build_request("GET", f"{base}/"))
            watch.expect(conn, 5.0, handed.handler(key))
        async with asyncio.timeout(5):
            await handed.all.wait()
        assert sorted(handed.got) == list(range(5))
        assert all(len(v) == 1 and isinstance(v[0], WireResponse) and v[0].body == b"ok" for v in handed.got.values())
        assert watch.waiting == 0 and all(c.in_flight == 0 for c in conns)
        watch.close()
        for conn in conns:
            conn.close()


async def test_a_silent_connection_times_out_alone_and_its_late_answer_queues_for_next_response(
    clock: FakeClock,
) -> None:
    """Two deadlines under one timer: the short one passes while the server holds its answer; the long one's answer
    comes in time. The timed-out request is still in flight, and its answer is read later as after a read timeout."""
    gate = asyncio.Event()
    async with serve_raw(_released(gate)) as base:
        short, long = await _connections(base, clock, 2)
        watch, handed = AnswerWatch(clock), Handed(1)
        for key, (conn, timeout) in enumerate(((short, 0.05), (long, 30.0))):
            conn.send_nowait(build_request("GET", f"{base}/"))
            watch.expect(conn, timeout, handed.handler(key))
        async with asyncio.timeout(5):
            await handed.all.wait()
        [timed_out] = handed.got[0]
        assert isinstance(timed_out, WireTimeout) and "within 0.05 s" in str(timed_out)
        assert 1 not in handed.got and short.in_flight == 1
        handed.expected = 2
        handed.all.clear()
        gate.set()
        async with asyncio.timeout(5):
            await handed.all.wait()
            late = await short.next_response(5)
        assert isinstance(handed.got[1][0], WireResponse) and late.body == b"ok"
        assert len(handed.got[0]) == 1  # never handed twice
        watch.close()
        short.close()
        long.close()


async def test_a_connection_that_ends_hands_its_error_and_an_answer_already_here_is_handed_at_once(
    clock: FakeClock,
) -> None:
    gate = asyncio.Event()
    gate.set()
    async with serve_raw(_released(gate)) as base:
        closing, answered = await _connections(base, clock, 2)
        answered.send_nowait(build_request("GET", f"{base}/"))
        async with asyncio.timeout(5):
            answered_already = await answered.next_response(5)
        assert answered_already.status == 200
        answered.send_nowait(build_request("GET", f"{base}/"))
        while not answered.has_response():  # the answer lands in the queue before anyone expects it
            await asyncio.sleep(0.001)
        watch, handed = AnswerWatch(clock), Handed(2)
        watch.expect(answered, 5.0, handed.handler(1))
        assert isinstance(handed.got[1][0], WireResponse)  # handed inside expect, no timer armed for it
        closing.send_nowait(build_request("GET", f"{base}/"))
        gate.clear()
        watch.expect(closing, 5.0, handed.handler(0))
        closing.close()
        [ended] = handed.got[0]
        assert isinstance(ended, WireClosedError)
        assert watch.waiting == 0
        watch.close()
        answered.close()


async def test_close_forgets_what_is_still_awaited(clock: FakeClock) -> None:
    gate = asyncio.Event()
    async with serve_raw(_released(gate)) as base:
        [conn] = await _connections(base, clock, 1)
        watch, handed = AnswerWatch(clock), Handed(1)
        conn.send_nowait(build_request("GET", f"{base}/"))
        watch.expect(conn, 0.05, handed.handler(0))
        watch.close()
        gate.set()
        async with asyncio.timeout(5):
            response = await conn.next_response(5)  # the answer queued: no handler took it, no timeout fired
        assert response.body == b"ok" and handed.got == {}
        conn.close()
        assert handed.got == {}


@pytest.mark.parametrize("order", ["longest first", "shortest first"])
async def test_deadlines_expire_in_their_order_whatever_order_they_were_expected_in(
    clock: FakeClock, order: str
) -> None:
    gate = asyncio.Event()
    async with serve_raw(_released(gate)) as base:
        conns = await _connections(base, clock, 3)
        timeouts = [0.15, 0.1, 0.05] if order == "longest first" else [0.05, 0.1, 0.15]
        watch, seen = AnswerWatch(clock), []
        done = asyncio.Event()

        def handler(timeout: float):
            def handle(outcome: WireResponse | WireError) -> None:
                seen.append((timeout, type(outcome)))
                if len(seen) == 3:
                    done.set()

            return handle

        for conn, timeout in zip(conns, timeouts):
            conn.send_nowait(build_request("GET", f"{base}/"))
            watch.expect(conn, timeout, handler(timeout))
        async with asyncio.timeout(5):
            await done.wait()
        assert seen == [(0.05, WireTimeout), (0.1, WireTimeout), (0.15, WireTimeout)]
        watch.close()
        for conn in conns:
            conn.close()
