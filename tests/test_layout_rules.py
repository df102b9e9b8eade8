"""The layout's rules (README "Layout rules", shared/design.md "Parts and their rules"), read from the imports
themselves so a change that breaks one fails here. Imports under `if TYPE_CHECKING:` do not count: they are
names for type hints, never a dependency at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.processes import REPO_ROOT

DAEMON = REPO_ROOT / "daemon"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """Every module `path` imports when it runs (`from a.b import c` counts `a.b` and `a.b.c`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])
                elif hasattr(child, "body") and isinstance(child.body, list):
                    visit(child.body)

    visit(tree.body)
    return found


MODULES = {module_name(p): runtime_imports(p) for p in DAEMON.rglob("*.py")}


def offenders(part: tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """The modules of `part` (and below) that import a `forbidden` module (or one below it), with what."""

    def within(name: str, roots: tuple[str, ...]) -> bool:
        return name in roots or name.startswith(tuple(root + "." for root in roots))

    found = {
        name: sorted(i for i in imports if within(i, forbidden))
        for name, imports in MODULES.items()
        if within(name, part)
    }
    return {name: hits for name, hits in found.items() if hits}


def test_the_rules_see_the_whole_package():
    assert {"daemon.executor", "daemon.cache", "daemon.sim.ephoenix", "daemon.platforms.ephoenix._codec"} <= set(
        MODULES
    )
    assert "daemon.client" in MODULES["daemon.executor"]


def test_nobody_imports_the_cli():
    def is_cli(name: str) -> bool:
        return name == "daemon.cli" or name.startswith("daemon.cli.")

    importers = {
        name: sorted(i for i in imports if is_cli(i))
        for name, imports in MODULES.items()
        if not is_cli(name) and name != "daemon.__main__"
    }
    assert {name: hits for name, hits in importers.items() if hits} == {}


@pytest.mark.parametrize(
    ("part", "forbidden"),
    [
        # the cache (its face and its storage) knows no HTTP, brokers or platforms
        (
            ("daemon.cache", "daemon.store"),
            ("aiohttp", "daemon.client", "daemon.account", "daemon.platforms", "daemon.executor", "daemon.net"),
        ),
        # the metrics hooks sit below the parts (as logs does): they import none of them
        (
            ("daemon.metrics",),
            (
                "daemon.cache",
                "daemon.store",
                "daemon.client",
                "daemon.account",
                "daemon.executor",
                "daemon.firing",
                "daemon.warmup",
                "daemon.service",
            ),
        ),
        # a platform knows nothing of firing plans, scheduling or the cache's storage
        (
            ("daemon.platforms",),
            (
                "daemon.executor",
                "daemon.firing",
                "daemon.scheduler",
                "daemon.days",
                "daemon.service",
                "daemon.cache",
                "daemon.store",
            ),
        ),
        # data flows one way: the client never reaches forward into the open or its journal
        (("daemon.client", "daemon.account"), ("daemon.executor", "daemon.firing", "daemon.service")),
        # the executor takes what it uses: no wiring container, no schedule, no config files
        (("daemon.executor",), ("daemon.wiring", "daemon.scheduler", "daemon.days", "daemon.service", "yaml")),
        # warmup takes the clients and the clock it uses, not the wiring
        (("daemon.warmup",), ("daemon.wiring", "daemon.executor", "daemon.service")),
        # the scheduler decides when, never how; the trading days are pure
        (
            ("daemon.scheduler", "daemon.days"),
            ("daemon.client", "daemon.executor", "daemon.cache", "daemon.store", "daemon.warmup", "aiohttp"),
        ),
        # order tracking only reads the broker's lists: it reaches no executor, wire, schedule or service
        (
            ("daemon.tracking",),
            ("daemon.executor", "daemon.net", "daemon.scheduler", "daemon.service", "daemon.cache", "daemon.store"),
        ),
        # notifications are told what happened: they reach no broker, open, journal or schedule themselves
        (
            ("daemon.notify",),
            (
                "daemon.client",
                "daemon.account",
                "daemon.platforms",
                "daemon.executor",
                "daemon.firing",
                "daemon.net",
                "daemon.cache",
                "daemon.store",
                "daemon.service",
                "daemon.scheduler",
                "aiohttp",
            ),
        ),
    ],
    ids=["cache", "metrics", "platforms", "client", "executor", "warmup", "scheduler", "tracking", "notify"],
)
def test_a_part_imports_nothing_it_must_not_know(part, forbidden):
    assert offenders(part, forbidden) == {}


def test_the_simulator_imports_nothing_of_the_daemon():
    outside = {
        name: sorted(i for i in imports if i.startswith("daemon") and not i.startswith("daemon.sim"))
        for name, imports in MODULES.items()
        if name.startswith("daemon.sim.") or name == "daemon.sim"
    }
    assert {name: hits for name, hits in outside.items() if hits} == {}


def test_a_package_is_entered_through_its_face():
    """Inside the daemon, a package's private modules (`daemon.P._x`) are imported only by P itself."""

    def private_of(name: str) -> str | None:
        parts = name.split(".")
        for i, part in enumerate(parts[2:], start=2):
            if part.startswith("_") and not part.startswith("__"):
                return ".".join(parts[:i])
        return None

    trespass = {
        name: sorted(i for i in imports if (owner := private_of(i)) and not within_package(name, owner))
        for name, imports in MODULES.items()
    }
    assert {name: hits for name, hits in trespass.items() if hits} == {}


def within_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")
