"""The simulator's rules as plain functions: order sizing, NewOrder checks, captcha hashes, tokens, the 429 limiter, faults."""

from __future__ import annotations

import io
import random
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from daemon.sim import (
    Execution,
    BUY,
    SELL,
    Account,
    CaptchaBook,
    FaultPlan,
    Instrument,
    LimiterSettings,
    Market,
    OrderRequest,
    OrderRules,
    b64url_decode,
    parse_fault,
    render_captcha,
    to_ns,
)
from daemon.sim._auth import CallLimiter, TokenSigner
from daemon.sim.ephoenix import (
    BELOW_MIN_VALUE,
    INSUFFICIENT_BALANCE,
    INSUFFICIENT_HOLDINGS,
    INVALID_VOLUME,
    OK,
    ORDER_NOT_FOUND,
    PRICE_OUT_OF_RANGE,
    UNKNOWN_INSTRUMENT,
    OrdersQuery,
    calculate_order_param,
    cancel,
    check_order,
    history_row,
    parse_order_request,
    parse_orders_query,
)

BUY_FEE = Decimal("0.003712")
SELL_FEE = Decimal("0.0088")
MS = 1_000_000


# ---- CalculateOrderParam ------------------------------------------------------------------------
def test_buy_volume_is_floor_of_amount_over_price_with_fee() -> None:
    params = calculate_order_param(BUY, Decimal(100_000_000), Decimal(5580), 1, 200_000, BUY_FEE)
    # 100,000,000 / (5580 * 1.003712) = 17854.6...
    assert params.volume == 17854
    assert params.total_fee == 369_809  # 17854 * 5580 * 0.003712 = 369,809.3 -> 369,809
    assert params.total_net_amount == 17854 * 5580 + 369_809


def test_amount_exactly_covering_a_volume_buys_that_volume() -> None:
    # 1000 shares at 1000 rial with the fee cost exactly 1,003,712: no float error may lose a share
    assert calculate_order_param(BUY, Decimal(1_003_712), Decimal(1000), 1, 10_000, BUY_FEE).volume == 1000
    assert calculate_order_param(BUY, Decimal(1_003_711), Decimal(1000), 1, 10_000, BUY_FEE).volume == 999


def test_fee_rounds_half_up() -> None:
    # 125 * 1000 * 0.004 = 500 exactly; 1 * 125 * 0.004 = 0.5 -> 1 (half up, not to even)
    assert calculate_order_param(BUY, Decimal(126), Decimal(125), 1, 10, Decimal("0.004")).total_fee == 1
    # 0.0088 * 57 = 0.5016 -> 1; 0.0088 * 56 = 0.4928 -> 0
    assert calculate_order_param(SELL, Decimal(57), Decimal(57), 1, 10, SELL_FEE).total_fee == 1
    assert calculate_order_param(SELL, Decimal(56), Decimal(56), 1, 10, SELL_FEE).total_fee == 0


def test_volume_capped_at_maxeq_and_zero_below_mineq() -> None:
    assert calculate_order_param(BUY, Decimal(10**12), Decimal(5000), 1, 200_000, BUY_FEE).volume == 200_000
    assert calculate_order_param(BUY, Decimal(40_000), Decimal(5000), 10, 200_000, BUY_FEE).volume == 0
    assert calculate_order_param(BUY, Decimal(0), Decimal(5000), 1, 200_000, BUY_FEE).volume == 0


def test_negative_buying_power_gives_zero_volume_never_negative() -> None:
    params = calculate_order_param(BUY, Decimal(-607_897), Decimal(5000), 1, 200_000, BUY_FEE)
    assert (params.volume, params.total_fee, params.total_net_amount) == (0, 0, 0)


def test_sell_total_is_gross_minus_fee() -> None:
    params = calculate_order_param(SELL, Decimal(10_000_000), Decimal(5000), 1, 200_000, SELL_FEE)
    assert params.volume == 2017  # 10,000,000 / (5000 * 0.9912) = 2017.7
    assert params.total_net_amount == 2017 * 5000 - params.total_fee


@given(
    amount=st.integers(min_value=0, max_value=10**13),
    price=st.integers(min_value=1, max_value=500_000),
    mineq=st.integers(min_value=1, max_value=1000),
    extra=st.integers(min_value=0, max_value=10**6),
)
def test_buy_never_exceeds_the_amount_and_one_more_share_would(amount: int, price: int, mineq: int, extra: int) -> None:
    maxeq = mineq + extra
    params = calculate_order_param(BUY, Decimal(amount), Decimal(price), mineq, maxeq, BUY_FEE)
    assert params.total_net_amount <= amount
    assert params.volume == 0 or mineq <= params.volume <= maxeq
    more = params.volume + 1
    if params.volume and more <= maxeq:
        assert Decimal(more) * price * (1 + BUY_FEE) > amount


