"""A bounded queue of messages and the one task that sends them, never while the fire window is held.

Putting a message never blocks and never waits on the network; sending runs in a task of its own (each
attempt in a thread, see `_apprise`). From the arm until the window's end (`hold`) no send starts: messages
wait in the queue and go after the window. A message is tried `attempts` times per destination with a
growing delay; one that never got through is logged once, by destination name only (URLs hold secrets).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from daemon.clock import Clock
from daemon.logs import get_logger, scrub
from daemon.notify._apprise import Destination, SendFailed
from daemon.notify._messages import Message

log = get_logger("notify")
DRAIN_S = 30.0
"""At close, what is queued may take this long to go out; then the rest is dropped (and logged)."""


class Outbox:
    def __init__(
        self,
        destinations: list[Destination],
        clock: Clock,
        *,
        size: int = 100,
        attempts: int = 3,
        retry_delay_s: float = 10.0,
    ) -> None:
        self.destinations = destinations
        self.clock = clock
        self.attempts = attempts
        self.retry_delay_s = retry_delay_s
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=size)
        self._held_until: datetime | None = None
        self._released = asyncio.Event()
        self._released.set()
        self._task: asyncio.Task[None] | None = None
        self._dropped = 0
        self.sent: list[tuple[str, str]] = []  # (event, destination name) of every delivery, for the report
        self.failed: list[tuple[str, str, str]] = []  # (event, destination name, reason) given up

    def hold(self, until: datetime) -> None:
        """No send starts until `release` or `until` (the window's end, should the release never come)."""
        self._held_until = until
        self._released.clear()

    def release(self) -> None:
        self._held_until = None
        self._released.set()

    @property
    def held(self) -> bool:
        return not self._released.is_set()

    def put(self, message: Message) -> None:
        """Queue `message` for every destination; a full queue drops it (logged at the first drop of a run)."""
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("notify.queue_full", about=message.event, size=self._queue.maxsize, consequence="dropped")
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="notify")

    async def _run(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                for destination in self.destinations:
                    await self._deliver(message, destination)
            except Exception as exc:  # noqa: BLE001 (a bug in one message's sending must not end the queue)
                log.error("notify.failed", about=message.event, reason=scrub(f"{type(exc).__name__}: {exc}"))
            finally:
                self._queue.task_done()

    async def _wait_released(self) -> None:
        while self.held:
            until = self._held_until
            if until is None or self.clock.now() >= until:
                self.release()
                return
            waiter = asyncio.create_task(self._released.wait())
            sleeper = asyncio.create_task(self.clock.sleep_until(until))
            try:
                await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                sleeper.cancel()

    async def _deliver(self, message: Message, destination: Destination) -> None:
        reason = ""
        for attempt in range(self.attempts):
            await self._wait_released()
            try:
                await destination.send(message.title, message.body)
            except SendFailed as exc:
                reason = str(exc)
            else:
                self.sent.append((message.event, destination.name))
                log.info("notify.sent", about=message.event, destination=destination.name, attempts=attempt + 1)
                return
            if attempt + 1 < self.attempts:
                await self._sleep(self.retry_delay_s * 2**attempt)
        self.failed.append((message.event, destination.name, reason))
        log.warning(
            "notify.failed", about=message.event, destination=destination.name, attempts=self.attempts, reason=reason
        )

    async def _sleep(self, seconds: float) -> None:
        await self.clock.sleep_until(self.clock.now() + timedelta(seconds=seconds))

    async def drain(self, timeout_s: float = DRAIN_S) -> bool:
        """Wait (bounded) for what is queued to be sent or given up; True when the queue emptied in time."""
        if self._task is None or self._task.done():
            return self._queue.empty()
        done = asyncio.create_task(self._queue.join())
        sleeper = asyncio.create_task(self._sleep(timeout_s))
        try:
            finished, _ = await asyncio.wait({done, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            done.cancel()
        return done in finished

    async def aclose(self, timeout_s: float = DRAIN_S) -> None:
        """Send what is left (unless held: never inside a window), within `timeout_s`; the rest is logged, dropped."""
        if not self.held:
            await self.drain(timeout_s)
        left = self._queue.qsize()
        if left:
            log.warning("notify.dropped_at_close", messages=left)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
