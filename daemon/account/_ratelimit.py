"""Spacing and cooldowns per identity host, shared by every account on it.

Brokers answer a burst of captcha/login calls with HTTP 429 and a cooldown of minutes, so calls to one
identity host are spaced (default 1 s) and a 429 stops that host alone; other brokers go on.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable

from daemon.clock import Clock

Sleep = Callable[[float], Awaitable[None]]


class HostRateLimiter:
    def __init__(self, spacing_s: float, clock: Clock, sleep: Sleep = asyncio.sleep) -> None:
        self._spacing_ns = int(spacing_s * 1e9)
        self._clock = clock
        self._sleep = sleep
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._next_ns: dict[str, int] = {}

    async def acquire(self, host: str) -> None:
        """Wait for this host's next free slot (only the time left, not a fixed sleep), then take it."""
        async with self._locks[host]:
            while (wait_ns := self._next_ns.get(host, 0) - self._clock.monotonic_ns()) > 0:
                await self._sleep(wait_ns / 1e9)
            self._next_ns[host] = self._clock.monotonic_ns() + self._spacing_ns

    def cool_down(self, host: str, seconds: float) -> None:
        """No call to `host` before `seconds` from now (a 429's Retry-After or the configured cooldown)."""
        until = self._clock.monotonic_ns() + int(seconds * 1e9)
        self._next_ns[host] = max(self._next_ns.get(host, 0), until)

    def free_at_ns(self, host: str) -> int:
        return self._next_ns.get(host, 0)
