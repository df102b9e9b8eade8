"""Many connections' next answers waited for at once: callbacks from the protocols and one timer for every deadline.

Right after the first-send loop a thousand orders wait for their answers. A task per order, each with its own
`asyncio.timeout` (a timer handle in the loop's heap, a future, a task step per wake-up), cost more CPU than
the answers themselves, on the cores the broker's reads share on a test machine. Here each connection hands
its answer to a callback (`WireConnection.when_answered`) and one timer, armed for the earliest deadline still
waiting, turns the ones that passed into `WireTimeout`s.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

from daemon.clock import Clock
from daemon.net._wire import WireConnection, WireError, WireResponse, WireTimeout

NS = 1_000_000_000
Handler = Callable[[WireResponse | WireError], None]


class _Expected:
    """One connection's awaited answer: the handler is called exactly once (answer, connection's end or timeout)."""

    __slots__ = ("conn", "deadline_ns", "timeout_s", "handler", "waiting")

    def __init__(self, conn: WireConnection, deadline_ns: int, timeout_s: float, handler: Handler) -> None:
        self.conn, self.deadline_ns, self.timeout_s, self.handler = conn, deadline_ns, timeout_s, handler
        self.waiting = True

    def __call__(self, outcome: WireResponse | WireError) -> None:
        if self.waiting:
            self.waiting = False
            self.handler(outcome)

    def __lt__(self, other: _Expected) -> bool:
        return self.deadline_ns < other.deadline_ns


class AnswerWatch:
    """Deadlines of many connections' next answers on the injected clock, with one loop timer for all of them.

    `expect` hands the answer to `handler` from the protocol's callback; a deadline that passes first hands it a
    WireTimeout (the connection then queues a late answer for `next_response`, as after a timed-out read).
    Handlers run inside the loop's callbacks: they must not raise. `close` forgets whatever is still waited for.
    """

    def __init__(self, clock: Clock, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._mono = clock.monotonic_ns
        self._loop = loop or asyncio.get_running_loop()
        self._heap: list[_Expected] = []
        self._timer: asyncio.TimerHandle | None = None
        self._armed_ns = 0

    def expect(self, conn: WireConnection, timeout_s: float, handler: Handler, now_ns: int | None = None) -> None:
        """`handler` gets the next answer on `conn`, or a WireTimeout `timeout_s` after `now_ns` (default: now)."""
        start = self._mono() if now_ns is None else now_ns
        expected = _Expected(conn, start + int(timeout_s * NS), timeout_s, handler)
        conn.when_answered(expected)
        if not expected.waiting:
            return  # it was there already
        heapq.heappush(self._heap, expected)
        if self._timer is None or expected.deadline_ns < self._armed_ns:
            self._arm(expected.deadline_ns)

    @property
    def waiting(self) -> int:
        """Answers still waited for."""
        return sum(e.waiting for e in self._heap)

    def close(self) -> None:
        """Stop the timer; the answers still waited for are never handed to their handlers."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for expected in self._heap:
            if expected.waiting:
                expected.waiting = False
                expected.conn.forget_answer()
        self._heap.clear()

    def _arm(self, deadline_ns: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_ns = deadline_ns
        self._timer = self._loop.call_later(max(deadline_ns - self._mono(), 0) / NS, self._expire)

    def _expire(self) -> None:
        """The armed deadline passed (on the loop's clock): it and every other one the clock has passed time out."""
        self._timer = None
        heap, due = self._heap, max(self._mono(), self._armed_ns)
        while heap and (not heap[0].waiting or heap[0].deadline_ns <= due):
            expected = heapq.heappop(heap)
            if expected.waiting:
                expected.waiting = False
                expected.conn.forget_answer()
                expected.handler(WireTimeout(f"no response from {expected.conn.origin} within {expected.timeout_s} s"))
        if heap:
            self._arm(heap[0].deadline_ns)
