"""sd_notify datagrams reach a socket bound where `$NOTIFY_SOCKET` says, path or abstract; unset means no-op."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.service import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket like systemd's, bound in tmp_path (a unix socket path must stay under 108 bytes)."""
    path = tmp_path / "notify"
    assert len(str(path)) < 100, "tmp_path too long for a unix socket"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(5)
    yield receiver, str(path)
    receiver.close()


def received(receiver: socket.socket) -> list[str]:
    """Every datagram waiting on the socket, without waiting for more."""
    messages = []
    receiver.setblocking(False)
    try:
        while True:
            messages.append(receiver.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        receiver.settimeout(5)


def test_messages_reach_a_socket_path(notify_socket: tuple[socket.socket, str]) -> None:
    receiver, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("waiting for warmup at 2026-11-28 08:20 +0330")
    assert notifier.status("firing\nnow")
    assert notifier.watchdog() and notifier.reloading() and notifier.stopping()
    notifier.close()
    assert received(receiver) == [
        "READY=1\nSTATUS=waiting for warmup at 2026-11-28 08:20 +0330",
        "STATUS=firing now",  # a STATUS is one line, whatever it was given
        "WATCHDOG=1",
        "RELOADING=1\nSTATUS=reloading the config",
        "STOPPING=1\nSTATUS=stopping",
    ]


def test_an_at_sign_means_the_abstract_namespace() -> None:
    name = f"opening-bell-test-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert receiver.recv(4096) == b"READY=1"
    finally:
        receiver.close()


def test_without_notify_socket_everything_is_a_quiet_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False
    assert notifier.watchdog_interval_s is None


def test_a_vanished_socket_is_one_warning_and_never_an_exception(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with capture_logs() as logs:
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
    assert [e["event"] for e in logs] == ["cannot notify systemd"]


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),  # half of WatchdogSec=30
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "nonsense"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    environ: dict[str, str], interval: float | None
) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/run/systemd/notify", **environ}).watchdog_interval_s == interval
