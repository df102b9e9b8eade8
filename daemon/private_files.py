"""Files only this user may read: directories 0700, files 0600, symlinks never followed."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def ensure_private_dir(directory: Path) -> int | None:
    """Create `directory` 0700, or tighten it if it is open to others; the old mode when it was tightened."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        os.chmod(directory, 0o700)
        return mode
    return None


def open_private_append(path: Path) -> int:
    """A file descriptor for appending to `path`, created 0600; a symlink in its place is refused (ELOOP)."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
