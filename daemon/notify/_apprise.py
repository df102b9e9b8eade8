"""The one place apprise is imported, lazily: the daemon runs without it until a config asks for notifications."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from daemon.errors import ConfigError
from daemon.logs import scrub


class SendFailed(Exception):
    """A destination did not take a message; the text is apprise's own reason, scrubbed of secrets."""


def _apprise() -> Any:
    try:
        import apprise
    except ImportError:
        raise ConfigError(
            "notify.urls is set but apprise is not installed; pip install 'opening-bell[notify]' or remove notify.urls."
        ) from None
    # apprise logs through the standard library; its lines are read back (scrubbed) when a send fails, never
    # passed on to the service's log as they are
    logging.getLogger("apprise").propagate = False
    return apprise


@dataclass
class Destination:
    """One `notify.urls` item, ready to send to; `name` (its index and service) is what logs and output show."""

    name: str
    _plugin: Any

    async def send(self, title: str, body: str) -> None:
        """One attempt, in a thread (apprise's plugins are blocking): the event loop never waits on the network."""
        ok, reason = await asyncio.to_thread(self._send_blocking, title, body)
        if not ok:
            raise SendFailed(reason)

    def _send_blocking(self, title: str, body: str) -> tuple[bool, str]:
        apprise = _apprise()
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            try:
                ok = bool(self._plugin.notify(body=body, title=title))
            except Exception as exc:  # noqa: BLE001 (a plugin's bug is one failed send, not a dead queue)
                ok, captured_extra = False, f"{type(exc).__name__}: {exc}"
            else:
                captured_extra = ""
            lines = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
        reason = "; ".join([*lines[-2:], captured_extra] if captured_extra else lines[-2:]) or "the service refused it"
        return ok, scrub(reason)


def destinations(urls: list[str]) -> list[Destination]:
    """A destination per URL, or a ConfigError naming the item apprise cannot read (never the URL: it holds secrets)."""
    apprise = _apprise()
    found = []
    for index, url in enumerate(urls):
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is None:
            scheme = url.split("://", 1)[0] if "://" in url else ""
            raise ConfigError(
                f"notify.urls[{index}] is not a URL apprise can send to (scheme {scheme!r}); "
                "see https://github.com/caronc/apprise/wiki for the URL of your service."
            )
        found.append(Destination(f"notify.urls[{index}] ({plugin.service_name})", plugin))
    return found
