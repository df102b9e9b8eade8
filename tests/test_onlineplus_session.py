"""Online+'s slow path against the simulator's Online+ tenant: real captchas through the client, the API base read
from the login page, the F5 front door (a truncated UA and a Bearer refused, the daemon's own bytes never), F5's two
cookies of one name, SMS/OTP accounts reported, the 600 s session, orders and fills, a restart reconciled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from daemon.clock import FakeClock
from daemon.errors import AuthError, BrokerUnavailable, RateLimited
from daemon.firing import Presence, look_up
from daemon.net import WireConnection, WireResponse, build_request
from daemon.platforms import Verdict, order_origin
from daemon.platforms.onlineplus import (
    AUTH_COOKIE,
    USER_AGENT,
    OnlinePlusCodec,
    OnlinePlusSession,
    OnlinePlusToken,
    accepts_answer,
)
from daemon.sim import LimiterSettings
from daemon.sim.onlineplus import F5_COOKIE, FRONT_COOKIE, onlineplus_state
from daemon.simulator import Simulator
from daemon.testing import SimulatorSolver, running_simulator, sim_config, sim_settings
from daemon.wiring import Wiring

HZ, HOT = "hafez", "IRO1FOLD0001"  # the simulator's FOLD: band [5260, 5580], maxeq 200000
TRUNCATED_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"  # refused live


class CountingSolver:
    """The simulator's own answers (SimulatorSolver), after `fake` answers of our choosing (the first ones)."""

    def __init__(self, sim, fake: list[str] | None = None) -> None:
        self.real = SimulatorSolver(sim)
        self.fake = list(fake or [])
        self.given: list[str] = []

    async def solve(self, image: bytes, digits: int = 5) -> str:
        answer = self.fake.pop(0) if self.fake else await self.real.solve(image, digits)
        self.given.append(answer)
        return answer

    async def aclose(self) -> None:
        return None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 21, 5, 14, 50, tzinfo=UTC))  # 08:44:50 Tehran


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    async with running_simulator(accounts=2, brokers=[(HZ, "onlineplus"), ("gs", "ephoenix")], clock=clock) as sim:
        yield sim


def op_config(sim: Simulator, tmp_path, max_attempts: int = 4, **broker):
    overrides = {}
    if broker:
        base = sim.config_snippet().data["brokers"][HZ]
        overrides["brokers"] = {**sim.config_snippet().data["brokers"], HZ: {**base, **broker}}
    return sim_config(
        sim,
        state_dir=str(tmp_path / "state"),
        cache={"dir": str(tmp_path / "cache")},
        captcha={"spacing_s": 0, "max_attempts": max_attempts},
        **overrides,
    )


def account_of(config):
    return next(a for a in config.accounts if a.broker == HZ)


def routes(sim: Simulator, *names: str) -> list[tuple[str | None, int | None, int | str | None]]:
    return [(r.route, r.status, r.error_code) for r in sim.request_log.records(broker=HZ) if r.route in names]


async def first_answer(sim: Simulator, clock, request: bytes) -> WireResponse:
    connection = await WireConnection.open(sim.base_url, clock)
    try:
        connection.send_nowait(request)
        return await connection.next_response(5.0)
    finally:
        connection.close()


def with_header(request: bytes, name: str, value: str | None) -> bytes:
    """`request` with header `name` replaced by `value` (or removed when None), everything else as it was."""
    head, _, body = request.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(name.lower().encode() + b":")]
    if value is not None:
        lines.insert(1, f"{name}: {value}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def api_of(sim: Simulator) -> str:
    return f"{sim.base_url}/{HZ}/api"


async def test_a_login_with_real_captchas_the_api_base_from_the_page_then_every_read(sim, clock, tmp_path) -> None:
    config = op_config(sim, tmp_path)
    account = account_of(config)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account)
        assert isinstance(client.session, OnlinePlusSession) and isinstance(client.codec, OnlinePlusCodec)
        token = OnlinePlusToken.unpack(await client.token())
        assert token.api == api_of(sim) == client.session.discovered_api
        names = [name for name, _, _ in token.cookies]
        assert names.count(F5_COOKIE) == 2 and AUTH_COOKIE in names  # F5's two cookies of one name, both kept
        assert order_origin(client.codec, await client.token()) == api_of(sim)
        power = await client.session.buying_power()
        fees = await client.session.fees(HOT)
        instrument = await client.session.instrument(HOT)
        held = await client.session.holdings(HOT)
        market = sim.state.market.account(HZ, account.username)
        assert power.amount == market.buying_power
        assert (fees.buy, fees.sell, fees.source) == (0.005, 0.005, "config")
        assert (instrument.limits.minap, instrument.limits.maxap, instrument.limits.maxeq) == (5260, 5580, 200000)
        assert held.volume == market.holdings.get(HOT, 0)
        assert await client.session.today_orders(clock.now().date()) == []
        cached = await services.cache.get_token(account.username, HZ)
        # 600 s from the login, less client.token_margin_s: the refresh logs in again before the server's end
        valid_until = datetime.fromisoformat(cached["expires_at"])
        assert valid_until == clock.now() + timedelta(seconds=600 - config.client.token_margin_s)
    used = routes(sim, "login_page", "captcha", "login", "remain", "holdings", "orders")
    assert [r for r, _, _ in used[:3]] == ["login_page", "captcha", "login"]
    assert all(status == 200 for _, status, _ in used)  # never refused for the UA, Origin, Referer or cookies


