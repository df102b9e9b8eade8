"""`ensure_token_live`: a token revoked since warmup is found out and replaced before the open."""

from __future__ import annotations

import pytest

from daemon.errors import AuthError
from daemon.simulator import Simulator
from daemon.testing import SimulatorSolver, daemon_clock
from daemon.wiring import Wiring
from tests.simhelp import sim_config

pytestmark = [pytest.mark.sim(accounts=2, brokers=("gs", "shahr"), loop_time=True), pytest.mark.looptime]


@pytest.fixture
async def services(sim):
    async with Wiring(sim_config(sim), daemon_clock(sim), solver=SimulatorSolver(sim)) as shared:
        yield shared


@pytest.fixture
async def client(services):
    """The first account's client, logged in (as after warmup)."""
    client = services.client(services.config.accounts[0])
    await client.token()
    return client


def logins(sim: Simulator, username: str) -> list[int | None]:
    return [r.error_code for r in sim.request_log.records(route="login", username=username)]


async def test_a_live_token_costs_one_call_and_refreshes_buying_power(sim, services, client) -> None:
    account = client.account
    sim.account(account.broker, account.username).remain += 1_000
    before = len(sim.request_log)
    await client.ensure_token_live()
    assert len(sim.request_log) == before + 1
    cached = await services.cache.get_buying_power(account.username, account.broker)
    assert cached["buyingPower"] == sim.account(account.broker, account.username).buying_power
    assert logins(sim, account.username)[-1] == 0


async def test_a_revoked_token_is_replaced_by_a_new_login(sim, client) -> None:
    account = client.account
    first = (await client.cached_token())["token"]
    done = len(logins(sim, account.username))
    sim.revoke_tokens(broker=account.broker, username=account.username)
    await client.ensure_token_live()
    assert (await client.cached_token())["token"] != first
    assert logins(sim, account.username)[done:][-1] == 0
    assert [r.status for r in sim.request_log.records(route="tradingbook")] == [401, 200]
    assert {r.username for r in sim.request_log.records(route="login")} == {account.username}  # no other account


async def test_a_login_that_then_fails_raises_auth_error(sim, client) -> None:
    account = client.account
    sim.account(account.broker, account.username).password = "changed-by-the-owner"
    sim.revoke_tokens()
    with pytest.raises(AuthError, match="username or password"):
        await client.ensure_token_live()
    assert await client.cached_token() is None