# ---- NewOrder rules -----------------------------------------------------------------------------
def _market(**rules: object) -> tuple[Market, Account]:
    market = Market(OrderRules(**rules), random.Random(1))  # type: ignore[arg-type]
    market.add_instrument(
        Instrument("IRO1TEST0001", "تست", "تست", last=5000, maxap=5150, minap=4850, mineq=10, maxeq=1000)
    )
    account = market.add_account(Account("gs", "u1", "pw", remain=5_000_000, holdings={"IRO1TEST0001": 50}))
    return market, account


def _order(volume: int = 100, price: int = 5000, side: int = BUY, isin: str = "IRO1TEST0001") -> OrderRequest:
    return OrderRequest(isin=isin, side=side, price=price, volume=volume)


def test_order_checks_in_order() -> None:
    market, account = _market(min_order_value=1_000_000)
    assert check_order(market, account, _order(isin="IRO1NONE0001")) == UNKNOWN_INSTRUMENT
    assert check_order(market, account, _order(volume=9)) == INVALID_VOLUME
    assert check_order(market, account, _order(volume=1001)) == INVALID_VOLUME
    assert check_order(market, account, _order(price=5151)) == PRICE_OUT_OF_RANGE
    assert check_order(market, account, _order(price=4849)) == PRICE_OUT_OF_RANGE
    assert check_order(market, account, _order(volume=1000, price=5150)) == INSUFFICIENT_BALANCE  # 5.15M > 5M
    assert check_order(market, account, _order(volume=100)) == BELOW_MIN_VALUE  # 500,000 < 1,000,000
    assert check_order(market, account, _order(volume=200)) == OK


def test_balance_check_includes_the_fee() -> None:
    market, account = _market(min_order_value=0)
    account.remain = 100 * 5000 + 1856 - 1  # the fee on 500,000 is 1,856
    assert check_order(market, account, _order(volume=100)) == INSUFFICIENT_BALANCE
    account.remain += 1
    assert check_order(market, account, _order(volume=100)) == OK


def test_accepting_reserves_money_and_cancel_gives_it_back() -> None:
    market, account = _market(min_order_value=0)
    order = market.accept(account, _order(volume=100), created_ns=0)
    assert account.remain == 5_000_000 - 501_856
    assert check_order(market, account, _order(volume=1000)) == INSUFFICIENT_BALANCE
    assert cancel(market, account, order.serial_number, now_ns=1) == OK
    assert account.remain == 5_000_000
    assert cancel(market, account, order.serial_number, now_ns=2) == ORDER_NOT_FOUND


def test_sells_check_holdings_not_money() -> None:
    market, account = _market(min_order_value=0)
    account.remain = 0
    assert check_order(market, account, _order(volume=51, side=SELL)) == INSUFFICIENT_HOLDINGS
    assert check_order(market, account, _order(volume=50, side=SELL)) == OK
    market.accept(account, _order(volume=20, side=SELL), created_ns=0)
    assert account.holdings["IRO1TEST0001"] == 30
    assert check_order(market, account, _order(volume=31, side=SELL)) == INSUFFICIENT_HOLDINGS


def test_spacing_counts_every_attempt_per_account() -> None:
    market, account = _market(spacing_ms=300)
    other = market.add_account(Account("gs", "u2", "pw", remain=0))
    assert not market.spacing_violated(account, "A", 1_000 * MS)
    assert market.spacing_violated(account, "A", 1_299 * MS)  # too soon, and it counts
    assert market.spacing_violated(account, "B", 1_598 * MS)  # 299 ms after the refused one
    assert not market.spacing_violated(account, "A", 1_898 * MS)
    assert not market.spacing_violated(other, "A", 1_898 * MS)


def test_spacing_per_account_and_isin() -> None:
    market, account = _market(spacing_ms=300, spacing_scope="account_isin")
    assert not market.spacing_violated(account, "A", 0)
    assert not market.spacing_violated(account, "B", 1 * MS)
    assert market.spacing_violated(account, "A", 2 * MS)


