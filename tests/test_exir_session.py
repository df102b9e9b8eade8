"""Exir's slow path: the login answer's readings, the reads' shapes (pure, on the doc's shapes), the config it
needs; and the session itself against the simulator's Exir tenant (real captchas, the signature, orders)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from daemon.clock import FakeClock
from daemon.config import validate_config
from daemon.errors import AuthError, BrokerUnavailable, ConfigError
from daemon.net import WireConnection, WireResponse
from daemon.platforms import Verdict
from daemon.platforms.exir import (
    FALLBACK_FEE,
    ExirCodec,
    ExirSession,
    ExirToken,
    accepts_answer,
    broker_code,
    entry_time,
    jalali,
    parse_buying_power,
    parse_fees,
    parse_holding,
)
from daemon.platforms.exir._parse import TEHRAN, login_lifetime_s
from daemon.sim.exir import BAD_SIGNATURE, exir_state
from daemon.simulator import Simulator
from daemon.testing import SimulatorSolver, running_simulator, sim_config
from daemon.wiring import Wiring

ISIN = "IRO1XXXX0001"


def jwt(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2lnbmF0dXJl"


# ---- pure: the doc's shapes -----------------------------------------------------------------------------


def test_the_broker_id_is_rlc_auth_header_s_b_claim_then_the_fallbacks_never_null() -> None:
    body = {"rlcAuthHeader": jwt({"b": 116}), "authToken": jwt({"sub": "x"}), "username": "116acc"}
    assert broker_code(body, "acc") == 116
    assert broker_code({"rlcAuthHeader": jwt({"x": 1}), "authToken": jwt({"b": "117"})}, "acc") == 117
    assert broker_code({"rlcAuthHeader": "not a jwt", "username": "118acc"}, "acc") == 118
    assert broker_code({"username": "acc"}, "acc") is None  # nothing before the account
    assert broker_code({"username": "xyacc"}, "acc") is None
    assert broker_code({}, "acc") is None


def test_the_session_lives_validity_minutes_or_less_when_the_jwt_ends_sooner() -> None:
    now = datetime(2026, 6, 2, 4, 0, tzinfo=UTC)
    assert login_lifetime_s({"validity": 480}, now) == 480 * 60
    soon = now.timestamp() + 600
    assert login_lifetime_s({"validity": 480, "authToken": jwt({"exp": soon})}, now) == 600
    assert login_lifetime_s({"validity": "x"}, now) is None


@pytest.mark.parametrize(
    "answer, ok",
    [
        ("12345", True),
        ("90210", True),
        ("01234", False),
        ("1234", False),
        ("123456", False),
        ("12a45", False),
        ("۱۲۳۴۵", False),
        (" 1234", False),
    ],
)
def test_a_captcha_answer_is_posted_only_as_five_digits_without_a_leading_zero(answer: str, ok: bool) -> None:
    assert accepts_answer(answer) is ok


def test_buying_power_is_purchase_upper_bound_as_a_string_or_number() -> None:
    assert parse_buying_power({"purchaseUpperBound": "6000000"}, "k").amount == 6_000_000
    assert parse_buying_power({"purchaseUpperBound": 6000000.5}, "k").amount == 6_000_000.5
    with pytest.raises(BrokerUnavailable, match="no usable purchaseUpperBound"):
        parse_buying_power({"buyingPower": 1}, "k")


def test_fees_come_from_the_wages_and_a_missing_or_zero_rate_is_the_fallback_never_zero() -> None:
    fees = parse_fees({ISIN: {"SIDE_BUY": 0.003712, "SIDE_SALE": 0.0088}}, ISIN)
    assert (fees.buy, fees.sell, fees.source) == (0.003712, 0.0088, "broker")
    assert parse_fees({"IRO1OTHER001": {"SIDE_BUY": 0.003}}, ISIN).buy == FALLBACK_FEE == 0.005
    zero = parse_fees({ISIN: {"SIDE_BUY": 0, "SIDE_SALE": -1}}, ISIN)
    assert (zero.buy, zero.sell, zero.source) == (0.005, 0.005, "fallback")
    assert parse_fees([], ISIN).buy == 0.005


def test_holdings_are_asset_then_remain_qty_and_no_row_is_zero() -> None:
    body = {"result": [{"insMaxLcode": "IRO1OTHER001", "asset": 5}, {"insMaxLCode": ISIN, "remainQty": "777.9"}]}
    assert parse_holding(body, ISIN, "k").volume == 777
    assert parse_holding({"result": [{"insMaxLcode": ISIN, "asset": 12, "remainQty": 3}]}, ISIN, "k").volume == 12
    assert parse_holding({"result": []}, ISIN, "k").volume == 0
    with pytest.raises(BrokerUnavailable, match="without a result list"):
        parse_holding({"error": "x"}, ISIN, "k")


def test_jalali_dates_both_ways() -> None:
    assert jalali(date(2026, 6, 2)) == "1405/03/12"
    assert jalali(date(2024, 3, 20)) == "1403/01/01"
    assert entry_time("1405/03/12-08:45:00") == datetime(2026, 6, 2, 8, 45, tzinfo=TEHRAN)
    assert entry_time("1403/01/01-00:00:01").date() == date(2024, 3, 20)
    assert entry_time("1405/13/40-08:45:00") is None and entry_time(None) is None


def test_an_exir_broker_needs_its_url_and_takes_the_rlc_url() -> None:
    with pytest.raises(ConfigError, match=r"brokers\.khobregan: platform 'exir' needs url"):
        validate_config({"brokers": {"khobregan": {"platform": "exir"}}})
    with pytest.raises(ConfigError, match=r"brokers\.khobregan\.rlc_url: 'core' is not an http\(s\) URL"):
        validate_config(
            {"brokers": {"khobregan": {"platform": "exir", "url": "https://k.exirbroker.com", "rlc_url": "core"}}}
        )
    config = validate_config(
        {"brokers": {"khobregan": {"platform": "exir", "url": "https://khobregan.exirbroker.com/"}}}
    )
    endpoints = config.broker("khobregan")
    assert (endpoints.platform, endpoints.url, endpoints.rlc_url) == ("exir", "https://khobregan.exirbroker.com", None)
    assert endpoints.identity_url == endpoints.trading_url == "https://khobregan.exirbroker.com"


# ---- against the simulator's Exir tenant ---------------------------------------------------------------------

KH, HOT = "khobregan", "IRO1FOLD0001"  # the simulator's FOLD: band [5260, 5580], maxeq 200000


class CountingSolver:
    """The simulator's own answers (SimulatorSolver), after `fake` answers of our choosing (the first ones)."""

    def __init__(self, sim, fake: list[str] | None = None) -> None:
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
    return FakeClock(datetime(2026, 11, 21, 5, 14, 50, tzinfo=UTC))  # 08:44:50 Tehran


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    async with running_simulator(accounts=2, brokers=[(KH, "exir"), ("gs", "ephoenix")], clock=clock) as sim:
        yield sim


