"""Exir's slow path: the login answer's readings, the reads' shapes (pure, on the doc's shapes), the config it
needs; and the session itself against the simulator's Exir tenant (real captchas, the signature, orders)."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import orjson
import pytest

from daemon.config import validate_config
from daemon.errors import BrokerUnavailable, ConfigError
from daemon.platforms.exir import (
    FALLBACK_FEE,
    accepts_answer,
    broker_code,
    entry_time,
    jalali,
    parse_buying_power,
    parse_fees,
    parse_holding,
)
from daemon.platforms.exir._parse import TEHRAN, login_lifetime_s

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
