"""Checks at start: cache and state directories 0700 (files 0600, symlinks left alone), passwords readable."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import tempfile
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import yaml
from structlog.testing import capture_logs

from daemon.cache import Cache
from daemon.cli import main
from daemon.clock import SystemClock
from daemon.config import CacheSettings, validate_config
from daemon.errors import UserError
from daemon.preflight import check_private_paths, require_private_paths, require_writable_state_dir
from daemon.simulator import PASSWORD_ENV
from tests.processes import run_daemon
from tests.sim_support import BrokerClient
from tests.simhelp import running_simulator, write_sim_config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def open_tree(root: Path) -> None:
    """A cache and a state directory as a loose umask or a restored backup leaves them."""
    for d in (root / ".cache", root / ".state", root / ".state" / "journal"):
        d.mkdir(mode=0o755, exist_ok=True)
        d.chmod(0o755)
    for f in (
        root / ".cache" / "token_u1_gs.json",
        root / ".cache" / "stats.json",
        root / ".state" / "journal" / "2026-11-28.jsonl",
    ):
        f.write_text("{}")
        f.chmod(0o644)


def test_open_directories_and_files_are_tightened_and_logged(isolated: Path) -> None:
    open_tree(isolated)
    (isolated / ".cache" / "token_u1_gs.json").chmod(0o666)
    with capture_logs() as logs:
        assert check_private_paths(validate_config({})) == []
    for d in (".cache", ".state", ".state/journal"):
        assert mode(isolated / d) == 0o700, d
    for f in (".cache/token_u1_gs.json", ".cache/stats.json", ".state/journal/2026-11-28.jsonl"):
        assert mode(isolated / f) == 0o600, f
    tightened = {(e["path"], e["was"]) for e in logs if e["event"] == "private_path_tightened"}
    assert (".cache/token_u1_gs.json", "0o666") in tightened and len(tightened) == 6
    with capture_logs() as logs:
        assert check_private_paths(validate_config({})) == []
    assert logs == []  # nothing left to do, nothing said


def test_symlinks_inside_are_never_followed(isolated: Path, tmp_path: Path) -> None:
    open_tree(isolated)
    outside = tmp_path / "shared.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    (isolated / ".cache" / "market_data_X.json").symlink_to(outside)
    shared_dir = tmp_path / "shared"
    shared_dir.mkdir()
    shared_dir.chmod(0o755)
    (shared_dir / "inside.txt").write_text("")
    (shared_dir / "inside.txt").chmod(0o644)
    (isolated / ".cache" / "elsewhere").symlink_to(shared_dir, target_is_directory=True)
    assert check_private_paths(validate_config({})) == []
    assert mode(outside) == 0o644 and mode(shared_dir) == 0o755 and mode(shared_dir / "inside.txt") == 0o644
    assert mode(isolated / ".cache" / "token_u1_gs.json") == 0o600


def test_missing_directories_are_left_for_first_use(isolated: Path) -> None:
    assert check_private_paths(validate_config({"state_dir": "nowhere/state"})) == []
    assert not (isolated / ".cache").exists() and not (isolated / "nowhere").exists()


def test_what_cannot_be_fixed_stops_the_start_in_one_sentence(isolated: Path, monkeypatch) -> None:
    open_tree(isolated)

    def refuse(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refuse)  # as for a file another user owns
    problems = check_private_paths(validate_config({}))
    assert len(problems) == 6 and all("cannot be tightened (Operation not permitted)" in p for p in problems)
    with pytest.raises(UserError) as caught:
        require_private_paths(validate_config({}))
    message = str(caught.value)
    assert "\n" not in message and message.endswith("(5 more like it).") and "run chmod 700" in message


def test_a_file_where_the_cache_directory_should_be_is_named(isolated: Path) -> None:
    (isolated / "blocker").write_text("")
    with pytest.raises(UserError, match="cache.dir blocker is not a directory"):
        require_private_paths(validate_config({"cache": {"dir": "blocker"}}))


def test_the_warmup_command_runs_the_check(isolated: Path, monkeypatch, capsys) -> None:
    open_tree(isolated)
    config = isolated / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "client": {"timeout_s": 1, "retry": {"attempts": 1}},
                "captcha": {"solver": "command", "command": ["cat"], "spacing_s": 0},
                "brokers": {"b": {"identity_url": "http://127.0.0.1:9/i", "trading_url": "http://127.0.0.1:9/t"}},
                "accounts": [
                    {
                        "name": "a",
                        "broker": "b",
                        "username": "u1",
                        "password_env": "PW",
                        "orders": [{"isin": "IRO1FOLD0001"}],
                    }
                ],
            }
        )
    )
    monkeypatch.setenv("PW", "pw-preflight")
    code = main(["warmup", "--config", str(config)])
    assert code == 1, capsys.readouterr().err  # the broker is unreachable: the account fails
    assert mode(isolated / ".cache") == 0o700 and mode(isolated / ".state" / "journal") == 0o700
    assert mode(isolated / ".cache" / "stats.json") == 0o600
    assert "cannot connect" in capsys.readouterr().out


def log_events(stderr: str, event: str) -> list[dict]:
    """The JSON log lines of one event in a child's stderr."""
    return [line for line in map(json.loads, filter(str.strip, stderr.splitlines())) if line.get("event") == event]