def exir_config(sim: Simulator, tmp_path, max_attempts: int = 4):
    return sim_config(
        sim,
        state_dir=str(tmp_path / "state"),
        cache={"dir": str(tmp_path / "cache")},
        captcha={"spacing_s": 0, "max_attempts": max_attempts},
    )


def routes(sim: Simulator, *names: str) -> list[tuple[str | None, int | None, int | None]]:
    return [(r.route, r.status, r.error_code) for r in sim.request_log.records(broker=KH) if r.route in names]


async def test_a_login_with_real_captchas_then_every_read_signed(sim, clock, tmp_path) -> None:
    config = exir_config(sim, tmp_path)
    account = next(a for a in config.accounts if a.broker == KH)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account)
        assert isinstance(client.session, ExirSession) and isinstance(client.codec, ExirCodec)
        token = ExirToken.unpack(await client.token())
        assert token.broker_code == 116 and len(token.nt) >= 100 and token.send_order_delay_ms == 400
        names = [name for name, _, _ in token.cookies]
        assert {"JWT-TOKEN", "cookiesession1", "client_login_id"} <= set(names)
        assert names.count("BIGipServerexir_pool") == 2  # the load balancer's two cookies of one name
        power = await client.session.buying_power()
        fees = await client.session.fees(HOT)
        instrument = await client.session.instrument(HOT)
        held = await client.session.holdings(HOT)
        assert power.amount == sim.state.market.account(KH, account.username).buying_power
        assert (fees.buy, fees.sell, fees.source) == (0.003712, 0.0088, "broker")
        assert (instrument.limits.minap, instrument.limits.maxap, instrument.limits.maxeq) == (5260, 5580, 200000)
        assert held.volume == sim.state.market.account(KH, account.username).holdings.get(HOT, 0)
        assert await client.session.today_orders(clock.now().date()) == []
        cached = await services.cache.get_token(account.username, KH)
        assert cached["token"] == await client.token()
    signed = routes(sim, "stockinfo", "wages", "holdings", "orders")
    assert [status for _, status, _ in signed] == [200] * 4


