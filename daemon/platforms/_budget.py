"""One account's request budget at one broker: what the session (and the hot path) spends against a broker's cap.

Mofid caps each account at 1500 requests an hour (easytrader-api.md, Request cap [reported; not measured]). A
session counts every request it makes, by kind; the executor counts the bytes it sends itself. The last hour is a
sliding window on the injected clock's monotonic time, so a morning's count is the same in a test on a FakeClock.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import TYPE_CHECKING

from daemon.errors import RateLimited

if TYPE_CHECKING:
    from daemon.clock import Clock

HOUR_S = 3600.0
RESERVE = 50
"""Requests of the hour kept for the open (`urgent` charges): about one cold run's worth (the doc's ~60 calls less
the login), so refreshes before the open can never spend what the batch needs."""


class RequestBudget:
    """Counts one account's requests (`total`, `by_kind`) and refuses the one that would pass the broker's cap.

    `charge(kind)` is called before each request: it raises RateLimited (never retried by the policy) when the
    last hour already holds `cap - reserve` requests, or `cap` for an `urgent` one (the batch at the open). A
    refused request is not counted. With `cap` None it only counts.
    """

    def __init__(self, clock: Clock, cap: int | None, *, window_s: float = HOUR_S, reserve: int = RESERVE) -> None:
        self._clock = clock
        self.cap = cap
        self.window_s = window_s
        self.reserve = min(reserve, cap - 1) if cap is not None else 0
        self._hits: deque[int] = deque()
        self._kinds: Counter[str] = Counter()

    @property
    def total(self) -> int:
        """Every request counted since this budget was made."""
        return sum(self._kinds.values())

    @property
    def by_kind(self) -> dict[str, int]:
        return dict(self._kinds)

    def in_window(self) -> int:
        """Requests in the last `window_s` seconds."""
        self._expire(self._clock.monotonic_ns())
        return len(self._hits)

    def left(self, urgent: bool = False) -> int | None:
        """How many more requests the hour allows now (None without a cap)."""
        if self.cap is None:
            return None
        return max(0, self.cap - (0 if urgent else self.reserve) - self.in_window())

    def charge(self, kind: str, *, urgent: bool = False) -> None:
        """Count one request of `kind` ("login", "read", "draft", "batch", ...), or refuse it at the cap."""
        now = self._clock.monotonic_ns()
        self._expire(now)
        if self.cap is not None and len(self._hits) >= self.cap - (0 if urgent else self.reserve):
            wait_s = max(1.0, (self._hits[0] + int(self.window_s * 1e9) - now) / 1e9)
            raise RateLimited(
                f"this account has made {len(self._hits)} of its {self.cap} requests an hour"
                f"{'' if urgent else f' ({self.reserve} kept for the open)'}; the next {kind} waits.",
                wait_s,
            )
        self._hits.append(now)
        self._kinds[kind] += 1

    def _expire(self, now_ns: int) -> None:
        horizon = now_ns - int(self.window_s * 1e9)
        while self._hits and self._hits[0] <= horizon:
            self._hits.popleft()

    def summary(self) -> dict[str, object]:
        """What a log line says of the budget."""
        return {"requests": self.total, "in_last_hour": self.in_window(), "cap": self.cap, "by_kind": self.by_kind}
