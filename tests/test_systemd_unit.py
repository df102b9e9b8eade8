"""The shipped unit passes `systemd-analyze verify` and says what the service relies on.

verify wants ExecStart's program to exist, so it checks a copy whose ExecStart points at this Python.
In CI (`CI` set) a missing systemd-analyze is a failure (.ci/run installs the `systemd` package);
locally the test is skipped without it.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import REPO_ROOT

UNIT = REPO_ROOT / "systemd" / "opening-bell.service"
INSTALLED_PROGRAM = "/opt/opening-bell/bin/opening-bell"
CREDENTIAL_LINE = "LoadCredential=ali:/etc/opening-bell/credentials/ali"


def systemd_analyze() -> str:
    program = shutil.which("systemd-analyze")
    if program is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing in CI: .ci/run must install the systemd package")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return program


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_PROGRAM, sys.executable))
    return subprocess.run([systemd_analyze(), "verify", str(copy)], capture_output=True, text=True, timeout=120)


def complaints(result: subprocess.CompletedProcess[str]) -> list[str]:
    """verify exits 0 on unknown keys and bad values but names the unit in a warning: those count too."""
    return [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = verify(tmp_path, UNIT.read_text())
    assert result.returncode == 0, result.stderr
    assert complaints(result) == []


def test_the_documented_credential_line_passes_too(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert CREDENTIAL_LINE in text and CREDENTIAL_LINE in (REPO_ROOT / "README.md").read_text()
    with_credential = text.replace("\n[Service]\n", f"\n[Service]\n{CREDENTIAL_LINE}\n", 1)
    assert with_credential != text
    result = verify(tmp_path, with_credential)
    assert result.returncode == 0, result.stderr
    assert complaints(result) == []


def test_verify_does_catch_a_broken_unit(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs=")
    assert complaints(verify(tmp_path, broken))


def test_the_unit_is_a_notify_service_with_watchdog_state_and_hardening() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    service = parser["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "on-failure"
    assert service["ExecStart"] == f"{INSTALLED_PROGRAM} run"
    assert service["WatchdogSec"] and service["DynamicUser"] == "yes"
    assert (service["StateDirectory"], service["CacheDirectory"]) == ("opening-bell", "opening-bell")
    for setting in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[setting] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"


def test_the_unit_permits_real_time_for_the_open_by_limits_and_grants_no_capability() -> None:
    """SCHED_FIFO up to the default executor.realtime_priority and mlockall of the whole process, and nothing more."""
    from daemon.config import ExecutorSettings

    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    service = parser["Service"]
    assert service["RestrictRealtime"] == "no"
    assert int(service["LimitRTPRIO"]) == ExecutorSettings().realtime_priority
    assert service["LimitMEMLOCK"] == "infinity"
    assert service["CapabilityBoundingSet"] == "" and service["AmbientCapabilities"] == ""
    assert {"@system-service"} == set(service["SystemCallFilter"].split())  # has sched_setscheduler and mlockall