async def test_a_leading_zero_or_short_answer_is_refetched_never_posted(sim, clock, tmp_path) -> None:
    config = exir_config(sim, tmp_path)
    account = next(a for a in config.accounts if a.broker == KH)
    solver = CountingSolver(sim, fake=["01234", "1234"])
    async with Wiring(config, clock, solver=solver) as services:
        await services.client(account).token()
    assert solver.given[:2] == ["01234", "1234"] and len(solver.given) >= 3
    captchas = routes(sim, "captcha")
    logins = routes(sim, "login")
    assert len(captchas) == len(solver.given)
    # only real answers without a leading zero were posted; the last one was right
    posted = [a for a in solver.given if accepts_answer(a)]
    assert len(logins) == len(posted) and logins[-1] == ("login", 200, 0)


async def test_a_wrong_password_is_stopped_at_the_first_answer(sim, clock, tmp_path, monkeypatch) -> None:
    config = exir_config(sim, tmp_path)
    account = next(a for a in config.accounts if a.broker == KH)
    monkeypatch.setenv(account.password_env, "not-the-password")
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        with pytest.raises(AuthError, match="refused the username or password"):
            await services.client(account).token()
    assert [(s, c) for _, s, c in routes(sim, "login") if c != 9002] == [(403, 40037)]


async def test_a_wrong_captcha_is_9002_and_a_new_captcha(sim, clock, tmp_path) -> None:
    config = exir_config(sim, tmp_path)
    account = next(a for a in config.accounts if a.broker == KH)
    solver = CountingSolver(sim, fake=["98765"])
    async with Wiring(config, clock, solver=solver) as services:
        await services.client(account).token()
    logins = routes(sim, "login")
    assert logins[0] == ("login", 401, 9002) and logins[-1] == ("login", 200, 0)


async def first_answer(sim: Simulator, clock, request: bytes) -> WireResponse:
    connection = await WireConnection.open(sim.base_url, clock)
    try:
        connection.send_nowait(request)
        return await connection.next_response(5.0)
    finally:
        connection.close()