async def test_a_missing_password_is_a_warning_at_every_start_while_the_cached_token_serves(
    monkeypatch, isolated: Path, tmp_path: Path
) -> None:
    async with running_simulator(1, ("gs",)) as sim:
        served = sim.config_snippet().data["accounts"][0]
        async with aiohttp.ClientSession() as session:
            token = await BrokerClient(session, sim, "gs").sign_in(served["username"])
        async with Cache(CacheSettings(dir=Path(".cache")), SystemClock()) as cache:
            await cache.save_token(served["username"], "gs", token, SystemClock().now() + timedelta(hours=1))
        blank = tmp_path / "blank"
        blank.write_text("  \n")
        others = [
            {"name": "empty", "password_env": "EMPTY_PW"},
            {"name": "nofile", "password_file": str(tmp_path / "absent")},
            {"name": "blank", "password_file": str(blank)},
            {"name": "fine", "password_env": "FINE_PW"},
            {"name": "off", "password_env": "UNSET_PW", "enabled": False},
        ]
        accounts = [served] + [
            {**a, "broker": "gs", "username": f"u{n}", "orders": served["orders"]} for n, a in enumerate(others)
        ]
        config = write_sim_config(sim, isolated / "config.yaml", accounts=accounts)
        env = {"EMPTY_PW": "", "FINE_PW": "fine-secret-pw"}  # the simulator's password variable is not passed on
        only = ["--accounts", served["name"]]
        for command in (["warmup", *only], ["fire", "--dry-run", "--now", *only]):
            result = await asyncio.to_thread(run_daemon, "--config", str(config), *command, env=env)
            assert result.returncode == 0, result.stderr  # the cached token serves: no login was needed
            warned = {e["account"]: e["fix"] for e in log_events(result.stderr, "account_password_missing")}
            assert warned == {
                served["name"]: f"account {served['name']!r}: environment variable {PASSWORD_ENV} is not set; "
                "export it or change password_env.",
                "empty": "account 'empty': environment variable EMPTY_PW is empty; "
                "export the password in it or change password_env.",
                "nofile": f"account 'nofile': password_file {tmp_path / 'absent'} cannot be read "
                "(No such file or directory); create it readable by this user or change password_file.",
                "blank": f"account 'blank': password_file {blank} is empty; write the password in it.",
            }, command
            assert all(e["level"] == "warning" for e in log_events(result.stderr, "account_password_missing"))
            assert "fine-secret-pw" not in result.stdout + result.stderr and token not in result.stdout + result.stderr


