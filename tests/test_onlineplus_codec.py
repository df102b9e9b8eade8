"""Online+'s pure parts on onlineplus-api.md's shapes: the tenant's addresses and the login page's ApiBaseURl, the
token, the captcha and login readings, the reads, the order list's rows, the order's bytes, an answer's meaning and
matching; the config it takes."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from daemon.account import CaptchaUnsolved, five_digit_answer
from daemon.config import validate_config
from daemon.errors import BrokerError, BrokerUnavailable, ConfigError
from daemon.platforms import Verdict, order_origin, platform_for
from daemon.platforms.onlineplus import (
    USER_AGENT,
    OnlinePlusCodec,
    OnlinePlusToken,
    TokenUnreadable,
    accepts_answer,
    api_base_from_page,
    blocked_reason,
    broker_order,
    classify,
    find_order,
    jalali,
    login_lifetime_s,
    order_body,
    order_time,
    parse_buying_power,
    parse_captcha,
    parse_holding,
    tenant_of,
)
from daemon.platforms.onlineplus._parse import TEHRAN, read_failure, unique_orders

ISIN = "IRO1XXXX0001"
API = "https://api.hafezbroker.ir"


def jwt(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2lnbmF0dXJl"


def codec(**broker) -> OnlinePlusCodec:
    config = validate_config({"brokers": {"hafez": {"platform": "onlineplus", **broker}}})
    return OnlinePlusCodec(config.broker("hafez"))


TOKEN = OnlinePlusToken(
    API,
    (
        ("AuthCookie_OnlineCookie", "auth1", "/"),
        ("f5avr_session_", "root", "/"),
        ("f5avr_session_", "web", "/Web"),
        ("other", "x", "/Other"),
    ),
).pack()


# ---- addresses -----------------------------------------------------------------------------------------------


def test_the_tenant_is_online_and_api_of_its_domain_which_defaults_to_code_broker_ir() -> None:
    hafez = tenant_of("hafez", None, "hafezbroker.ir", None)
    assert (hafez.web, hafez.fallback_api, hafez.origin, hafez.referer) == (
        "https://online.hafezbroker.ir",
        "https://api.hafezbroker.ir",
        "https://online.hafezbroker.ir",
        "https://online.hafezbroker.ir/",
    )
    assert tenant_of("dnovin", None, "dnovinbr.ir", None).fallback_api == "https://api.dnovinbr.ir"
    assert tenant_of("hafez", None, None, None).web == "https://online.hafezbroker.ir"
    assert tenant_of("x", "https://online.x.ir/", None, None).fallback_api == "https://api.x.ir"
    sim = tenant_of("hafez", "http://127.0.0.1:8080/hafez/online", None, None)
    assert (sim.fallback_api, sim.origin, sim.referer) == (
        "http://127.0.0.1:8080/hafez/api",
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080/hafez/online/",
    )


def test_the_configured_api_base_wins_then_the_page_s_then_the_fallback() -> None:
    tenant = tenant_of("hafez", None, "hafezbroker.ir", "https://api2.hafezbroker.ir/")
    assert tenant.api("https://api.hafezbroker.ir") == "https://api2.hafezbroker.ir"
    plain = tenant_of("hafez", None, "hafezbroker.ir", None)
    assert plain.api("https://other.example") == "https://other.example"
    assert plain.api(None) == "https://api.hafezbroker.ir"


@pytest.mark.parametrize(
    "html, base",
    [
        ("<script>var ApiBaseURl = 'https://api.hafezbroker.ir';</script>", "https://api.hafezbroker.ir"),
        ('var ApiBaseURl="https://api.dnovinbr.ir/";', "https://api.dnovinbr.ir"),
        ("var apibaseurl = 'https://api.x.ir/'", "https://api.x.ir"),
        ("var ApiBaseURL = 'http://127.0.0.1:8080/hafez/api'", "http://127.0.0.1:8080/hafez/api"),
        ("var ClientVersion = '4.6.1';", None),
        ("var ApiBaseURl = '/relative';", None),
        ("", None),
    ],
)
def test_the_api_base_is_read_from_the_login_page(html: str, base: str | None) -> None:
    assert api_base_from_page(html) == base


# ---- the token ----------------------------------------------------------------------------------------------


def test_the_token_carries_the_api_base_and_every_cookie_and_refuses_another_platform_s() -> None:
    token = OnlinePlusToken.unpack(TOKEN)
    assert token.api == API and len(token.cookies) == 4
    assert [c for c in token.cookies if c[0] == "f5avr_session_"] == [
        ("f5avr_session_", "root", "/"),
        ("f5avr_session_", "web", "/Web"),
    ]
    exir = orjson.dumps({"v": 1, "c": [], "nt": "seed", "b": 116}).decode()
    for foreign in (exir, "eyJhbGciOi.x.y", "", '{"p": "onlineplus", "v": 1, "api": "ftp://x", "c": []}'):
        with pytest.raises(TokenUnreadable):
            OnlinePlusToken.unpack(foreign)


def test_a_request_carries_one_cookie_per_name_the_most_specific_path_s() -> None:
    token = OnlinePlusToken.unpack(TOKEN)
    assert token.cookie_header("/Web/V1/Order/Post") == "AuthCookie_OnlineCookie=auth1; f5avr_session_=web"
    assert token.cookie_header("/") == "AuthCookie_OnlineCookie=auth1; f5avr_session_=root"
    assert "other" not in token.cookie_header("/OtherPlace")


# ---- captcha and login ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, ok", [("1234", True), ("0123", True), ("12345", False), ("123", False), ("12a4", False), ("۱۲۳۴", False)]
)
def test_a_captcha_answer_is_posted_only_as_four_ascii_digits_a_leading_zero_kept(answer: str, ok: bool) -> None:
    assert accepts_answer(answer) is ok


def test_the_solvers_answer_four_digits_when_asked_and_five_otherwise() -> None:
    assert five_digit_answer(" ۰۱۲۳\n", "x", 4) == "0123"
    with pytest.raises(CaptchaUnsolved, match="not exactly 4 digits"):
        five_digit_answer("12345", "x", 4)
    assert five_digit_answer("12345", "x") == "12345"


def test_the_captcha_is_data_captcha_decoded_with_its_key_and_no_image_is_none() -> None:
    png = b"\x89PNG\r\n\x1a\nrest"
    body = {"Data": {"Captcha": base64.b64encode(png).decode(), "CaptchaKey": "k1"}}
    assert parse_captcha(body) == (png, "k1")
    assert parse_captcha({"Data": {"Captcha": "", "CaptchaKey": "k1"}}) is None
    assert parse_captcha({"Data": {"Captcha": "!!notbase64", "CaptchaKey": "k1"}}) is None
    assert parse_captcha({"Data": {"Captcha": base64.b64encode(png).decode()}}) is None
    assert parse_captcha(None) is None


def test_otp_sms_and_a_password_to_change_block_the_account_in_one_sentence() -> None:
    assert blocked_reason({"ActiveSms": False, "ActiveOtp": False, "MustChangePassword": False}) is None
    assert blocked_reason({}) is None
    for flags in ({"ActiveOtp": True}, {"ActiveSms": True}):
        reason = blocked_reason(flags)
        assert reason is not None and "SMS/OTP" in reason and "." not in reason
    assert "password changed" in (blocked_reason({"MustChangePassword": True}) or "")
    both = blocked_reason({"ActiveOtp": True, "MustChangePassword": True}) or ""
    assert "SMS/OTP" in both and "password" in both and "." not in both


def test_the_session_lives_600_s_unless_the_server_says_less() -> None:
    now = datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
    assert login_lifetime_s({"Token": "opaque"}, None, now) == 600
    assert login_lifetime_s({"Token": jwt({"exp": now.timestamp() + 300})}, None, now) == 300
    assert login_lifetime_s({"Token": jwt({"exp": now.timestamp() + 9000})}, None, now) == 600  # never longer
    assert login_lifetime_s({"Token": "opaque"}, 120.0, now) == 120


# ---- reads ---------------------------------------------------------------------------------------------------


def test_buying_power_is_purchasing_power_else_account_balance() -> None:
    assert parse_buying_power({"Data": {"PurchasingPower": 6000000, "AccountBalance": 0}}, "h").amount == 6_000_000
    assert parse_buying_power({"Data": {"AccountBalance": "5000"}}, "h").amount == 5000
    with pytest.raises(BrokerUnavailable, match="no usable PurchasingPower"):
        parse_buying_power({"Data": None}, "h")


def test_holdings_read_either_isin_casing_and_no_row_is_zero() -> None:
    body = {"Data": [{"SymbolISIN": "IRO1OTHER001", "RemainQuantity": 5}, {"SymbolIsin": ISIN, "RemainQuantity": 1500}]}
    assert parse_holding(body, ISIN, "h").volume == 1500
    assert parse_holding({"Data": [{"SymbolISIN": ISIN, "RemainQuantity": "77.9"}]}, ISIN, "h").volume == 77
    assert parse_holding({"Data": []}, ISIN, "h").volume == 0
    with pytest.raises(BrokerUnavailable, match="without a Data list"):
        parse_holding({"IsSuccessfull": False}, ISIN, "h")


def test_a_read_that_says_it_failed_is_a_back_off_on_oms_2080_and_an_answer_otherwise() -> None:
    limited = read_failure({"IsSuccessfull": False, "MessageCode": "oms_2080"}, "/Remain", "h")
    assert isinstance(limited, BrokerUnavailable)
    refused = read_failure({"IsSuccessfull": False, "MessageCode": "OMS_9107", "MessageDesc": "خطا"}, "/x", "h")
    assert type(refused) is BrokerError and "OMS_9107" in str(refused)
    assert read_failure({"Data": {}}, "/Remain", "h") is None


ROW = {
    "OrderId": 3,
    "OrderDate": "1405/08/30",
    "OrderTime": "08:45:00",
    "OrderSide": "خرید",
    "Symbol": "فولاد",
    "SymbolIsin": ISIN,
    "Quantity": 1000,
    "OrderPrice": 5580,
    "ExcutedAmount": 400,
    "OrderState": "بخشی اجرا شده",
}


def test_an_order_row_reads_jalali_date_tehran_time_persian_side_and_excuted_amount() -> None:
    order = broker_order(ROW)
    assert (order.isin, order.side, order.serial, order.volume, order.executed, order.price) == (
        ISIN,
        "buy",
        3,
        1000,
        400,
        5580,
    )
    assert order.created == datetime(2026, 11, 21, 8, 45, tzinfo=TEHRAN)
    assert (order["side"], order["filled"], order["remaining"], order["serialNumber"]) == (1, True, 600, 3)
    sell = broker_order({**ROW, "OrderSide": "فروش", "SymbolIsin": None, "SymbolISIN": ISIN, "ExcutedAmount": 0})
    assert (sell.side, sell.isin, sell["filled"]) == ("sell", ISIN, False)
    odd = broker_order({**ROW, "OrderSide": "?", "OrderTime": None})
    assert odd.side is None and odd.created is None
    assert jalali(date(2026, 11, 21)) == "1405/08/30"
    assert order_time("1405/13/40", "08:45:00") is None


def test_rows_are_one_per_day_and_order_id() -> None:
    rows = [broker_order(ROW), broker_order({**ROW, "ExcutedAmount": 0}), broker_order({**ROW, "OrderId": 4})]
    assert [o.serial for o in unique_orders(rows)] == [3, 4]
    other_day = broker_order({**ROW, "OrderDate": "1405/08/29"})
    assert len(unique_orders([rows[0], other_day])) == 2


# ---- the order -------------------------------------------------------------------------------------------------


def test_the_order_body_has_every_field_with_its_json_type() -> None:
    body = order_body(ISIN, "buy", 9930, 601)
    assert body == {
        "isin": ISIN,
        "orderCount": "601",
        "orderPrice": "9930",
        "orderSide": 65,
        "orderValidity": 74,
        "CautionAgreementSelected": False,
        "FinancialProviderId": 1,
        "IsSymbolCautionAgreement": False,
        "IsSymbolSepahAgreement": False,
        "SepahAgreementSelected": False,
        "maxShow": 0,
        "minimumQuantity": 0,
        "orderId": 0,
        "orderValiditydate": None,
        "shortSellIncentivePercent": 0,
        "shortSellIsEnabled": False,
    }
    assert order_body(ISIN, "sell", 9370, 5)["orderSide"] == 86
    with pytest.raises(ValueError, match="buy or sell"):
        order_body(ISIN, "short", 9370, 5)


def test_the_order_bytes_go_to_the_token_s_api_with_the_ua_origin_referer_and_cookies_never_a_bearer() -> None:
    hafez = codec(domain="hafezbroker.ir")
    raw = hafez.order_request(TOKEN, ISIN, "buy", 9930, 601)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert lines[0] == "POST /Web/V1/Order/Post HTTP/1.1"
    assert headers["Host"] == "api.hafezbroker.ir"
    assert headers["User-Agent"] == USER_AGENT and "(KHTML, like Gecko) Chrome/" in USER_AGENT
    assert (headers["Origin"], headers["Referer"]) == (
        "https://online.hafezbroker.ir",
        "https://online.hafezbroker.ir/",
    )
    assert headers["Cookie"] == "AuthCookie_OnlineCookie=auth1; f5avr_session_=web"
    assert headers["Content-Type"] == "application/json" and int(headers["Content-Length"]) == len(body)
    assert not any(name.lower() == "authorization" for name in headers)
    assert orjson.loads(body) == order_body(ISIN, "buy", 9930, 601)
    probe = hafez.probe_request(TOKEN)
    assert probe.startswith(b"GET /Web/V1/Accounting/Remain HTTP/1.1\r\n") and b"f5avr_session_=web" in probe


def test_the_order_origin_is_the_token_s_api_base_and_a_configured_one_wins() -> None:
    elsewhere = OnlinePlusToken("https://trade.hafez.example", OnlinePlusToken.unpack(TOKEN).cookies).pack()
    hafez = codec(domain="hafezbroker.ir")
    assert hafez.origin_url == API and order_origin(hafez, elsewhere) == "https://trade.hafez.example"
    assert b"Host: trade.hafez.example\r\n" in hafez.order_request(elsewhere, ISIN, "buy", 1, 1)
    pinned = codec(domain="hafezbroker.ir", api_url="https://api9.hafezbroker.ir")
    assert pinned.origin_url == order_origin(pinned, elsewhere) == "https://api9.hafezbroker.ir"
    assert b"Host: api9.hafezbroker.ir\r\n" in pinned.order_request(elsewhere, ISIN, "buy", 1, 1)


def answer(**fields) -> bytes:
    return orjson.dumps({"IsSuccessfull": False, "MessageDesc": "متن", "Data": None, **fields})


@pytest.mark.parametrize(
    "status, body, verdict, code",
    [
        (200, orjson.dumps({"IsSuccessfull": True, "MessageCode": None, "Data": {"OrderId": 0}}), Verdict.ACCEPTED, 0),
        (200, answer(MessageCode="OMS_8018"), Verdict.RETRY, "OMS_8018"),
        (200, answer(MessageCode="oms_8018"), Verdict.RETRY, "oms_8018"),
        (200, answer(MessageCode="OMS_2080"), Verdict.RETRY, "OMS_2080"),
        (200, answer(MessageCode="OMS_9104"), Verdict.TERMINAL, "OMS_9104"),
        (400, answer(MessageCode="OMS_9101"), Verdict.TERMINAL, "OMS_9101"),
        (200, orjson.dumps({"Data": {}}), Verdict.UNKNOWN, None),  # a 200 alone is not success
        (200, b"<html>ok</html>", Verdict.UNKNOWN, None),
        (200, answer(), Verdict.UNKNOWN, None),  # a failure without a code
        (401, b"<html>Request Rejected</html>", Verdict.TERMINAL, 401),
        (502, b"", Verdict.UNKNOWN, None),
        (404, b"", Verdict.UNKNOWN, None),
    ],
)
def test_an_answer_means_what_is_successfull_and_the_message_code_say(status, body, verdict, code) -> None:
    meaning = classify(status, body)
    assert (meaning.verdict, meaning.code) == (verdict, code)
    assert meaning.serial_number is None  # no usable id ever comes back
    if verdict is Verdict.TERMINAL and code != 401:
        assert meaning.message == "متن"


def test_our_order_is_found_by_isin_side_and_time_never_by_an_id_from_the_answer() -> None:
    tz = TEHRAN
    since = datetime(2026, 11, 21, 8, 45, 0, 500_000, tzinfo=TEHRAN)
    ours = broker_order({**ROW, "OrderTime": "08:45:00"})  # whole seconds: inside the slack
    earlier = broker_order({**ROW, "OrderId": 1, "OrderTime": "08:30:00"})
    sell = broker_order({**ROW, "OrderId": 2, "OrderSide": "فروش"})
    assert find_order([earlier, sell, ours], ISIN, "buy", since, tz) is ours
    assert find_order([earlier, sell], ISIN, "buy", since, tz) is None
    assert find_order([earlier, sell, ours], "IRO1OTHER001", "buy", since, tz) is None
    assert find_order([earlier, ours], ISIN, "buy", since + timedelta(seconds=3), tz) is None
    assert find_order([sell], ISIN, "sell", since, tz) is sell
    no_time = broker_order({**ROW, "OrderTime": ""})
    assert find_order([no_time], ISIN, "buy", since, tz) is no_time  # unreadable: taken as ours
    unreadable_side = broker_order({**ROW, "OrderSide": None})
    assert find_order([unreadable_side], ISIN, "sell", since, tz) is unreadable_side
    assert find_order([earlier, ours], ISIN, "buy", since, tz, serial_number=1) is earlier  # an earlier lookup's id


# ---- the config ------------------------------------------------------------------------------------------------


def test_an_online_plus_broker_takes_a_domain_an_api_url_and_a_fee() -> None:
    assert platform_for("onlineplus").needs == ()
    config = validate_config({"brokers": {"dnovin": {"platform": "onlineplus", "domain": "DnovinBR.ir", "fee": 0.004}}})
    endpoints = config.broker("dnovin")
    assert (endpoints.platform, endpoints.domain, endpoints.fee, endpoints.api_url) == (
        "onlineplus",
        "dnovinbr.ir",
        0.004,
        None,
    )
    with pytest.raises(ConfigError, match=r"brokers\.hafez\.domain: 'https://hafezbroker\.ir' is not a bare domain"):
        validate_config({"brokers": {"hafez": {"platform": "onlineplus", "domain": "https://hafezbroker.ir"}}})
    with pytest.raises(ConfigError, match=r"brokers\.hafez\.api_url: 'api\.hafez' is not an http\(s\) URL"):
        validate_config({"brokers": {"hafez": {"platform": "onlineplus", "api_url": "api.hafez"}}})
    with pytest.raises(ConfigError, match=r"brokers\.hafez\.fee"):
        validate_config({"brokers": {"hafez": {"platform": "onlineplus", "fee": 0.5}}})
