"""The retry policy: what it retries (an unavailable broker) and what it never does (answers), how long it
waits, and warmup against the simulator's faults, where every account warms up or fails in one line."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from daemon.account import RetryPolicy, no_retries
from daemon.clock import FakeClock
from daemon.config import RetrySettings
from daemon.errors import AuthError, BrokerUnavailable, OrderRejected, RateLimited
from daemon.simulator import Simulator
from daemon.testing import SimulatorSolver, daemon_clock
from daemon.warmup import warmup
from daemon.wiring import Wiring
from tests.simhelp import sim_config
from tests.test_client_errors import ISIN, PASSWORD, broker, make_services  # noqa: F401 (fixture)

FAST = {"attempts": 4, "backoff_s": 0.001, "max_backoff_s": 0.005, "deadline_s": 30}


def retries(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "broker.retry"]


# ---- the policy on its own, on a fake clock ------------------------------------------------------------


class Sleeper:
    """A sleep that moves the fake clock instead of waiting, and remembers every wait."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.waits = clock, []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


def always_down(counter: list[int]):
    async def operation() -> None:
        counter.append(1)
        raise BrokerUnavailable("broker gs: /x answered HTTP 503.")

    return operation


async def test_backoff_doubles_with_jitter_and_is_capped(clock: FakeClock) -> None:
    sleeper = Sleeper(clock)
    policy = RetryPolicy(RetrySettings(attempts=6, backoff_s=0.1, max_backoff_s=0.5, deadline_s=60), clock, sleeper)
    calls: list[int] = []
    log = _Log()
    with pytest.raises(BrokerUnavailable) as caught:
        await policy.call("/x", always_down(calls), log)
    assert len(calls) == 6 and len(sleeper.waits) == 5
    for n, wait in enumerate(sleeper.waits):
        base = 0.1 * 2**n
        assert min(base, 0.5) <= wait <= min(base + 0.1, 0.5)
    assert str(caught.value) == "broker gs: /x answered HTTP 503; gave up after 6 attempts."
    assert [(event, f["attempt"], f["reason"]) for event, f in log.lines] == [
        ("broker.retry", n, "broker gs: /x answered HTTP 503.") for n in range(1, 6)
    ]


async def test_the_deadline_stops_new_attempts(clock: FakeClock) -> None:
    sleeper = Sleeper(clock)
    policy = RetryPolicy(RetrySettings(attempts=100, backoff_s=1, max_backoff_s=1, deadline_s=5), clock, sleeper)
    calls: list[int] = []
    with pytest.raises(BrokerUnavailable, match="gave up after 6 attempts"):
        await policy.call("/x", always_down(calls), _Log())
    assert len(calls) == 6 and sum(sleeper.waits) == 5  # attempts at 0, 1, ... 5 s; the next would start after 5 s


async def test_only_an_unavailable_broker_is_retried(clock: FakeClock) -> None:
    policy = RetryPolicy(RetrySettings(attempts=5, backoff_s=0, max_backoff_s=0), clock, Sleeper(clock))
    for error in (AuthError("no"), OrderRejected(1011, "x"), RateLimited("slow down", 1.0), ValueError("bug")):
        calls: list[int] = []

        async def fails(error: Exception = error, calls: list[int] = calls) -> None:
            calls.append(1)
            raise error

        with pytest.raises(type(error)):
            await policy.call("/x", fails, _Log())
        assert len(calls) == 1, error


async def test_no_retries_inside_the_fire_window_block(clock: FakeClock) -> None:
    policy = RetryPolicy(RetrySettings(attempts=5, backoff_s=0, max_backoff_s=0), clock, Sleeper(clock))
    calls: list[int] = []
    with no_retries():
        with pytest.raises(BrokerUnavailable) as caught:
            await policy.call("/x", always_down(calls), _Log())
        assert len(calls) == 1 and "gave up" not in str(caught.value)

        async def in_a_task() -> None:  # tasks started inside the block inherit it
            await policy.call("/x", always_down(calls), _Log())

        with pytest.raises(BrokerUnavailable):
            await asyncio.create_task(in_a_task())
    assert len(calls) == 2


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


# ---- the client against a scripted broker --------------------------------------------------------------


