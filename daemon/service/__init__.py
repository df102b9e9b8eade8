"""The long-running service: the systemd loop, the day runner, groups of hosts, sd_notify."""

from __future__ import annotations

from daemon.service._group import (
    Group,
    preferred,
)
from daemon.service._loop import (
    RunnerFactory,
    ServiceLoop,
)
from daemon.service._runner import (
    make_runner,
)
from daemon.service._sdnotify import (
    Notifier,
)

__all__ = [
    "Group",
    "Notifier",
    "RunnerFactory",
    "ServiceLoop",
    "make_runner",
    "preferred",
]