async def test_the_fee_setting_sizes_the_cross_check(sim, clock, tmp_path) -> None:
    config = op_config(sim, tmp_path, fee=0.004)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        session = services.client(account_of(config)).session
        assert (await session.fees(HOT)).buy == 0.004
        calc = await session.calculate_order(HOT, "buy", 5580, 100_000_000)
        assert calc["volume"] == int(100_000_000 // (5580 * 1.004)) and calc["fee"] == 0.004
        assert (await session.calculate_order(HOT, "buy", 5580, 10**13))["volume"] == 200000  # capped at mxqo


@pytest.mark.parametrize("quotes, slash", [("double", True), ("single", False)])
async def test_the_api_base_is_read_in_either_quotes_without_its_slash(sim, clock, tmp_path, quotes, slash) -> None:
    onlineplus_state(sim).settings.page_api_base = quotes
    onlineplus_state(sim).settings.page_api_base_slash = slash
    config = op_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        assert OnlinePlusToken.unpack(await services.client(account_of(config)).token()).api == api_of(sim)


async def test_a_page_naming_no_base_falls_back_and_a_configured_api_url_wins_over_the_page(sim, clock, tmp_path):
    op = onlineplus_state(sim).settings
    op.page_api_base = "missing"
    config = op_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account_of(config))
        assert OnlinePlusToken.unpack(await client.token()).api == api_of(sim)  # derived: /online -> /api
        assert client.session.discovered_api is None
    op.page_api_base, op.page_api_base_url = "single", "http://127.0.0.1:9/nowhere"  # a base nothing answers on
    config = op_config(sim, tmp_path / "override", api_url=api_of(sim) + "/")  # a cache of its own: a new login
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account_of(config))
        assert OnlinePlusToken.unpack(await client.token()).api == api_of(sim)
        assert client.session.discovered_api == "http://127.0.0.1:9/nowhere"  # read, and overridden
        assert client.codec.origin_url == api_of(sim)


async def test_the_front_door_refuses_a_truncated_ua_and_a_bearer_but_never_the_daemon_s_bytes(
    sim, clock, tmp_path
) -> None:
    config = op_config(sim, tmp_path)
    sim.set_open_at(clock.now() - timedelta(seconds=1))
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account_of(config))
        token = await client.token()
        probe = client.codec.probe_request(token)
        order = client.codec.order_request(token, HOT, "buy", 5580, 1000)
        assert b"authorization" not in probe.lower() and f"User-Agent: {USER_AGENT}".encode() in order
        assert (await first_answer(sim, clock, with_header(probe, "User-Agent", TRUNCATED_UA))).status == 401
        assert (await first_answer(sim, clock, with_header(order, "User-Agent", TRUNCATED_UA))).status == 401
        bare = build_request("GET", api_of(sim) + "/Web/V1/Accounting/Remain", {"User-Agent": USER_AGENT})
        headers = {"Origin": client.codec.tenant.origin, "Referer": client.codec.tenant.referer}
        bearer_only = with_header(bare, "Authorization", "Bearer " + "ab" * 32)
        for name, value in headers.items():
            bearer_only = with_header(bearer_only, name, value)
        assert (await first_answer(sim, clock, bearer_only)).status == 401
        assert (await first_answer(sim, clock, with_header(probe, "Authorization", "Bearer x"))).status == 401
        assert (await first_answer(sim, clock, with_header(probe, "Cookie", None))).status == 401
        fresh = await first_answer(sim, clock, probe)
        assert fresh.status == 200 and fresh.json()["Data"]["PurchasingPower"] > 0
        sent = await first_answer(sim, clock, order)
        assert sent.status == 200 and client.codec.classify(sent.status, sent.body).verdict is Verdict.ACCEPTED