def test_order_body_parsing() -> None:
    body = {
        "isin": "IRO1TEST0001",
        "side": 1,
        "price": Decimal("5150.0"),
        "volume": 10,
        "validity": 1,
        "validityDate": None,
    }
    assert parse_order_request(body) == OrderRequest("IRO1TEST0001", 1, 5150, 10)
    for broken in (
        {**body, "side": 3},
        {**body, "side": True},
        {**body, "price": "5150"},
        {**body, "volume": 1.5},
        {k: v for k, v in body.items() if k != "isin"},
        [],
        None,
    ):
        assert parse_order_request(broken) is None


def test_an_orders_day_is_tehrans() -> None:
    """GetOrders' dates select by the Tehran day: 00:05 there is still the previous day in UTC."""
    market, account = _market(min_order_value=0)
    late = market.accept(account, _order(volume=10), to_ns(datetime(2026, 11, 21, 20, 25, tzinfo=UTC)))  # 23:55
    early = market.accept(account, _order(volume=11), to_ns(datetime(2026, 11, 21, 20, 35, 0, 123456, tzinfo=UTC)))
    assert (late.day, early.day) == (date(2026, 11, 21), date(2026, 11, 22))
    row = history_row(early, Execution(), Decimal(0))
    assert row["created"] == "2026-11-22T00:05:00.123" and row["date"] == "2026/11/22"
    day = OrdersQuery(from_date=date(2026, 11, 22), to_date=date(2026, 11, 22))
    assert day.page_of(market.orders_of(account)) == ([early], 1)
    assert OrdersQuery(page=2, page_size=1).page_of(market.orders_of(account)) == ([late], 2)


def test_orders_query_parsing() -> None:
    body = {
        "page": 2,
        "pageSize": 10,
        "fromDate": "2026/11/21",
        "toDate": "2026/1/2",
        "side": 2,
        "isin": "X",
        "includeStatus": [3, 4],
        "pamCode": None,
    }
    assert parse_orders_query(body) == OrdersQuery(
        2, 10, date(2026, 11, 21), date(2026, 1, 2), 2, "X", frozenset({3, 4})
    )
    assert parse_orders_query({}) == OrdersQuery()  # every field missing: page 1 of 50, no filter
    assert parse_orders_query({"includeStatus": None}) == OrdersQuery()
    for broken in (
        {"fromDate": "21/11/2026"},
        {"toDate": "2026/02/30"},
        {"fromDate": "2026/11/21/1"},
        {"pageSize": 501},
        {"page": -1},
        {"side": 0},
        {"includeStatus": [True]},
        [],
        None,
        "x",
    ):
        assert parse_orders_query(broken) is None, broken


# ---- captchas, tokens, limiter ------------------------------------------------------------------
def test_captcha_answer_only_through_the_secret() -> None:
    book = CaptchaBook(b"k" * 32, lambda: 300)
    salt = book.new_salt(b"r" * 16, issued_ns=10**18)
    answer = book.answer(salt)
    assert len(answer) == 5 and answer.isdigit()
    hashed = book.hash(salt, answer)
    assert book.verify(salt, hashed, answer, now_ns=10**18)
    assert not book.verify(salt, hashed, f"{(int(answer) + 1) % 100000:05d}", now_ns=10**18)
    assert not book.verify(salt, hashed, answer, now_ns=10**18 + 301 * 10**9)  # expired
    assert not CaptchaBook(b"x" * 32, lambda: 300).verify(salt, hashed, answer, now_ns=10**18)  # another secret
    assert not book.verify("not base64!", hashed, answer, now_ns=10**18)
    assert not book.verify(salt, hashed, None, now_ns=10**18)


def test_token_is_a_jwt_with_claims_and_a_signature_that_matters() -> None:
    signer = TokenSigner(b"s" * 32)
    token, ttl = signer.issue("gs", "u1", 0, now_s=1_000, ttl_s=3600)
    header, payload, _ = token.split(".")
    assert b'"HS256"' in b64url_decode(header) and b'"u1"' in b64url_decode(payload)
    claims = signer.verify(token)
    assert claims is not None and (claims.broker, claims.username, claims.expires_s) == ("gs", "u1", 4600)
    assert signer.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
    assert TokenSigner(b"t" * 32).verify(token) is None
    assert signer.verify("a.b") is None


