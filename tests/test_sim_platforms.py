"""The simulator's platform seam: a second platform is one module beside Ephoenix, on the same port and market."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from daemon.sim import Simulator, platform_names, register_platform, route_names, unregister_platform
from daemon.sim._http import add_route, json_response, state_of
from tests.processes import REPO_ROOT
from tests.simhelp import sim_settings


async def _ping(request: web.Request) -> web.StreamResponse:
    """How many accounts the shared market holds for this broker: the double reads the one market."""
    broker = request.match_info["broker"]
    accounts = [a for a in state_of(request).market.accounts.values() if a.broker == broker]
    return json_response({"platform": "echo", "broker": broker, "accounts": len(accounts)})


async def _login(request: web.Request) -> web.StreamResponse:
    return json_response({"ok": True})


@dataclass(frozen=True)
class EchoSim:
    """A minimal platform test double: two routes under its own path segment."""

    name: str = "echo"
    title: str = "Echo"
    routes: tuple[str, ...] = ("login", "ping")
    reserved: frozenset[str] = frozenset()

    def add_routes(self, app: web.Application) -> None:
        add_route(app, self.name, "POST", "/{broker}/echo/login", _login, "login")
        add_route(app, self.name, "GET", "/{broker}/echo/ping", _ping, "ping")

    def broker_config(self, base_url: str, code: str) -> dict[str, str]:
        return {"platform": self.name, "api_url": f"{base_url}/{code}/echo"}


@pytest.fixture
def echo() -> Iterator[EchoSim]:
    platform = register_platform(EchoSim())
    try:
        yield platform
    finally:
        unregister_platform(platform.name)


async def test_a_second_platform_serves_its_brokers_beside_ephoenix_on_one_port(echo: EchoSim) -> None:
    sim = Simulator.default(accounts=3, brokers=["gs", ("ex", "echo")], settings=sim_settings())
    assert [(code, b.platform) for code, b in sim.state.brokers.items()] == [("gs", "ephoenix"), ("ex", "echo")]
    assert [a.broker for a in sim.accounts] == ["gs", "ex", "gs"]
    async with sim, aiohttp.ClientSession() as session:
        base = sim.base_url
        async with session.get(f"{base}/ex/echo/ping") as response:
            assert (response.status, await response.json()) == (
                200,
                {"platform": "echo", "broker": "ex", "accounts": 1},
            )
        async with session.get(f"{base}/gs/echo/ping") as response:  # gs is an Ephoenix broker
            assert response.status == 404
            assert "simulated on ephoenix, not echo" in (await response.json())["errorMessage"]
        async with session.get(f"{base}/ex/identity/api/Captcha/GetCaptcha") as response:  # and ex is not
            assert response.status == 404
        async with session.get(f"{base}/gs/identity/api/Captcha/GetCaptcha") as response:
            assert response.status == 200
        sim.add_fault("login:status=503")  # one route name, a fault target on both platforms
        async with session.post(f"{base}/ex/echo/login", json={}) as response:
            assert response.status == 503
        async with session.post(f"{base}/gs/identity/api/v2/accounts/login", json={}) as response:
            assert response.status == 503
        snippet = sim.config_snippet().data
    assert snippet["brokers"]["ex"] == {"platform": "echo", "api_url": f"{base}/ex/echo"}
    assert snippet["brokers"]["gs"] == {
        "identity_url": f"{base}/gs/identity",
        "trading_url": f"{base}/gs/trading",
        "backoffice_url": f"{base}/gs/backoffice",
    }
    logged = [(r.route, r.broker, r.status) for r in sim.request_log.records()]
    assert logged == [
        ("ping", "ex", 200),
        ("ping", "gs", 404),
        ("captcha", "ex", 404),
        ("captcha", "gs", 200),
        ("login", "ex", 503),
        ("login", "gs", 503),
    ]


def test_a_platform_adds_its_route_names_to_the_fault_targets(echo: EchoSim) -> None:
    assert route_names()[-1] == "ping" and route_names().count("login") == 1
    sim = Simulator(sim_settings())
    assert sim.add_fault("ping@ex:html").route == "ping"


def test_faults_name_only_registered_routes() -> None:
    assert "echo" not in platform_names()
    with pytest.raises(ValueError, match="names route 'ping'"):
        Simulator(sim_settings()).add_fault("ping:html")


def test_an_unknown_platform_or_a_code_on_two_platforms_is_refused(echo: EchoSim) -> None:
    sim = Simulator(sim_settings())
    with pytest.raises(ValueError, match="no platform 'onlineplus'; use one of ephoenix, exir, echo"):
        sim.add_broker("gs", platform="onlineplus")
    sim.add_broker("gs")
    with pytest.raises(ValueError, match="'gs' is already simulated on ephoenix, not echo"):
        sim.add_broker("gs", platform="echo")
    with pytest.raises(ValueError, match="no platform 'onlineplus'"):
        Simulator.default(accounts=1, brokers=["gs"], platform="onlineplus")
    with pytest.raises(ValueError, match="already registered"):
        register_platform(EchoSim(title="another"))


def test_the_simulator_imports_nothing_of_the_daemon_outside_its_package() -> None:
    """design.md: the simulator knows none of the daemon's internals (checked on every module of daemon/sim)."""
    outside = []
    for path in sorted((REPO_ROOT / "daemon" / "sim").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            outside += [
                f"{Path(path).name}: {n}"
                for n in names
                if (n == "daemon" or n.startswith("daemon.")) and n != "daemon.sim" and not n.startswith("daemon.sim.")
            ]
    assert outside == []
