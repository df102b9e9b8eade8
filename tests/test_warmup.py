"""Warmup against the simulator on loopback: many accounts, brokers, and the failures that must stay local."""

from __future__ import annotations

import asyncio
import os
import sys
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.sim import LimiterSettings
from daemon.sim.ephoenix import calculate_order_param
from daemon.simulator import PASSWORD_ENV, Simulator
from daemon.sizing import Limits, buy_volume
from daemon.testing import SimulatorSolver, daemon_clock
from daemon.warmup import warmup
from daemon.wiring import Wiring
from tests.processes import REPO_ROOT
from tests.simhelp import needs_ocr, sim_config, sim_settings, write_sim_config

pytestmark = [pytest.mark.sim(accounts=12, brokers=("gs", "shahr", "bbi"), loop_time=True), pytest.mark.looptime]

# a child `python -m daemon` lives in real time, so its simulator does too
CHILD = {"accounts": 12, "brokers": ("gs", "shahr", "bbi"), "real_time": True}


@needs_ocr
async def test_twelve_accounts_over_three_brokers_warm_up(sim):
    """The real OCR solver reads every captcha (the other warmup tests take the simulator's answers)."""
    config = sim_config(sim)
    async with Wiring(config, daemon_clock(sim)) as services:
        results = await warmup(services.clients(config.accounts), services.clock)
        assert all(r.ok for r in results), [r.error or [o.status for o in r.orders] for r in results]
        for result in results:
            (order,) = result.orders
            assert order.price == 5_580 and order.volume > 0
            assert result.token_valid_until
        for account in config.accounts:
            assert await services.cache.get_order_params(account.username, account.broker, "IRO1FOLD0001")
    logins = sim.request_log.records(route="login")
    assert len({(r.broker, r.username) for r in logins if r.error_code == 0}) == 12


async def test_second_warmup_reuses_cached_tokens(sim):
    config = sim_config(sim)
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        await warmup(services.clients(config.accounts[:3]), services.clock)
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        results = await warmup(services.clients(config.accounts[:3]), services.clock)
    assert all(r.ok for r in results)
    assert len(sim.request_log.records(route="login")) == 3


class FirstAnswerWrong:
    """A solver whose first answer is spoiled: a wrong captcha must be retried."""

    def __init__(self, solver):
        self.solver, self.spoiled = solver, False

    async def solve(self, image: bytes) -> str:
        answer = await self.solver.solve(image)
        if not self.spoiled:
            self.spoiled = True
            return "00000" if answer != "00000" else "11111"
        return answer

    async def aclose(self):
        await self.solver.aclose()


async def test_a_wrong_captcha_is_retried(sim):
    config = sim_config(sim)
    solver = FirstAnswerWrong(SimulatorSolver(sim))
    async with Wiring(config, daemon_clock(sim), solver=solver) as services:
        (result,) = await warmup(services.clients(config.accounts[:1]), services.clock)
    assert result.ok
    codes = [r.error_code for r in sim.request_log.records(route="login")]
    assert codes[0] == -1000 and codes[-1] == 0


async def test_one_bad_password_fails_only_its_account(sim, monkeypatch):
    config = sim_config(sim)
    monkeypatch.setenv("WRONG_PW", "not-the-password")
    bad = config.accounts[1].model_copy(update={"password_env": "WRONG_PW"})
    accounts = [config.accounts[0], bad, config.accounts[2]]
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        results = await warmup(services.clients(accounts), services.clock)
    assert [r.ok for r in results] == [True, False, True]
    assert "username or password" in results[1].error
    assert "not-the-password" not in results[1].error
    assert len(sim.request_log.records(route="login", username=bad.username)) == 1  # never retried


async def test_a_429_storm_on_one_broker_delays_only_that_broker(monkeypatch):
    limit = LimiterSettings(window_s=60, max_calls=3, cooldown_s=1.0, retry_after=True)
    simulator = Simulator.default(accounts=0, settings=sim_settings(login_limit=limit))
    for i in range(3):
        simulator.add_account("gs", f"00100000{i:02d}", "sim-pass")
    for broker in ("shahr", "bbi"):
        simulator.add_account(broker, f"0020000{broker[:1]}00", "sim-pass")
    monkeypatch.setenv(PASSWORD_ENV, "sim-pass")
    async with simulator as sim:
        config = sim_config(sim, captcha={"cooldown_s": 30.0})  # Retry-After (1 s) must win over this
        async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
            results = await warmup(services.clients(config.accounts), services.clock)
    assert all(r.ok for r in results)
    log = sim.request_log
    throttled = [r for r in log.records(route="captcha") + log.records(route="login") if r.status == 429]
    assert throttled and {r.broker for r in throttled} == {"gs"}
    others_done = max(r.monotonic_ns for r in log.records(route="tradingbook") if r.broker != "gs")
    gs_done = max(r.monotonic_ns for r in log.records(route="tradingbook") if r.broker == "gs")
    assert others_done < gs_done
    gs_calls = sorted(
        log.records(route="captcha", broker="gs") + log.records(route="login", broker="gs"),
        key=lambda r: r.monotonic_ns,
    )
    for refused in throttled:  # the next call to gs waits out the Retry-After (1 s), never sooner
        later = [r.monotonic_ns for r in gs_calls if r.monotonic_ns > refused.monotonic_ns and r.status != 429]
        assert not later or later[0] - refused.monotonic_ns >= 0.95e9


