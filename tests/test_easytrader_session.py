"""easytrader's session and codec against the simulator's Mofid (127.0.0.1, a FakeClock, seeded): the full OAuth
login through the client (the simulator checks PKCE), same-login required, the BotDetect captcha after a failure,
drafts at the arm and one batch at the open, a lost batch answer found in today's orders, the clock from
server-time, and the request budget counted call by call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from daemon.clock import FakeClock
from daemon.errors import AuthError, BrokerUnavailable, RateLimited
from daemon.net import WireConnection, WireResponse
from daemon.platforms import Verdict
from daemon.platforms.easytrader import EasytraderCodec, EasytraderSession, EasytraderToken
from daemon.platforms.easytrader import _session as session_module
from daemon.sim.easytrader import easytrader_state
from daemon.simulator import Simulator
from daemon.testing import SimulatorSolver, running_simulator, sim_config
from daemon.wiring import Wiring

MOFID, HOT = "mofid", "IRO1FOLD0001"  # the simulator's FOLD: band [5260, 5580], maxeq 200000
LOGIN_ROUTES = ["authorize", "login_page", "login", "authorize", "token", "same_login"]


class CountingSolver:
    """The simulator's own answers (SimulatorSolver), after `fake` answers of our choosing (the first ones)."""

    def __init__(self, sim: Simulator, fake: list[str] | None = None) -> None:
        self.real = SimulatorSolver(sim)
        self.fake = list(fake or [])
        self.given: list[str] = []

    async def solve(self, image: bytes) -> str:
        answer = self.fake.pop(0) if self.fake else await self.real.solve(image)
        self.given.append(answer)
        return answer

    async def aclose(self) -> None:
        return None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 21, 5, 14, 0, tzinfo=UTC))  # 08:44:00 Tehran: the arm


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    async with running_simulator(accounts=2, brokers=[(MOFID, "easytrader"), ("gs", "ephoenix")], clock=clock) as sim:
        sim.set_open_at(datetime(2026, 11, 21, 5, 15, 0, tzinfo=UTC))  # 08:45:00 Tehran
        yield sim


def mofid_config(sim: Simulator, tmp_path, max_attempts: int = 4, **broker):
    brokers = {MOFID: {**sim.config_snippet().data["brokers"][MOFID], **broker}} if broker else {}
    return sim_config(
        sim,
        state_dir=str(tmp_path / "state"),
        cache={"dir": str(tmp_path / "cache")},
        captcha={"spacing_s": 0, "max_attempts": max_attempts},
        client={"retry": {"backoff_s": 0.01, "max_backoff_s": 0.02}},
        **({"brokers": brokers} if brokers else {}),
    )


def mofid_account(config):
    return next(a for a in config.accounts if a.broker == MOFID)


def routes(sim: Simulator, *names: str) -> list[str | None]:
    return [r.route for r in sim.request_log.records(broker=MOFID) if not names or r.route in names]


def statuses(sim: Simulator, name: str) -> list[int | None]:
    return [r.status for r in sim.request_log.records(broker=MOFID) if r.route == name]


async def first_answer(sim: Simulator, clock, request: bytes) -> WireResponse:
    connection = await WireConnection.open(sim.base_url, clock)
    try:
        connection.send_nowait(request)
        return await connection.next_response(5.0)
    finally:
        connection.close()


# ---- the login -----------------------------------------------------------------------------------------------


async def test_the_full_oauth_login_through_the_client_then_same_login_then_reads(sim, clock, tmp_path) -> None:
    config = mofid_config(sim, tmp_path)
    account = mofid_account(config)
    solver = SimulatorSolver(sim)
    async with Wiring(config, clock, solver=solver) as services:
        client = services.client(account)
        assert isinstance(client.session, EasytraderSession) and isinstance(client.codec, EasytraderCodec)
        token = EasytraderToken.unpack(await client.token())
        assert routes(sim) == LOGIN_ROUTES and solver.solved == 0  # no captcha on a first login [confirmed live]
        assert statuses(sim, "authorize") == [302, 302] and statuses(sim, "token") == [200]
        assert token.access_token.count(".") == 2
        cached = await services.cache.get_token(account.username, MOFID)
        assert cached["token"] == await client.token()
        held = sim.state.market.account(MOFID, account.username)
        assert (await client.session.buying_power()).amount == held.buying_power
        assert (await client.session.holdings(HOT)).volume == held.holdings.get(HOT, 0)
        instrument = await client.session.instrument(HOT)
        assert (instrument.limits.minap, instrument.limits.maxap, instrument.limits.maxeq) == (5260, 5580, 200000)
        assert await client.session.today_orders(clock.now().date()) == []
        assert (await client.session.fees(HOT)).buy == 0.005
        sized = await client.session.calculate_order(HOT, "buy", 20930, 31_224_500)
        assert sized["volume"] == 1484  # the doc's live check: floor(31,224,500 / (20,930 x 1.005))
    assert statuses(sim, "money") == [200] and statuses(sim, "holdings") == [200] and statuses(sim, "orders") == [200]


