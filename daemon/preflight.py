"""Checks before a run talks to any broker: private files private, the journal writable, the token key opens the
cache, passwords readable.

Tokens, buying power and the journal are the account holder's business: the cache and state directories
must be 0700 and every file in them 0600. Modes loosened by hand, a restore from a backup or a
permissive umask are tightened here (and logged) rather than refused; what cannot be tightened (a file
owned by another user) stops the start with one sentence. The config file's own check (no inline
password in a file others can read) lives in `load_config`.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from daemon.cache import Cache
from daemon.config import Config
from daemon.errors import UserError
from daemon.logs import get_logger
from daemon.private_files import ensure_private_dir

log = get_logger("preflight")

DIR_MODE = 0o700
FILE_MODE = 0o600


def check_private_paths(config: Config) -> list[str]:
    """Tighten the cache and state directories (0700) and everything in them (files 0600, folders 0700).

    Symlinks inside are left alone and never followed. Returns the problems that could not be fixed,
    each one sentence; an empty list means everything is private now.
    """
    problems: list[str] = []
    for setting, root in (("cache.dir", Path(config.cache.dir)), ("state_dir", Path(config.state_dir))):
        if not root.exists():
            continue  # created 0700 on first use
        if not root.is_dir():
            problems.append(_not_a_directory(setting, root))
            continue
        _tighten(root, DIR_MODE, problems, follow=True)
        for parent, dirs, files in os.walk(root, onerror=lambda exc: problems.append(_unreadable(exc))):
            for name in dirs:
                _tighten(Path(parent) / name, DIR_MODE, problems)
            for name in files:
                _tighten(Path(parent) / name, FILE_MODE, problems)
    return problems


def _not_a_directory(setting: str, root: Path) -> str:
    return f"{setting} {root} is not a directory; point {setting} at a directory."


def require_cache_dir(config: Config) -> None:
    """For the `cache` commands, which write nothing (no tightening): a file where the file backend's
    directory should be is the sentence `warmup` gives, not a traceback or an empty cache."""
    root = Path(config.cache.dir)
    if config.cache.backend == "file" and root.exists() and not root.is_dir():
        raise UserError(_not_a_directory("cache.dir", root))


def require_private_paths(config: Config) -> None:
    """`check_private_paths`, with the first thing it could not fix as a UserError."""
    problems = check_private_paths(config)
    if problems:
        more = f" ({len(problems) - 1} more like it)" if len(problems) > 1 else ""
        raise UserError(problems[0].rstrip(".") + more + ".")


def require_writable_state_dir(config: Config) -> None:
    """No journal, no fire: prove now that `state_dir/journal` takes a file, or stop the start with one sentence.

    The journal is what keeps a restart inside the window from sending an accepted order again, so a
    fire that could not write it must not begin. Missing directories are made 0700 here; the probe is
    a 0600 temp file created, fsynced (a full disk may only say so then) and removed.
    """
    root = Path(config.state_dir)
    journal = root / "journal"
    at = root
    try:
        ensure_private_dir(root)
        at = journal
        ensure_private_dir(journal)
        fd, probe = tempfile.mkstemp(prefix=".writable-", suffix=".probe", dir=journal)  # 0600, O_EXCL, no symlink
        try:
            os.write(fd, b"opening-bell writes its journal here\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise UserError(_unwritable(root, at, exc)) from None


def _unwritable(root: Path, at: Path, exc: OSError) -> str:
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        where = f"{at} is a file" if exc.errno == errno.EEXIST else f"a parent of {at} is a file"
        reason, fix = where, "move the file away or point state_dir at a directory"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason, fix = f"{exc.strerror} on {at}", "free space on that disk or point state_dir at another one"
    else:
        reason, fix = f"{exc.strerror} on {at}", "make it writable by this user or point state_dir elsewhere"
    return f"state_dir {root} cannot hold the journal ({reason}), and nothing is fired without one; {fix}."


def warn_missing_passwords(config: Config) -> list[str]:
    """One warning per enabled account whose password cannot be read now; the problems, each one sentence.

    A cached token hides a missing password until the token ends, which can be 08:44: said at every
    start, it is fixed in time. Never fatal (the token may well last the day), never the password itself.
    """
    problems = []
    for account in config.accounts:
        problem = account.password_problem() if account.enabled else None
        if problem is not None:
            log.warning("account_password_missing", account=account.name, fix=problem)
            problems.append(problem)
    return problems


async def preflight(config: Config) -> None:
    """Everything a run checks before it starts: private paths, a writable journal, that the token key opens
    the cached tokens, then passwords readable (warnings, last: a start that stops says one sentence only)."""
    require_private_paths(config)
    require_writable_state_dir(config)
    async with Cache.from_config(config) as cache:
        await cache.check_token_key()
    warn_missing_passwords(config)


def _tighten(path: Path, wanted: int, problems: list[str], follow: bool = False) -> None:
    """Remove group and other bits through a descriptor (no race with a rename to a symlink)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT):  # a symlink, left alone; or gone meanwhile
            return
        problems.append(f"{path} cannot be checked ({exc.strerror}); make it readable by this user.")
        return
    try:
        info = os.fstat(fd)
        kind_ok = stat.S_ISDIR(info.st_mode) if wanted == DIR_MODE else stat.S_ISREG(info.st_mode)
        mode = stat.S_IMODE(info.st_mode)
        if not kind_ok or not mode & 0o077:
            return
        try:
            os.fchmod(fd, mode & wanted)
        except OSError as exc:
            problems.append(
                f"{path} is open to other users and cannot be tightened ({exc.strerror}); "
                f"run chmod {mode & wanted:o} {path} as its owner."
            )
            return
        log.warning("private_path_tightened", path=str(path), was=oct(mode), now=oct(mode & wanted))
    finally:
        os.close(fd)


def _unreadable(exc: OSError) -> str:
    return f"{exc.filename} cannot be listed ({exc.strerror}); make it readable by this user."
