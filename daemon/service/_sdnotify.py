"""systemd's service notifications (sd_notify): READY=1, STATUS=..., WATCHDOG=1, STOPPING=1.

The protocol is one datagram of `KEY=value` lines to the unix socket named by `$NOTIFY_SOCKET` (a
leading `@` means the abstract namespace). That is a dozen lines, so it is written here rather than
taken from the `sdnotify` package (unmaintained since 2017) or `systemd-python` (needs libsystemd
headers to build). Without `$NOTIFY_SOCKET` (not under systemd, or tests) every call is a no-op. A send
never blocks the event loop: the socket is non-blocking and a message that cannot go is dropped.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from daemon.logs import get_logger


class Notifier:
    """Sends notifications to the service manager that started this process, if any."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        self._address = "\0" + address[1:] if address and address.startswith("@") else address
        self._watchdog_usec = _positive_int(env.get("WATCHDOG_USEC"))
        watchdog_pid = _positive_int(env.get("WATCHDOG_PID"))
        self._watchdog_is_ours = watchdog_pid is None or watchdog_pid == os.getpid()
        self._socket: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Half of systemd's `WatchdogSec=`, as sd_watchdog_enabled(3) advises; None when there is no watchdog."""
        if not self.enabled or self._watchdog_usec is None or not self._watchdog_is_ours:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def send(self, *assignments: str) -> bool:
        """One datagram of `KEY=value` lines; False when there is no manager or the message could not go."""
        if self._address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._socket.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            if not self._warned:  # once: a missing manager socket would otherwise log every watchdog tick
                get_logger("sdnotify").warning(
                    "cannot notify systemd", socket=self._address.lstrip("\0"), reason=str(exc)
                )
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([_status(status)] if status else []))

    def status(self, text: str) -> bool:
        return self.send(_status(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.send("RELOADING=1", _status("reloading the config"))

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", _status(status))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _status(text: str) -> str:
    """A STATUS= line: one line of text, whatever the caller passed."""
    return "STATUS=" + " ".join(text.split())


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(text) if text else None
    except ValueError:
        return None
    return value if value and value > 0 else None