def html(_r: web.Request) -> web.Response:
    return web.Response(status=200, text="<html>maintenance</html>", content_type="text/html")


def truncated(_r: web.Request) -> web.Response:
    return web.Response(status=200, text='{"buyingPower": 1', content_type="application/json")


def bad_gateway(_r: web.Request) -> web.Response:
    return web.Response(status=503, text="unavailable")


def reset(request: web.Request) -> web.Response:
    request.transport.close()  # the connection ends with no answer
    return web.Response(status=200)


async def slow(_r: web.Request) -> web.Response:
    await asyncio.sleep(2)  # longer than the client's timeout in the test
    return web.json_response({})


@pytest.mark.parametrize(
    "answers",
    [[bad_gateway, bad_gateway], [html], [truncated, bad_gateway], [slow]],
    ids=["503", "html", "truncated-then-503", "timeout"],
)
async def test_unavailable_answers_are_retried_until_one_works(broker, answers) -> None:
    broker.script("book", *answers)
    async with make_services(broker, retry=FAST, timeout_s=0.3) as services:
        client = services.client(services.config.accounts[0])
        await client.token()
        with capture_logs() as logs:
            assert (await client.get_buying_power(use_cache=False))["buyingPower"] == 100_000_000
    lines = retries(logs)
    assert len(lines) == len(answers) and broker.hits["book"] == len(answers) + 1
    assert all(line["reason"] and line["log_level"] == "warning" for line in lines)
    assert PASSWORD not in str(logs) and broker.token not in str(logs)


async def test_a_reset_connection_is_retried(broker) -> None:
    """A POST (aiohttp itself re-sends only idempotent methods on a reused connection)."""
    broker.script("calc", reset, reset)
    async with make_services(broker, retry=FAST) as services:
        client = services.client(services.config.accounts[0])
        assert (await client.calculate_order_param(ISIN, "buy", 10000, 1000))["volume"] == 1
    assert broker.hits["calc"] == 3


async def test_the_policy_gives_up_with_one_line(broker) -> None:
    broker.script("book", *[bad_gateway] * 10)
    async with make_services(broker, retry=FAST) as services:
        with pytest.raises(BrokerUnavailable) as caught:
            await services.client(services.config.accounts[0]).get_buying_power(use_cache=False)
    assert broker.hits["book"] == 4
    assert "\n" not in str(caught.value) and str(caught.value).endswith("gave up after 4 attempts.")


async def test_a_wrong_password_is_never_retried(broker) -> None:
    refused = lambda r: web.json_response({"errorCode": 3000, "isSuccess": False})  # noqa: E731
    broker.script("login", refused, refused)
    async with make_services(broker, retry=FAST) as services:
        with pytest.raises(AuthError):
            await services.client(services.config.accounts[0]).token()
    assert broker.hits["login"] == 1


async def test_a_throttled_identity_host_is_left_to_the_limiter(broker) -> None:
    broker.script("captcha", *[lambda r: web.Response(status=429)] * 3)
    async with make_services(broker, retry=FAST) as services:
        with pytest.raises(RateLimited):
            await services.client(services.config.accounts[0]).login()
    assert broker.hits["captcha"] == 1


async def test_a_dropped_login_starts_again_with_a_new_captcha(broker) -> None:
    broker.script("login", reset)
    async with make_services(broker, retry=FAST) as services:
        assert await services.client(services.config.accounts[0]).token() == broker.token
    assert broker.hits["captcha"] == 2 and broker.hits["login"] == 2


async def test_orders_are_sent_once_even_when_the_answer_is_lost(broker) -> None:
    broker.script("order", bad_gateway)
    async with make_services(broker, retry=FAST) as services:
        with pytest.raises(BrokerUnavailable):
            await services.client(services.config.accounts[0]).new_order(ISIN, "buy", 10000, 10)
    assert broker.hits["order"] == 1


async def test_rejections_are_answers_and_not_retried(broker) -> None:
    broker.script("calc", lambda r: web.json_response({"isSuccess": False, "errorCode": 1001, "errorMessage": "x"}))
    async with make_services(broker, retry=FAST) as services:
        with pytest.raises(OrderRejected):
            await services.client(services.config.accounts[0]).calculate_order_param(ISIN, "buy", 10000, 1000)
    assert broker.hits["calc"] == 1


