"""The declared retry policy for broker calls before the open (warmup, refreshes), built on tenacity.

Only `BrokerUnavailable` is retried: the broker was down, slow (a timeout), answered 5xx, an HTML page,
or JSON cut short or spoiled. Everything else is an answer and is final here: a wrong password
(`AuthError`; retrying locks accounts), a rejected order, a throttled host (`RateLimited`: the host
limiter waits out its cooldown) and a wrong captcha (the login's own captcha loop).

The fire window never retries through this policy: the executor runs inside `no_retries()`, because at
the open a retry belongs to the firing plan, not to a back-off measured in seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_exponential_jitter

from daemon.clock import Clock
from daemon.config import RetrySettings
from daemon.errors import BrokerUnavailable

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

_disabled: ContextVar[bool] = ContextVar("opening_bell_no_retries", default=False)


@contextmanager
def no_retries() -> Iterator[None]:
    """Inside this block (and in tasks started from it) every call is tried exactly once."""
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


def retries_enabled() -> bool:
    return not _disabled.get()


class _Deadline(stop_base):
    """Stop when the next attempt would start after `deadline_s` from the first (on the injected clock)."""

    def __init__(self, clock: Clock, started_ns: int, deadline_s: float) -> None:
        self._clock = clock
        self._started_ns = started_ns
        self._deadline_s = deadline_s

    def __call__(self, retry_state: RetryCallState) -> bool:
        elapsed = (self._clock.monotonic_ns() - self._started_ns) / 1e9
        return elapsed + retry_state.upcoming_sleep > self._deadline_s


class RetryPolicy:
    """Attempts, exponential backoff with jitter, and an overall deadline, from `client.retry`."""

    def __init__(self, settings: RetrySettings, clock: Clock, sleep: Sleep = asyncio.sleep) -> None:
        self.settings = settings
        self._clock = clock
        self._sleep = sleep

    async def call(self, what: str, operation: Callable[[], Awaitable[T]], log: Any) -> T:
        """`operation()` until it succeeds, raises something other than BrokerUnavailable, or the policy gives up.

        Each retry logs one line (`broker.retry`) with the reason; giving up re-raises the last
        BrokerUnavailable with the number of attempts added, still one line.
        """
        if not retries_enabled() or self.settings.attempts == 1:
            return await operation()
        s = self.settings
        tried = 0

        async def attempt() -> T:
            nonlocal tried
            tried += 1
            return await operation()

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "broker.retry",
                call=what,
                attempt=state.attempt_number,
                of=s.attempts,
                wait_s=round(state.upcoming_sleep, 3),
                reason=str(exc),
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(s.attempts) | _Deadline(self._clock, self._clock.monotonic_ns(), s.deadline_s),
            wait=wait_exponential_jitter(multiplier=s.backoff_s, max=s.max_backoff_s, jitter=s.backoff_s),
            retry=retry_if_exception_type(BrokerUnavailable),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except BrokerUnavailable as exc:
            if tried < 2:
                raise
            raise BrokerUnavailable(f"{str(exc).rstrip('.')}; gave up after {tried} attempts.") from None