async def test_the_simulator_refuses_a_wrong_verifier_and_the_login_starts_over(
    sim, clock, tmp_path, monkeypatch
) -> None:
    real = session_module.token_form
    spoilt = iter(["x" * 96])

    def token_form(code: str, redirect_uri: str, verifier: str) -> str:
        return real(code, redirect_uri, next(spoilt, verifier))  # the first exchange with a wrong verifier

    monkeypatch.setattr(session_module, "token_form", token_form)
    config = mofid_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        await services.client(mofid_account(config)).token()
    assert statuses(sim, "token") == [400, 200]  # invalid_grant, then a new round with a new PKCE pair
    # the second round's authorize finds the identity session of the first alive: the code at once
    assert routes(sim) == LOGIN_ROUTES[:5] + ["authorize", "token", "same_login"]


async def test_reads_are_403_until_same_login_and_the_session_registers_again(sim, clock, tmp_path) -> None:
    config = mofid_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(mofid_account(config))
        await client.token()
        easytrader_state(sim).registered.clear()  # as if the token had never called same-login
        assert (await client.session.buying_power()).amount > 0
    assert statuses(sim, "money") == [403, 200] and statuses(sim, "same_login") == [200, 200]
    assert routes(sim, "token") == ["token"]  # the same token: no new login


async def test_a_wrong_password_is_final_then_the_captcha_comes_and_is_solved(
    sim, clock, tmp_path, monkeypatch
) -> None:
    config = mofid_config(sim, tmp_path)
    account = mofid_account(config)
    monkeypatch.setenv(account.password_env, "not-the-password")
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        with pytest.raises(AuthError, match="refused the username or password"):
            await services.client(account).token()
    assert routes(sim, "login") == ["login"]  # never retried
    monkeypatch.undo()
    solver = CountingSolver(sim, fake=["WRONG"])
    async with Wiring(mofid_config(sim, tmp_path), clock, solver=solver) as services:  # a new jar
        token = await services.client(account).token()
    assert EasytraderToken.unpack(token)
    # a fresh browser's page shows no captcha; the post then asks for one (CAPTCHA_REQUIRED), the next page shows
    # it: a wrong answer (WRONG_CAPTCHA) and a new page and image, then the right one
    assert statuses(sim, "login")[1:] == [200, 200, 302]
    assert statuses(sim, "captcha") == [200, 200] and len(solver.given) == 2 and solver.given[0] == "WRONG"


async def test_an_alive_identity_session_answers_the_code_at_once(sim, clock, tmp_path) -> None:
    config = mofid_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(mofid_account(config))
        await client.token()
        await services.cache.drop_token(client.username, MOFID)
        second = EasytraderToken.unpack(await client.token())  # the jar still holds the idsrv cookie
        assert (await client.session.buying_power()).amount > 0
    assert routes(sim)[6:] == ["authorize", "token", "same_login", "money"]  # no page, no credentials
    assert second.access_token