# ---- warmup against the simulator's faults -------------------------------------------------------------
# (the `sim` fixture with these accounts: the marker applies to the whole module, only these tests take `sim`)
pytestmark = [pytest.mark.sim(accounts=12, brokers=("gs", "shahr", "bbi"), loop_time=True), pytest.mark.looptime]


def fault_config(sim: Simulator, attempts: int, timeout_s: float = 10.0):
    retry = {"attempts": attempts, "backoff_s": 0.001, "max_backoff_s": 0.01, "deadline_s": 30}
    return sim_config(sim, client={"timeout_s": timeout_s, "retry": retry, "cross_check": False})


def one_line_reasons(results) -> list[str]:
    reasons = [r.error for r in results if r.error] + [o.status for r in results for o in r.orders if o.status != "ok"]
    assert all(reason and "\n" not in reason for reason in reasons)
    return reasons


SOMETIMES = {
    "tradingbook 503": ("tradingbook:status=503,rate=0.5", "tradingbook"),
    "instruments html": ("instruments:html,rate=0.5", "instruments"),
    "tradingbook malformed": ("tradingbook:malformed,rate=0.5", "tradingbook"),
    "tradingbook truncated": ("tradingbook:truncated,rate=0.5", "tradingbook"),
    "login dropped": ("login:drop,rate=0.5", "login"),
    "captcha 502": ("captcha:status=502,rate=0.5", "captcha"),
}


@pytest.mark.parametrize(("fault", "route"), SOMETIMES.values(), ids=SOMETIMES.keys())
async def test_warmup_rides_out_intermittent_faults(sim, fault, route) -> None:
    """Half the answers on one route fail; with 16 attempts every account still warms up (p(miss) ~ 1e-5)."""
    sim.add_fault(fault)
    config = fault_config(sim, attempts=16)
    with capture_logs() as logs:
        async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
            results = await warmup(services.clients(config.accounts), services.clock)
    assert all(r.ok for r in results), one_line_reasons(results)
    faulted = [r for r in sim.request_log.records(route=route) if r.fault]
    assert faulted and len(retries(logs)) >= len(faulted)
    assert "sim-pass" not in str(logs)


async def test_a_slow_route_times_out_and_is_retried(sim) -> None:
    sim.add_fault("tradingbook:jitter_ms=300")  # 0-300 ms against a 150 ms timeout: about half time out
    config = fault_config(sim, attempts=16, timeout_s=0.15)
    with capture_logs() as logs:
        async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
            results = await warmup(services.clients(config.accounts), services.clock)
    assert all(r.ok for r in results), one_line_reasons(results)
    assert any("timed out" in line["reason"] for line in retries(logs))


async def test_instruments_always_html_fails_every_order_in_one_line(sim) -> None:
    sim.add_fault("instruments:html")
    config = fault_config(sim, attempts=3)
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        results = await warmup(services.clients(config.accounts[:3]), services.clock)
    for result in results:
        assert result.error is None and result.buying_power  # login and buying power were fine
        (order,) = result.orders
        assert order.status == "market data: /api/v2/instruments/full answered HTTP 502; gave up after 3 attempts."


async def test_a_fault_on_one_broker_leaves_the_others_alone(sim) -> None:
    sim.add_fault("tradingbook@gs:status=503")
    sim.add_fault("tradingbook@shahr:delay_ms=700")
    config = fault_config(sim, attempts=3, timeout_s=0.3)
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        results = await warmup(services.clients(config.accounts), services.clock)
    by_broker = {b: [r for r in results if r.broker == b] for b in ("gs", "shahr", "bbi")}
    assert all(r.ok for r in by_broker["bbi"])
    assert {r.error for r in by_broker["gs"]} == {
        "broker gs: /api/v2/tradingbook/GetLastTradingBook answered HTTP 503; gave up after 3 attempts."
    }
    assert {r.error for r in by_broker["shahr"]} == {
        "broker shahr: /api/v2/tradingbook/GetLastTradingBook failed (timed out); gave up after 3 attempts."
    }
    assert len(sim.request_log.records(route="tradingbook", broker="bbi")) == 4  # one call each, no retries