async def test_f5_rotating_its_cookies_mid_session_is_followed_by_the_live_jar(sim, clock, tmp_path) -> None:
    onlineplus_state(sim).settings.f5_rotate_after_s = 5
    config = op_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account_of(config))
        await client.token()
        clock.advance(6)
        assert (await client.session.buying_power()).amount > 0  # answered with new F5 values
        assert (await client.session.buying_power()).amount > 0  # sent with them: the old ones are refused now
        live = [m.value for m in client.session.jar if m.key == F5_COOKIE]
        old = [v for n, v, _ in OnlinePlusToken.unpack(await client.token()).cookies if n == F5_COOKIE]
        assert len(live) == 2 and not set(live) & set(old)
    assert len(routes(sim, "login")) == 1 and all(s == 200 for _, s, _ in routes(sim, "remain"))


@pytest.mark.parametrize(
    "flags, words",
    [({"active_otp": True}, "SMS/OTP"), ({"active_sms": True}, "SMS/OTP"), ({"must_change_password": True}, "changed")],
)
async def test_an_account_with_otp_sms_or_a_password_to_change_is_reported_once_never_retried(
    sim, clock, tmp_path, flags, words
) -> None:
    config = op_config(sim, tmp_path)
    account = account_of(config)
    onlineplus_state(sim).set_flags(HZ, account.username, **flags)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        with pytest.raises(AuthError, match=words) as raised:
            await services.client(account).token()
    message = str(raised.value)
    assert message.startswith(f"account {account.name}: ") and message.count(".") == 1 and message.endswith(".")
    assert routes(sim, "login") == [("login", 200, None)]  # one login: its answer was final


async def test_a_wrong_password_is_stopped_at_the_first_oms_1000(sim, clock, tmp_path, monkeypatch) -> None:
    config = op_config(sim, tmp_path)
    account = account_of(config)
    monkeypatch.setenv(account.password_env, "not-the-password")
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        with pytest.raises(AuthError, match="refused the username or password"):
            await services.client(account).token()
    assert routes(sim, "login") == [("login", 200, "oms_1000")]


async def test_a_wrong_captcha_is_refetched_and_a_malformed_answer_never_posted(sim, clock, tmp_path) -> None:
    config = op_config(sim, tmp_path)
    solver = CountingSolver(sim, fake=["123", "9999", "12a4"])
    async with Wiring(config, clock, solver=solver) as services:
        await services.client(account_of(config)).token()
    posted = [a for a in solver.given if accepts_answer(a)]
    logins = routes(sim, "login")
    assert len(routes(sim, "captcha")) == len(solver.given) == len(routes(sim, "login_page"))
    assert len(logins) == len(posted)
    wrong = [c for _, _, c in logins[:-1]]
    assert wrong and set(wrong) == {"InvalidCaptcha"} and logins[-1] == ("login", 200, None)


async def test_oms_2080_on_the_login_is_waited_out_like_a_429(clock, tmp_path) -> None:
    limit = LimiterSettings(window_s=60, max_calls=1, cooldown_s=30)
    settings = sim_settings(login_limit=limit)
    async with running_simulator(accounts=1, brokers=[(HZ, "onlineplus")], settings=settings, clock=clock) as sim:
        config = op_config(sim, tmp_path)
        config = config.model_copy(update={"captcha": config.captcha.model_copy(update={"throttle_waits": 0})})
        async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
            with pytest.raises(RateLimited, match="OMS_2080") as raised:
                await services.client(account_of(config)).token()
        assert raised.value.retry_after == config.captcha.cooldown_s
        # one call admitted (the captcha), the login's OMS_2080 then cools the host down: no second captcha
        assert routes(sim, "captcha", "login") == [("captcha", 200, None), ("login", 200, "OMS_2080")]


async def test_the_session_ends_600_s_after_its_login_and_a_refused_one_logs_in_again(sim, clock, tmp_path) -> None:
    config = op_config(sim, tmp_path)
    account = account_of(config)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account)
        first = await client.token()
        clock.advance(600 - config.client.token_margin_s - 1)
        assert await client.token() == first  # still in the cache
        clock.advance(2)
        second = await client.token()  # the cache entry ended: a new login before the server's 600 s
        assert second != first and len(routes(sim, "login")) == 2
        clock.advance(601)
        await services.cache.save_token(account.username, HZ, second, clock.now() + timedelta(hours=1))
        assert (await client.session.buying_power()).amount > 0  # 401 on the dead session, one login, again
    assert [s for _, s, _ in routes(sim, "remain")] == [401, 200] and len(routes(sim, "login")) == 3


