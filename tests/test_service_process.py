"""`python -m daemon run` as systemd runs it, in real time: JSON lines on stdout, sd_notify, signals, exit codes.

The day is squeezed into a few seconds (warmup 0.5 s after a SIGHUP loads it, the open 2.5 s after, a
1.5 s window) in a fixed-offset zone where it is about noon, so no run crosses midnight; loading it by
SIGHUP once the service is up keeps the child's start-up time out of the schedule. The test follows the
service by its log lines (the recording runner logs every call) and never by sleeping.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from daemon.clock import SystemClock
from tests.processes import run_daemon, start_daemon

RUNNER = {"OPENING_BELL_RUNNER": "tests.doubles:make_runner"}
TIMEOUT_S = 60


def squeezed_day(path: Path) -> Path:
    now = SystemClock().now()
    offset = 12 - now.hour  # a zone where it is now between 12:00 and 13:00
    zone = f"Etc/GMT{-offset:+d}" if offset else "UTC"
    local = now.astimezone(ZoneInfo(zone))
    schedule = {
        "warmup": f"{local + timedelta(seconds=0.5):%H:%M:%S.%f}",
        "open": f"{local + timedelta(seconds=2.5):%H:%M:%S.%f}",
        "arm_before_s": 1,
        "window_s": 1.5,
        "refresh_s": 0.5,
        "trading_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "official_holidays": False,
    }
    path.write_text(yaml.safe_dump({"timezone": zone, "schedule": schedule}))
    return path


class Service:
    """The child process and its stdout as parsed JSON events, read as they come."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.proc = start_daemon("run", "--config", str(config), env={**RUNNER, **(env or {})})
        self.events: list[dict[str, object]] = []
        self._killer = threading.Timer(TIMEOUT_S, self.proc.kill)  # a hung service fails the test, never hangs it
        self._killer.start()

    def wait_for(self, event: str) -> dict[str, object]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(_event(line))  # every stdout line is JSON: journalctl -o cat | jq works
            if self.events[-1]["event"] == event:
                return self.events[-1]
        raise AssertionError(f"the service ended before logging {event!r}: {[e['event'] for e in self.events]}")

    def finish(self, signum: int | None = None) -> tuple[int, str]:
        if signum is not None:
            self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=TIMEOUT_S)
        self._killer.cancel()
        # split on newlines only, as journald does: str.splitlines() would also cut a line at U+2028 or U+0085
        self.events += [_event(line) for line in out.split("\n") if line]
        return self.proc.returncode, err

    def names(self) -> list[str]:
        return [str(e["event"]) for e in self.events]


def _event(line: str) -> dict[str, object]:
    """One stdout line as JSON; a line that is not is shown as it came (repr), so a failure says what wrote it."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"a stdout line is not JSON ({exc}): {line!r}") from None


class NotifySocket:
    """A datagram socket standing in for systemd's, drained by a thread as it comes (the kernel queues ~10)."""

    def __init__(self, path: Path) -> None:
        assert len(str(path)) < 100, "tmp_path too long for a unix socket"
        self.path = str(path)
        self.messages: list[str] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self.path)
        self._socket.settimeout(0.1)  # how often the reader looks at its stop flag
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._drain)
        self._reader.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self._socket.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> list[str]:
        """Everything received, including what is still queued (call once the sender has exited)."""
        if not self._stop.is_set():
            self._stop.set()
            self._reader.join()
            self._socket.setblocking(False)
            try:
                while True:
                    self.messages.append(self._socket.recv(4096).decode())
            except BlockingIOError:
                pass
            self._socket.close()
        return self.messages


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    receiver = NotifySocket(tmp_path / "notify")
    yield receiver
    receiver.close()


def in_order(items: list[str], *wanted: str) -> bool:
    """`wanted` is a subsequence of `items`."""
    rest = iter(items)
    return all(item in rest for item in wanted)


def test_sigterm_during_the_fire_window_finishes_the_day_and_exits_0(tmp_path: Path, notify: NotifySocket) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    service = Service(config, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    started = service.wait_for("service started")
    assert str(started["next"]).startswith("warmup ")
    squeezed_day(config)
    service.proc.send_signal(signal.SIGHUP)
    service.wait_for("config reloaded")
    service.wait_for("test runner fire started")
    code, err = service.finish(signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err
    names = service.names()
    assert in_order(
        names,
        "test runner warmup started",
        "test runner arm started",
        "test runner fire started",
        "stopping",
        "test runner fire finished",
        "test runner report started",
        "test runner aclose started",
        "service stopped",
    )
    assert next(e for e in service.events if e["event"] == "stopping")["after_window"] is True
    assert "test runner refresh started" in names
    messages = notify.close()
    assert messages[0] == "READY=1"
    assert in_order(
        messages,
        "READY=1",
        "RELOADING=1\nSTATUS=reloading the config",
        "STATUS=warming up",
        "STOPPING=1\nSTATUS=stopping after the fire window",
        "STATUS=reporting",
    )
    assert "WATCHDOG=1" in messages


def test_sighup_refuses_an_invalid_config_then_takes_a_valid_one(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("schedule: {warmup: '08:20'}\n")
    service = Service(config)
    service.wait_for("service started")
    config.write_text("schedule: {warmup: '08:20', windw_s: 5}\n")
    service.proc.send_signal(signal.SIGHUP)
    refused = service.wait_for("config reload refused: the running schedule goes on")
    assert "schedule.windw_s" in str(refused["reason"])
    config.write_text("schedule: {warmup: '08:10'}\n")
    service.proc.send_signal(signal.SIGHUP)
    reloaded = service.wait_for("config reloaded")
    assert " 08:10:00 " in str(reloaded["next"])
    code, err = service.finish(signal.SIGTERM)
    assert code == 0, err
    assert service.names().count("test runner aclose started") == 2  # the first runner at reload, the second at stop


def test_a_runner_that_cannot_be_loaded_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    result = run_daemon("run", env={"OPENING_BELL_RUNNER": "no_such_module:make_runner"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: the day runner 'no_such_module:make_runner' cannot be loaded")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_an_invalid_config_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("schedule: {warmup: '09:00', open: '08:45'}\n")
    result = run_daemon("run", "--config", str(config), env=RUNNER)
    assert result.returncode == 2
    assert "warmup must come before open" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_run_is_listed_in_the_help() -> None:
    result = run_daemon("run", "--help")
    assert result.returncode == 0 and "SIGHUP reloads the config" in result.stdout


def test_run_refuses_a_bad_token_key_before_it_starts(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("cache:\n  token_key_env: OB_TEST_KEY\n")
    result = run_daemon("run", "--config", str(config), env={"OB_TEST_KEY": "not-a-key"}, timeout=30)
    assert result.returncode == 2
    assert "OB_TEST_KEY" in result.stderr and "Traceback" not in result.stderr