def test_limiter_window_cooldown_and_recovery() -> None:
    limiter = CallLimiter(LimiterSettings(window_s=10, max_calls=3, cooldown_s=420))
    s = 1_000_000_000
    assert [limiter.admit("gs", t * s) for t in (0, 1, 2)] == [None, None, None]
    assert limiter.admit("gs", 3 * s) == 420
    assert limiter.admit("bbi", 3 * s) is None  # another identity host
    assert limiter.admit("gs", 400 * s) == pytest.approx(23)
    assert limiter.admit("gs", 423 * s) is None
    limiter2 = CallLimiter(LimiterSettings(window_s=10, max_calls=2))
    assert [limiter2.admit("gs", t * s) for t in (0, 5, 11, 16)] == [
        None,
        None,
        None,
        None,
    ]  # old calls leave the window


# ---- faults -------------------------------------------------------------------------------------
def test_fault_syntax() -> None:
    fault = parse_fault("new_order:delay_ms=20,jitter_ms=5")
    assert (fault.route, fault.delay_ms, fault.jitter_ms, fault.kind) == ("new_order", 20, 5, None)
    fault = parse_fault("captcha@gs:no_image,rate=0.3")
    assert (fault.broker, fault.kind, fault.rate) == ("gs", "no_image", 0.3)
    assert parse_fault("login:status=503").status == 503
    assert parse_fault("tradingbook:html").status == 502
    assert parse_fault("*:html,status=504").status == 504
    assert parse_fault("new_order:drop,after").after


@pytest.mark.parametrize(
    "text",
    [
        "new_order",
        "bogus:drop",
        "new_order:",
        "new_order:delay_ms=x",
        "new_order:rate=2",
        "new_order:status=200",
        "new_order:drop,html",
        "login:no_image",
        "new_order:rate=0.5",
        "new_order:loud",
        "new_order:malformed,status=500",
        "new_order:delay_ms=-1",
        "NEW_ORDER:drop",
        "new_order:drop,status=500",
    ],
)
def test_bad_fault_syntax_is_one_sentence(text: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_fault(text)
    message = str(raised.value)
    assert text.strip() in message and "\n" not in message


def test_fault_plan_matching_delay_and_rate() -> None:
    plan = FaultPlan(seed=7)
    plan.add("new_order:delay_ms=20,jitter_ms=5")
    plan.add("new_order@gs:status=503,rate=0")
    plan.add("*:no_image")
    for _ in range(50):
        delay, failure = plan.for_request("new_order", "gs")
        assert 0.020 <= delay <= 0.025 and failure is None
    assert plan.for_request("tradingbook", "gs") == (0.0, None)
    assert plan.for_request("captcha", "bbi")[1].kind == "no_image"  # type: ignore[union-attr]
    plan.clear("new_order")
    assert [f.route for f in plan.faults] == ["*"]
    plan.clear()
    assert plan.faults == ()


def test_each_fault_has_its_own_seeded_stream() -> None:
    def draws(plan: FaultPlan, route: str = "login") -> list[bool]:
        return [plan.for_request(route, "gs")[1] is not None for _ in range(64)]

    one, two, other_seed = FaultPlan(seed=3), FaultPlan(seed=3), FaultPlan(seed=4)
    for plan in (one, two, other_seed):
        plan.add("login:status=503,rate=0.5")
    two.add("*:jitter_ms=10")  # a later fault meeting the same requests draws from its own stream
    first = draws(one)
    assert draws(two) == first and 0 < sum(first) < 64
    assert draws(other_seed) != first
    two.add("tradingbook:status=500,rate=0.5")
    draws(two, "tradingbook")  # traffic on another route leaves the login fault's stream where it was
    assert draws(one) == draws(two)


# ---- captcha pictures ---------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "magic"), [("png", b"\x89PNG\r\n\x1a\n"), ("jpeg", b"\xff\xd8\xff")])
def test_captcha_picture_formats_and_size(fmt: str, magic: bytes) -> None:
    data = render_captcha("04719", fmt, random.Random(3))
    assert data.startswith(magic)
    image = Image.open(io.BytesIO(data))
    assert image.format == fmt.upper() and image.size[0] >= 120 and image.size[1] >= 40


def test_captcha_digits_are_dark_on_light() -> None:
    image = Image.open(io.BytesIO(render_captcha("88888", "png", random.Random(4)))).convert("L")
    pixels = image.tobytes()
    dark = sum(1 for p in pixels if p < 100)
    light = sum(1 for p in pixels if p > 200)
    assert light > 0.6 * len(pixels)  # a light ground
    assert dark > 0.05 * len(pixels)  # large, dark digits (five 8s cover a good part of the picture)


def test_captcha_rejects_other_formats() -> None:
    with pytest.raises(ValueError):
        render_captcha("12345", "gif", random.Random(0))