async def test_orders_before_the_open_retry_then_accepted_found_filled_and_refused_with_the_code(
    sim, clock, tmp_path
) -> None:
    config = op_config(sim, tmp_path)
    account = account_of(config)
    sim.set_open_at(clock.now() + timedelta(seconds=5))
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        client = services.client(account)
        token = await client.token()
        order = client.codec.order_request(token, HOT, "buy", 5580, 1000)
        early = await first_answer(sim, clock, order)
        answer = client.codec.classify(early.status, early.body)
        assert (answer.verdict, answer.code) == (Verdict.RETRY, "OMS_8018") and answer.message
        sim.set_open_at(clock.now() - timedelta(seconds=1))
        clock.advance(1)
        sent_at = clock.now()
        placed = await first_answer(sim, clock, order)
        accepted = client.codec.classify(placed.status, placed.body)
        assert accepted.verdict is Verdict.ACCEPTED and accepted.serial_number is None  # no id comes back
        again = client.codec.classify(*(lambda r: (r.status, r.body))(await first_answer(sim, clock, order)))
        assert (again.verdict, again.code) == (Verdict.RETRY, "OMS_2080")
        day = clock.now().astimezone(config.tz).date()
        orders = await client.session.today_orders(day)
        ours = client.codec.find_order(orders, HOT, "buy", sent_at, config.tz)
        assert ours is not None and (ours["volume"], ours["price"], ours["side"], ours["filled"]) == (
            1000,
            5580,
            1,
            False,
        )
        assert client.codec.find_order(orders, HOT, "sell", None, config.tz) is None
        assert client.codec.find_order(orders, HOT, "buy", sent_at + timedelta(seconds=10), config.tz) is None
        assert [o.serial for o in await client.session.open_orders()] == [ours["serialNumber"]]
        market_order = next(o for o in sim.state.market.orders_of(sim.state.market.account(HZ, account.username)))
        sim.fill(market_order, 400)
        partly = (await client.session.today_orders(day))[0]
        assert (partly.executed, partly.row["filled"], partly.row["remaining"]) == (400, True, 600)
        sim.fill(market_order)
        with pytest.raises(BrokerUnavailable, match="cannot show that an order is absent"):
            await client.session.open_orders()  # nothing unfilled listed: no proof the list shows unfilled orders
        assert [o.executed for o in await client.session.today_orders(day)] == [1000]  # both lists, merged once
        clock.advance(1)
        refused = await client.session.new_order(HOT, "buy", 9999, 1000)
        assert (refused.verdict, refused.code) == (Verdict.TERMINAL, "OMS_9102") and refused.message


async def test_a_restart_inside_the_window_finds_the_order_with_a_cached_token_and_no_login(
    sim, clock, tmp_path
) -> None:
    config = op_config(sim, tmp_path)
    account = account_of(config)
    sim.set_open_at(clock.now() - timedelta(seconds=1))
    since = clock.now()
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        answer = await services.client(account).session.new_order(HOT, "buy", 5580, 1000)
    assert answer.verdict is Verdict.ACCEPTED
    logins = len(routes(sim, "login"))
    clock.advance(1)
    day = clock.now().astimezone(config.tz).date()
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as later:  # the cache on disk, a new jar
        client = later.client(account)
        found = await look_up(client, day, HOT, "buy", since, config.tz, None, match=client.codec.find_order)
        absent = await look_up(client, day, HOT, "sell", since, config.tz, None, match=client.codec.find_order)
    assert found.presence is Presence.FOUND and found.serial_number == 1  # the account's first order of the day
    assert absent.presence is Presence.ABSENT
    assert len(routes(sim, "login")) == logins and len(routes(sim, "new_order")) == 1


async def test_a_token_of_another_platform_is_refused_and_logs_in(sim, clock, tmp_path) -> None:
    config = op_config(sim, tmp_path)
    account = account_of(config)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        foreign = orjson.dumps({"v": 1, "c": [], "nt": "x", "b": 116}).decode()  # an Exir session
        await services.cache.save_token(account.username, HZ, foreign, clock.now() + timedelta(hours=1))
        assert (await services.client(account).session.buying_power()).amount > 0
    assert len(routes(sim, "login")) == 1


async def test_the_login_page_s_cookie_goes_to_the_captcha(sim, clock, tmp_path) -> None:
    config = op_config(sim, tmp_path)
    async with Wiring(config, clock, solver=SimulatorSolver(sim)) as services:
        session = services.client(account_of(config)).session
        await session.fetch_captcha()
        assert any(m.key == FRONT_COOKIE for m in session.jar)
    assert [s for _, s, _ in routes(sim, "login_page", "captcha")] == [200, 200]


async def test_the_real_ocr_reads_the_png_captcha_and_logs_in(sim, clock, tmp_path) -> None:
    pytest.importorskip("ddddocr")
    config = op_config(sim, tmp_path, max_attempts=10)
    async with Wiring(config, clock) as services:  # the configured solver: the in-process OCR model
        token = OnlinePlusToken.unpack(await services.client(account_of(config)).token())
    assert token.api == api_of(sim)
    assert routes(sim, "login")[-1] == ("login", 200, None)