async def test_the_hot_path_bytes_are_accepted_for_their_second_and_refused_when_stale(sim, clock, tmp_path) -> None:
    config = exir_config(sim, tmp_path)
    account = next(a for a in config.accounts if a.broker == KH)
    sim.set_open_at(clock.now() - timedelta(seconds=1))
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account)
        token = await client.token()
        probe = client.codec.probe_request(token)
        order = client.codec.order_request(token, HOT, "buy", 5580, 1000)
        second = clock.time_ns() // 1_000_000_000
        stale = await first_answer(sim, clock, probe.at(second - 30))
        assert stale.status == 401 and stale.json()["errorCode"] == BAD_SIGNATURE
        fresh = await first_answer(sim, clock, probe.at(second))
        assert fresh.status == 200 and float(fresh.json()["purchaseUpperBound"]) > 0
        sent = await first_answer(sim, clock, order.at(second))
        placed = client.codec.classify(sent.status, sent.body)
        assert placed.verdict is Verdict.ACCEPTED and placed.serial_number
        again = await first_answer(sim, clock, order.at(second))  # inside sendOrderDelay
        assert client.codec.classify(again.status, again.body).verdict is Verdict.RETRY
        assert client.codec.classify(again.status, again.body).code == 1005
        orders = await client.session.today_orders(clock.now().astimezone(config.tz).date())
        ours = client.codec.find_order(orders, HOT, "buy", clock.now() - timedelta(seconds=1), config.tz)
        assert ours is not None and ours["serialNumber"] == placed.serial_number
        assert (ours["volume"], ours["price"], ours["side"]) == (1000, 5580, 1)
        assert placed.serial_number in [o.serial for o in await client.session.open_orders()] or ours["filled"]
        assert client.codec.find_order(orders, HOT, "sell", None, config.tz) is None


async def test_an_order_through_the_session_and_a_token_from_the_cache_in_a_new_process(sim, clock, tmp_path) -> None:
    config = exir_config(sim, tmp_path)
    account = next(a for a in config.accounts if a.broker == KH)
    sim.set_open_at(clock.now() - timedelta(seconds=1))
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        answer = await services.client(account).session.new_order(HOT, "buy", 5580, 1000)
    assert answer.verdict is Verdict.ACCEPTED and answer.serial_number
    logins = len(routes(sim, "login"))
    clock.advance(1)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as later:  # the cache on disk, a new jar
        client = later.client(account)
        orders = await client.today_orders(clock.now().astimezone(config.tz).date())
        assert [o.serial for o in orders] == [answer.serial_number]
        too_far = await client.session.new_order(HOT, "buy", 9999, 1000)
    assert too_far.verdict is Verdict.TERMINAL and too_far.code and too_far.message
    assert len(routes(sim, "login")) == logins  # no new login: the cached token's cookies and seed served


async def test_bytes_made_before_a_second_boundary_are_right_after_it_with_no_skew_allowed(
    sim, clock, tmp_path
) -> None:
    exir_state(sim).settings.signature_skew_s = 0  # the simulator's tolerance for X-App-N (open question 1)
    config = exir_config(sim, tmp_path)
    account = next(a for a in config.accounts if a.broker == KH)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account)
        token = await client.token()
        clock.advance(datetime(2026, 11, 21, 5, 14, 59, 999_000, tzinfo=UTC) - clock.now())
        probe = client.codec.probe_request(token)
        before = clock.time_ns() // 1_000_000_000
        bytes_now, bytes_next = probe.at(before), probe.at(before + 1)  # both made at 05:14:59.999
        assert (await first_answer(sim, clock, bytes_now)).status == 200
        clock.advance(0.002)  # 05:15:00.001: the open's second
        assert (await first_answer(sim, clock, bytes_next)).status == 200
        late = await first_answer(sim, clock, bytes_now)
        assert late.status == 401 and late.json()["errorCode"] == BAD_SIGNATURE
        assert (await client.session.buying_power()).amount > 0  # the slow path signs the clock's second too


async def test_the_real_ocr_reads_the_jpeg_captcha_and_logs_in(sim, clock, tmp_path) -> None:
    pytest.importorskip("ddddocr")
    config = exir_config(sim, tmp_path, max_attempts=10)
    account = next(a for a in config.accounts if a.broker == KH)
    async with Wiring(config, clock) as services:  # the configured solver: the in-process OCR model
        token = ExirToken.unpack(await services.client(account).token())
    assert token.broker_code == 116
    assert routes(sim, "login")[-1] == ("login", 200, 0)