@pytest.mark.parametrize("hops", [1, 2])
async def test_the_hops_in_front_of_the_login_page_are_followed_by_hand_and_proxies_ignored(
    sim, clock, tmp_path, monkeypatch, hops
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there: a proxy used would fail
    easytrader_state(sim).settings.login_hops = hops
    config = mofid_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        assert EasytraderToken.unpack(await services.client(mofid_account(config)).token())
    assert statuses(sim, "login_page") == [301] * hops + [200]


async def test_the_real_ocr_reads_a_digit_botdetect_captcha(sim, clock, tmp_path) -> None:
    pytest.importorskip("ddddocr")
    settings = easytrader_state(sim).settings
    settings.captcha_after_failures, settings.captcha_chars = 0, "23456789"  # always; digits, what the solver reads
    config = mofid_config(sim, tmp_path, max_attempts=10)
    async with Wiring(config, clock) as services:  # the configured solver: the in-process OCR model
        token = EasytraderToken.unpack(await services.client(mofid_account(config)).token())
    assert token.access_token and statuses(sim, "login")[-1] == 302 and "captcha" in routes(sim)


# ---- drafts at the arm, one batch at the open -------------------------------------------------------------------


async def test_a_draft_at_the_arm_then_8706_before_the_open_then_one_batch_accepted(sim, clock, tmp_path) -> None:
    config = mofid_config(sim, tmp_path)
    account = mofid_account(config)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account)
        token = await client.token()
        draft = await client.session.prepare_order(HOT, "buy", 5580, 1000)
        assert len(draft) == 26 and draft in easytrader_state(sim).drafts
        request = client.codec.order_request(token, HOT, "buy", 5580, 1000, prepared=draft)
        clock.advance(datetime(2026, 11, 21, 5, 14, 59, 900_000, tzinfo=UTC) - clock.now())
        early = await first_answer(sim, clock, request)
        assert client.codec.classify(early.status, early.body).verdict is Verdict.RETRY
        assert client.codec.classify(early.status, early.body).code == 8706
        clock.advance(0.2)  # 08:45:00.100
        sent_at = clock.now()
        placed = await first_answer(sim, clock, request)
        answer = client.codec.classify(placed.status, placed.body)
        assert answer.verdict is Verdict.ACCEPTED and answer.tracking_number in easytrader_state(sim).batch_ids
        orders = await client.session.today_orders(sent_at.astimezone(config.tz).date())
        assert len(orders) == 1 and isinstance(orders[0].tracking, str) and "." in orders[0].tracking
        ours = client.codec.find_order(orders, HOT, "buy", sent_at, config.tz)
        assert ours is not None and (ours["volume"], ours["price"], ours["side"]) == (1000, 5580, 1)
        assert [o.tracking for o in await client.session.open_orders()] == [ours["trackingNumber"]]
    assert [s for s in statuses(sim, "batch")] == [200, 200]


async def test_a_lost_batch_answer_is_found_in_today_s_orders_by_a_new_process(sim, clock, tmp_path) -> None:
    config = mofid_config(sim, tmp_path)
    account = mofid_account(config)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account)
        token = await client.token()
        draft = await client.session.prepare_order(HOT, "buy", 5580, 1200)
        request = client.codec.order_request(token, HOT, "buy", 5580, 1200, prepared=draft)
    clock.advance(datetime(2026, 11, 21, 5, 15, 0, 50_000, tzinfo=UTC) - clock.now())
    sent_at = clock.now()
    connection = await WireConnection.open(sim.base_url, clock)
    connection.send_nowait(request)
    await connection.next_response(5.0)
    connection.close()  # the answer is "lost": nothing of it is read
    clock.advance(1)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as later:  # a restart: the cached token
        client = later.client(account)
        orders = await client.today_orders(sent_at.astimezone(config.tz).date())
        ours = client.codec.find_order(orders, HOT, "buy", sent_at, config.tz)
        assert ours is not None and ours["volume"] == 1200
    assert routes(sim, "token") == ["token"] and statuses(sim, "batch") == [200]  # no new login, one batch


async def test_a_resized_order_replaces_its_draft(sim, clock, tmp_path) -> None:
    config = mofid_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        session = services.client(mofid_account(config)).session
        old = await session.prepare_order(HOT, "buy", 5580, 1000)
        new = await session.prepare_order(HOT, "buy", 5580, 900)
        assert await session.discard_prepared(old) is True
        assert await session.discard_prepared(old) is False  # gone already: kept nowhere, never an error
        assert set(easytrader_state(sim).drafts) == {new}
        with pytest.raises(ValueError, match="positive price and volume"):
            await session.prepare_order(HOT, "buy", 5580, 0)
    assert statuses(sim, "draft_delete") == [200, 404]


