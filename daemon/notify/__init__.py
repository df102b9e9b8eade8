"""Notifications: short messages to the user through apprise URLs (Telegram, email, ntfy, webhooks, ...).

The runner calls `Notifications`' event methods; each queues a message when `notify.on` names its event and
returns at once. Nothing is sent from the arm to the window's end (see `_outbox`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from daemon.clock import Clock
from daemon.config import Config, NotifySettings
from daemon.notify._apprise import Destination, SendFailed, destinations
from daemon.notify._messages import Message, Words
from daemon.notify._outbox import Outbox


class Notifications:
    """The day's events as messages, each sent once (a warmup or renewal failure once per account and day)."""

    def __init__(self, settings: NotifySettings, clock: Clock, targets: list[Destination]) -> None:
        self.settings = settings
        self.clock = clock
        self.words = Words(settings.persian_digits)
        self.outbox = Outbox(
            targets,
            clock,
            size=settings.queue_size,
            attempts=settings.attempts,
            retry_delay_s=settings.retry_delay_s,
        )
        self._told: set[tuple[str, date, str]] = set()

    @classmethod
    def from_config(cls, config: Config, clock: Clock) -> Notifications | None:
        """None without `notify.urls`; a ConfigError (one sentence) for a URL that cannot be used or no apprise."""
        if not config.notify.urls:
            return None
        return cls(config.notify, clock, destinations(config.notify.resolve_urls()))

    def wants(self, event: str) -> bool:
        return event in self.settings.on

    def _put(self, message: Message, once: tuple[date, str] | None = None) -> None:
        if not self.wants(message.event):
            return
        if once is not None:
            key = (message.event, *once)
            if key in self._told:
                return
            self._told.add(key)
        self.outbox.put(message)

    def hold(self, until: datetime) -> None:
        self.outbox.hold(until)

    def release(self) -> None:
        self.outbox.release()

    def fire_summary(self, day: date, rows: Sequence[Any]) -> None:
        if rows:
            self._put(self.words.fire_summary(day, rows))
        unknown = [r for r in rows if r.state == "unknown"]
        if unknown:
            self._put(self.words.unknown_orders(day, unknown))

    def fill_summary(self, day: date, rows: Sequence[Any]) -> None:
        """What the accepted orders became, at the close (or once every one had ended); once per day."""
        followed = [r for r in rows if r.accepted]
        if followed:
            self._put(self.words.fill_summary(day, followed), once=(day, ""))

    def unknown_fills(self, day: date, rows: Sequence[Any]) -> None:
        """Accepted orders the tracker could never read or find in the broker's lists by the close."""
        if rows:
            self._put(self.words.unknown_fills(day, rows), once=(day, "fills"))

    def warmup_failed(self, day: date, account: str, broker: str, reason: str) -> None:
        self._put(self.words.warmup_failed(day, account, broker, reason), once=(day, account))

    def token_renewal_failed(self, day: date, account: str, reason: str) -> None:
        if ("warmup_failed", day, account) in self._told:
            return  # the user already knows this account is not ready today (a wrong password fails both)
        self._put(self.words.token_renewal_failed(day, account, reason), once=(day, account))

    def restarted_in_window(self, day: date, at: datetime) -> None:
        self._put(self.words.restarted_in_window(day, at), once=(day, ""))

    async def send_test(self) -> list[tuple[str, str | None]]:
        """`notify --test`: one message to each destination now, one attempt each; (name, reason or None)."""
        message = self.words.test(self.clock.now())
        results: list[tuple[str, str | None]] = []
        for target in self.outbox.destinations:
            try:
                await target.send(message.title, message.body)
            except SendFailed as exc:
                results.append((target.name, str(exc)))
            else:
                results.append((target.name, None))
        return results

    async def delivered(self, event: str) -> bool:
        """Whether `event` has reached a destination, once what is queued went out or was given up (bounded by
        the outbox's drain); True for an event the user does not want (nothing is owed)."""
        if not self.wants(event):
            return True
        await self.outbox.drain()
        return any(sent == event for sent, _ in self.outbox.sent)

    async def aclose(self) -> None:
        await self.outbox.aclose()


__all__ = [
    "Message",
    "Notifications",
    "Outbox",
    "Words",
]