async def test_captcha_fetches_per_host_respect_the_spacing(sim):
    config = sim_config(sim, captcha={"spacing_s": 0.2})
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        await warmup(services.clients(config.accounts[:8]), services.clock)
    for broker in ("gs", "shahr", "bbi"):
        times = sorted(r.time_ns for r in sim.request_log.records(route="captcha", broker=broker))
        gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:])]
        assert gaps and min(gaps) >= 0.2 * 0.9, gaps  # arrival jitter on loopback is well under 10 %


async def test_brokers_sharing_one_host_are_spaced_apart_not_together(sim):
    """The simulator serves every broker on one host under path prefixes, as a proxy could: each broker's
    identity service still gets its own spacing slot, so brokers log in side by side."""
    config = sim_config(sim, captcha={"spacing_s": 30.0})
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        results = await warmup(
            services.clients(config.accounts[:3]), services.clock
        )  # one account per broker: no broker waits 30 s
        slots = {code: services.limiter.free_at_ns(config.broker(code).identity_url) for code in ("gs", "shahr", "bbi")}
    assert all(r.ok for r in results)
    assert all(slots.values()), slots


async def test_a_revoked_token_is_refreshed_on_401(sim):
    config = sim_config(sim)
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        client = services.client(config.accounts[0])
        await client.get_buying_power()
        sim.revoke_tokens()
        assert (await client.get_buying_power(use_cache=False))["buyingPower"] > 0
    logins = sim.request_log.records(route="login", username=config.accounts[0].username)
    assert len([r for r in logins if r.error_code == 0]) == 2  # a captcha misread adds a request, not a login


async def test_local_formula_matches_the_simulators_endpoint(sim):
    config = sim_config(sim)
    rng = __import__("random").Random(7)
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        client = services.client(config.accounts[0])
        instrument = await client.get_instrument("IRO1FOLD0001")
        for _ in range(25):
            amount = rng.randint(0, 2_000_000_000)
            price = rng.randint(instrument.limits.minap, instrument.limits.maxap)
            theirs = await client.calculate_order_param("IRO1FOLD0001", "buy", price, amount)
            assert theirs["volume"] == buy_volume(amount, price, config.fees.buy, instrument.limits), (amount, price)


@settings(max_examples=300, deadline=None)
@given(
    amount=st.integers(0, 10**13), price=st.integers(1, 10**6), mineq=st.integers(1, 1000), extra=st.integers(0, 10**6)
)
def test_local_formula_equals_the_simulators_formula(amount, price, mineq, extra):
    maxeq = mineq + extra
    theirs = calculate_order_param(1, Decimal(amount), Decimal(price), mineq, maxeq, Decimal("0.003712"))
    assert theirs.volume == buy_volume(amount, price, 0.003712, Limits(mineq, maxeq, 1, 10**6))


@needs_ocr
@pytest.mark.looptime(False)
@pytest.mark.sim(**CHILD)
async def test_warmup_command_prints_a_table_and_json(sim, tmp_path):
    path = write_sim_config(sim, tmp_path / "config.yaml", cache={"dir": str(tmp_path / "cache")})
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), PASSWORD_ENV: "sim-pass"}
    names = [a["name"] for a in sim.config_snippet().data["accounts"][:2]]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        "warmup",
        "--config",
        str(path),
        "--accounts",
        *names,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    data = orjson.loads(out)
    assert [a["account"] for a in data["accounts"]] == names
    assert all(a["ok"] for a in data["accounts"])
    assert data["cache"]["tokens"]["entries"] == 2
    assert b"sim-pass" not in out + err

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        "warmup",
        "--config",
        str(path),
        "--accounts",
        "nobody",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and b"'nobody'" in err and b"Traceback" not in err


@needs_ocr
@pytest.mark.looptime(False)
@pytest.mark.sim(**CHILD)
async def test_warmup_exit_code_is_nonzero_when_an_account_fails(sim, tmp_path):
    path = write_sim_config(sim, tmp_path / "config.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), PASSWORD_ENV: "wrong"}
    name = sim.config_snippet().data["accounts"][0]["name"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        "warmup",
        "--config",
        str(path),
        "--accounts",
        name,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 1
    assert b"username or password" in out