async def test_one_immediate_order_is_8706_before_the_open_and_placed_after(sim, clock, tmp_path) -> None:
    config = mofid_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        session = services.client(mofid_account(config)).session
        early = await session.new_order(HOT, "buy", 5580, 1000)
        assert (early.verdict, early.code) == (Verdict.RETRY, 8706)
        clock.advance(61)
        placed = await session.new_order(HOT, "buy", 5580, 1000)
        assert placed.verdict is Verdict.ACCEPTED and placed.tracking_number
        refused = await session.new_order(HOT, "buy", 9999, 1000)
        assert refused.verdict is Verdict.TERMINAL and refused.code == 1003 and refused.message


# ---- the broker's clock --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sign", ["server_minus_local", "local_minus_server"])
async def test_the_clock_offset_comes_from_server_time_whatever_diff_s_sign(sim, clock, tmp_path, sign) -> None:
    sim.set_skew(1500)  # the broker's clock 1.5 s ahead, as live
    easytrader_state(sim).settings.diff_sign = sign
    config = mofid_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        estimate = await services.client(mofid_account(config)).session.broker_clock()
    assert estimate is not None and estimate.source == "server-time" and estimate.samples == 3
    assert estimate.offset_s == pytest.approx(1.5, abs=0.001) and estimate.uncertainty_s <= 0.002
    assert statuses(sim, "server_time") == [200, 200, 200]


async def test_the_other_platforms_have_no_broker_clock_drafts_or_budget(sim, clock, tmp_path) -> None:
    config = mofid_config(sim, tmp_path)
    gs = next(a for a in config.accounts if a.broker == "gs")
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(gs)
        assert await client.session.broker_clock() is None and client.requests is None
        assert await client.session.prepare_order(HOT, "buy", 5580, 10) is None
        assert await client.session.discard_prepared("x") is False


# ---- the request budget --------------------------------------------------------------------------------------


async def test_every_request_is_counted_and_a_morning_stays_far_below_the_cap(sim, clock, tmp_path) -> None:
    config = mofid_config(sim, tmp_path)
    account = mofid_account(config)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account)
        await client.token()
        await client.session.buying_power()
        await client.session.holdings(HOT)
        await client.session.broker_clock()
        draft = await client.session.prepare_order(HOT, "buy", 5580, 1000)
        for _ in range(30):  # a refresh every 30 s for 15 minutes
            clock.advance(30)
            await client.session.probe()
        await client.session.today_orders(clock.now().date())
        budget = client.requests
        assert budget is client.session.requests
        assert budget.by_kind == {"login": 5, "same-login": 1, "read": 36, "draft": 1}
        assert budget.total == len(routes(sim)) == 43  # every request the simulator saw, and only those
        print(f"easytrader: a morning's session used {budget.total} requests; {budget.left()} left of the hour")
        assert draft and budget.in_window() == 43 and budget.left() == 1500 - 50 - 43


async def test_the_session_stops_at_its_cap_and_the_broker_s_429_is_rate_limited(sim, clock, tmp_path) -> None:
    config = mofid_config(sim, tmp_path, requests_per_hour=60)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(mofid_account(config))
        await client.token()
        assert client.requests.cap == 60 and client.requests.reserve == 50
        for _ in range(4):
            await client.session.probe()
        with pytest.raises(RateLimited, match="10 of its 60 requests an hour"):
            await client.session.probe()
        assert len(routes(sim)) == 10  # the refused one never left
        client.requests.charge("batch", urgent=True)  # the open may still spend the reserve
        client.requests.cap = None  # now the broker's own cap
        et = easytrader_state(sim)  # it counts what it can tie to the account (not the anonymous login hops)
        et.settings.hourly_cap = et.in_window(MOFID, client.username) + 1
        await client.session.probe()
        with pytest.raises(RateLimited, match="hourly request cap"):
            await client.session.probe()
    assert statuses(sim, "money")[-1] == 429


async def test_a_broken_identity_server_is_unavailable_not_a_traceback(sim, clock, tmp_path) -> None:
    sim.add_fault("login_page@mofid:status=503")
    config = mofid_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        with pytest.raises(BrokerUnavailable, match="identity server answered HTTP 503"):
            await services.client(mofid_account(config)).token()
    assert statuses(sim, "login_page")[-1] == 503
