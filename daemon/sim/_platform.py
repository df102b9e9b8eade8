"""The seam between the shared market and one broker platform's HTTP: what a platform module registers.

A platform module (`daemon/sim/ephoenix.py` is the first) adds its routes to the one shared app, under
the path prefix of each broker code it serves (`/{broker}/...`), and says how the daemon's config
reaches a broker on it. Everything else (instruments, accounts, buying power, orders, the clock,
faults, the request log) is the shared market's, so the next platform is one more module.

Rules for a platform's routes: each is added with `daemon.sim._http.add_route`, which names it
`PLATFORM.ROUTE` (ROUTE is what faults and the request log call it; the same ROUTE on two platforms,
such as `login`, is one fault target); its paths must not collide with another platform's; a route
under `/{broker}/` answers only for brokers on its platform (the shared middleware answers 404 otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiohttp import web

DEFAULT_PLATFORM = "ephoenix"


class SimPlatform(Protocol):
    name: str  # lowercase, as config and `--brokers gs:NAME` write it
    title: str  # as people read it, e.g. "Ephoenix"
    routes: tuple[str, ...]  # its route names, for faults and the request log
    reserved: frozenset[str]  # first path segments it serves without a broker code, so no broker may take them

    def add_routes(self, app: web.Application) -> None:
        """Add every route of the platform to the shared app."""

    def broker_config(self, base_url: str, code: str) -> dict[str, str]:
        """The `brokers.<code>` entry of the daemon's config.yaml for a broker served at base_url."""


_PLATFORMS: dict[str, SimPlatform] = {}


def register_platform(platform: SimPlatform) -> SimPlatform:
    """Make a platform available to every simulator started from now on; registering a name twice is a mistake."""
    known = _PLATFORMS.get(platform.name)
    if known is not None and known is not platform:
        raise ValueError(f"a simulator platform named {platform.name!r} is already registered")
    if not platform.name.isalnum() or not platform.name.islower():
        raise ValueError(f"simulator platform name {platform.name!r} must be lowercase letters and digits")
    _PLATFORMS[platform.name] = platform
    return platform


def platform(name: str) -> SimPlatform:
    """The registered platform called `name`; a ValueError that names the known ones otherwise."""
    found = _PLATFORMS.get(name)
    if found is None:
        raise ValueError(f"the simulator has no platform {name!r}; use one of {', '.join(platform_names())}")
    return found


def platforms() -> tuple[SimPlatform, ...]:
    return tuple(_PLATFORMS.values())


def platform_names() -> tuple[str, ...]:
    return tuple(_PLATFORMS)


def route_names() -> tuple[str, ...]:
    """Every registered platform's route names, each once, in order of registering."""
    return tuple(dict.fromkeys(route for p in _PLATFORMS.values() for route in p.routes))


def reserved_names() -> frozenset[str]:
    return frozenset(name for p in _PLATFORMS.values() for name in p.reserved)


def unregister_platform(name: str) -> None:
    """Forget a platform registered for a while (a test's double); simulators already built keep its routes."""
    _PLATFORMS.pop(name, None)