def blocked_state_dir(isolated: Path, case: str) -> str:
    """A state_dir the journal cannot be written in, as a mistake, a restore or a full disk leaves it."""
    if case == "a file":
        (isolated / "state").write_text("not a directory")
    elif case == "a file as its journal":
        (isolated / "state").mkdir(mode=0o700)  # private already: nothing to tighten, nothing logged
        (isolated / "state" / "journal").write_text("not a directory")
        (isolated / "state" / "journal").chmod(0o600)
    elif case == "under a file":
        (isolated / "state").write_text("not a directory")
        return "state/below"
    elif case == "read-only":
        (isolated / "state").mkdir(mode=0o700)
        (isolated / "state" / "journal").mkdir(mode=0o500)
    return "state"


UNWRITABLE = {
    "a file": "error: state_dir state is not a directory; point state_dir at a directory.\n",
    "a file as its journal": "error: state_dir state cannot hold the journal (state/journal is a file), and nothing is "
    "fired without one; move the file away or point state_dir at a directory.\n",
    "under a file": "error: state_dir state/below cannot hold the journal (a parent of state/below is a file), and "
    "nothing is fired without one; move the file away or point state_dir at a directory.\n",
    "read-only": "error: state_dir state cannot hold the journal (Permission denied on state/journal), and nothing is "
    "fired without one; make it writable by this user or point state_dir elsewhere.\n",
}


@pytest.mark.parametrize("command", [["fire", "--dry-run", "--now"], ["run"]])
@pytest.mark.parametrize("case", UNWRITABLE)
def test_fire_and_run_stop_before_the_arm_when_the_journal_cannot_be_written(isolated: Path, case, command) -> None:
    if case == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into a read-only directory; the file-in-the-way cases cover it as root")
    config = isolated / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": blocked_state_dir(isolated, case),
                "brokers": {"b": {"identity_url": "http://127.0.0.1:9/i", "trading_url": "http://127.0.0.1:9/t"}},
                "accounts": [
                    {
                        "name": "a",
                        "broker": "b",
                        "username": "u1",
                        "password_env": "PW",
                        "orders": [{"isin": "IRO1FOLD0001"}],
                    }
                ],
            }
        )
    )
    result = run_daemon("--config", str(config), *command, env={"PW": "pw-state"}, timeout=30)
    assert (result.returncode, result.stderr, result.stdout) == (2, UNWRITABLE[case], ""), result.stderr
    assert not (isolated / ".cache").exists()  # stopped before any broker call could fill it


def test_a_missing_state_dir_is_made_private_and_probed_without_a_trace(isolated: Path) -> None:
    require_writable_state_dir(validate_config({"state_dir": "var/state"}))
    assert mode(isolated / "var" / "state") == 0o700 and mode(isolated / "var" / "state" / "journal") == 0o700
    assert list((isolated / "var" / "state" / "journal").iterdir()) == []


def test_a_full_disk_stops_the_start_in_one_sentence(isolated: Path, monkeypatch) -> None:
    made = []
    real_mkstemp = tempfile.mkstemp

    def mkstemp(**kwargs):
        fd, name = real_mkstemp(**kwargs)
        made.append((name, mode(Path(name))))
        return fd, name

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "fsync", full)  # a full disk often shows only when the data must reach it
    with pytest.raises(UserError) as caught:
        require_writable_state_dir(validate_config({}))
    assert str(caught.value) == (
        "state_dir .state cannot hold the journal (No space left on device on .state/journal), "
        "and nothing is fired without one; free space on that disk or point state_dir at another one."
    )
    assert [m for _, m in made] == [0o600] and not Path(made[0][0]).exists()


def test_a_refused_write_names_the_journal_directory_even_as_root(isolated: Path, monkeypatch) -> None:
    def refused(**kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(Path(kwargs["dir"]) / ".writable-x.probe"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)  # what a read-only directory answers a user other than root
    with pytest.raises(UserError) as caught:
        require_writable_state_dir(validate_config({"state_dir": "state"}))
    assert str(caught.value) == UNWRITABLE["read-only"].removeprefix("error: ").rstrip("\n")
