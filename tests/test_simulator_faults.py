"""Fault injection and the request log, over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from daemon.clock import FakeClock
from daemon.sim._transport import ArrivalBook, _StampingProtocol
from daemon.simulator import DEFAULT_PASSWORD, Simulator
from tests.sim_support import GS_USER, BrokerClient
from tests.simhelp import SIM_SEED, sim_settings


@pytest.fixture
async def gs(sim: Simulator) -> AsyncIterator[BrokerClient]:
    async with aiohttp.ClientSession() as session:
        client = BrokerClient(session, sim, "gs")
        await client.sign_in(GS_USER)
        yield client


# ---- failure kinds -------------------------------------------------------------------------------
async def test_status_fault_is_a_problem_json(sim: Simulator, gs: BrokerClient) -> None:
    sim.add_fault("tradingbook:status=503")
    response = await gs.trading_book()
    assert response.status == 503 and response.content_type == "application/problem+json"
    assert (await response.json())["status"] == 503


async def test_html_fault_is_an_error_page(sim: Simulator, gs: BrokerClient) -> None:
    sim.add_fault("tradingbook:html")
    response = await gs.trading_book()
    assert response.status == 502 and response.content_type == "text/html"
    assert "<html>" in await response.text()


async def test_malformed_fault_spoils_the_real_answer(sim: Simulator, gs: BrokerClient) -> None:
    sim.add_fault("tradingbook:malformed")
    response = await gs.trading_book()
    text = await response.text()
    assert response.status == 200 and response.content_type == "application/json" and '"buyingPower"' in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


async def test_truncated_fault_cuts_the_real_answer(sim: Simulator, gs: BrokerClient) -> None:
    whole = await (await gs.trading_book()).text()
    sim.add_fault("tradingbook:truncated")
    cut = await (await gs.trading_book()).text()
    assert whole.startswith(cut) and len(cut) < len(whole)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut)


async def test_drop_before_processing_books_nothing(sim: Simulator, gs: BrokerClient) -> None:
    sim.add_fault("new_order:drop")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await gs.new_order(1000)
    assert sim.orders() == []
    record = sim.request_log.records(route="new_order")[-1]
    assert (record.status, record.fault, record.username) == (None, "drop", None)


async def test_drop_after_processing_books_the_order_but_loses_the_answer(sim: Simulator, gs: BrokerClient) -> None:
    sim.add_fault("new_order:drop,after")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await gs.new_order(1000)
    assert [o.volume for o in sim.orders()] == [1000]
    record = sim.request_log.records(route="new_order")[-1]
    assert (record.status, record.fault, record.error_code, record.username) == (None, "drop", 0, GS_USER)


async def test_status_after_processing_books_the_order(sim: Simulator, gs: BrokerClient) -> None:
    sim.add_fault("new_order:status=504,after")
    assert (await gs.new_order(1000)).status == 504
    assert len(sim.orders()) == 1


async def test_captcha_without_image_per_broker(sim: Simulator, gs: BrokerClient) -> None:
    sim.add_fault("captcha@gs:no_image")
    throttled = await (await gs.captcha()).json()
    assert "captchaByteData" not in throttled and throttled["salt"] and throttled["hashedCaptcha"]
    shahr = BrokerClient(gs.session, sim, "shahr")
    assert "captchaByteData" in await (await shahr.captcha()).json()


async def test_rate_zero_never_fails_and_clear_removes(sim: Simulator, gs: BrokerClient) -> None:
    sim.add_fault("*:status=500,rate=0")
    assert (await gs.trading_book()).status == 200
    sim.add_fault("holdings:status=500")
    assert (await gs.holdings()).status == 500
    sim.clear_faults("holdings")
    assert (await gs.holdings()).status == 200


async def test_a_seeded_fault_draws_the_same_way_in_every_run(
    sim: Simulator, gs: BrokerClient, clock: FakeClock
) -> None:
    """The n-th request a fault meets draws alike for one seed, whatever other traffic and faults come between."""
    sim.add_fault("tradingbook:status=503,rate=0.5")
    first = [(await gs.trading_book()).status for _ in range(40)]
    assert set(first) == {200, 503}
    for seed, busy in ((SIM_SEED, True), (SIM_SEED + 1, False)):
        async with Simulator.default(
            accounts=2, brokers=["gs", "shahr"], clock=clock, settings=sim_settings(seed=seed)
        ) as again:
            again.add_fault("tradingbook:status=503,rate=0.5")
            again.add_fault("calc:status=500,rate=0.5")  # a second fault with its own draws
            other = BrokerClient(gs.session, again, "gs")
            await other.sign_in(GS_USER)
            statuses = []
            for n in range(40):
                if busy and n % 3 == 0:
                    await other.captcha()
                    await other.calc({"isin": "IRO1FOLD0001", "side": 1, "totalNetAmount": 10**8, "price": 5580})
                statuses.append((await other.trading_book()).status)
        assert (statuses == first) is (seed == SIM_SEED)  # another seed, other draws (1 in 2**40 alike)


async def test_delay_goes_through_the_simulators_sleep(sim: Simulator, gs: BrokerClient, clock: FakeClock) -> None:
    waited: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waited.append(seconds)
        clock.advance(seconds)  # the latency passes on the fake clock

    sim.state.sleep = fake_sleep
    sim.add_fault("calc:delay_ms=20,jitter_ms=5")
    sim.add_fault("calc@shahr:delay_ms=1000")  # another broker: not applied
    before = clock.monotonic_ns()
    response = await gs.calc({"isin": "IRO1FOLD0001", "side": 1, "totalNetAmount": 100_000_000, "price": 5580})
    assert (await response.json())["volume"] == 17854
    assert len(waited) == 1 and 0.020 <= waited[0] <= 0.025
    record = sim.request_log.records(route="calc")[-1]
    assert record.monotonic_ns == before  # stamped on arrival, before the delay
    assert record.handled_monotonic_ns - record.monotonic_ns == int(waited[0] * 1e9)


# ---- request log ---------------------------------------------------------------------------------
async def test_request_log_in_process(sim: Simulator, gs: BrokerClient, clock: FakeClock) -> None:
    sim.set_skew(5_000)  # the log keeps the HOST's clock, not the simulator's
    await gs.new_order(1000)
    await gs.new_order(1000)
    await gs.trading_book(token="bogus")
    logins = sim.request_log.records(route="login")
    assert [(r.broker, r.username, r.status, r.error_code) for r in logins] == [("gs", GS_USER, 200, 0)]
    orders = sim.request_log.records(route="new_order", username=GS_USER)
    assert [r.error_code for r in orders] == [0, 1018]
    assert all(r.time_ns == clock.time_ns() and r.monotonic_ns == clock.monotonic_ns() for r in orders)
    assert orders[0].method == "POST" and orders[0].path == "/gs/trading/api/v2/orders/NewOrder"
    unauthorized = sim.request_log.records(status=401)
    assert [(r.route, r.username) for r in unauthorized] == [("tradingbook", None)]
    assert [r.route for r in sim.request_log.records(broker="gs")][:2] == ["captcha", "login"]
    everything = repr(sim.request_log.records())
    assert DEFAULT_PASSWORD not in everything and gs.token not in everything  # type: ignore[operator]


async def test_request_log_on_disk(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "requests.jsonl"
    sim = Simulator.default(accounts=1, brokers=["gs"], clock=clock, settings=sim_settings(request_log_path=path))
    async with sim, aiohttp.ClientSession() as session:
        client = BrokerClient(session, sim, "gs")
        await client.sign_in(GS_USER)
        await client.new_order(1000)
        await sim.request_log.flush()
        lines = path.read_text().splitlines()
        assert [json.loads(line)["route"] for line in lines] == ["captcha", "login", "new_order"]
        await client.trading_book()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["route"] for r in rows] == ["captcha", "login", "new_order", "tradingbook"]
    assert rows[2]["error_code"] == 0 and rows[2]["username"] == GS_USER and rows[2]["time_ns"] == clock.time_ns()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert DEFAULT_PASSWORD not in text and client.token not in text  # type: ignore[operator]


# ---- arrival stamps ------------------------------------------------------------------------------
class _Inner(asyncio.Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.received.append(data)


def test_arrival_is_the_first_bytes_of_each_request(clock: FakeClock) -> None:
    book = ArrivalBook(clock)
    inner = _Inner()
    protocol = _StampingProtocol(inner, book)
    first = (clock.time_ns(), clock.monotonic_ns())
    protocol.data_received(b"POST / HTTP/1.1\r\n")
    clock.advance(0.5)
    protocol.data_received(b"Content-Length: 2\r\n\r\n")  # the same request's later bytes
    assert inner.received == [b"POST / HTTP/1.1\r\n", b"Content-Length: 2\r\n\r\n"]
    assert book.take(inner) == first
    protocol.data_received(b"{}")  # body read by the handler after the stamp was taken
    book.reset(inner)  # answer sent: body bytes never become the next request's arrival
    clock.advance(1)
    second = (clock.time_ns(), clock.monotonic_ns())
    protocol.data_received(b"GET / HTTP/1.1\r\n\r\n")
    assert book.take(inner) == second
    assert book.take(inner) == second  # nothing pending: falls back to now, which has not moved
    protocol.connection_lost(None)
