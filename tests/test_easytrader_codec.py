"""easytrader's pure parts on easytrader-api.md's shapes: the request bytes (the batch of a draft, v2/order, the
probe), the doc's error-detection rules, today's order rows and find_order, the login page and its Persian
markers, the OAuth pieces, server-time's sign, the token, the request budget and the broker's config."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from daemon.clock import FakeClock
from daemon.config import validate_config
from daemon.errors import BrokerUnavailable, ConfigError, RateLimited
from daemon.platforms import RequestBudget, Verdict, platform_for
from daemon.platforms.easytrader import (
    EasytraderCodec,
    EasytraderToken,
    Pkce,
    ServerTime,
    TokenUnreadable,
    authorize_url,
    broker_order,
    classify,
    code_from,
    created_time,
    find_order,
    login_failure,
    orders_of_day,
    parse_holding,
    parse_money,
    read_login_page,
    server_offset_ms,
    token_answer,
    token_form,
)
from daemon.platforms.easytrader._parse import TEHRAN

API, SPA, ID = "https://api-mts.orbis.easytrader.ir", "https://d.easytrader.ir", "https://login.emofid.com"
ISIN = "IRO1XXXX0001"
ULID = "01J00000000000000000000000"


def mofid_config(**broker):
    return validate_config(
        {"brokers": {"mofid": {"platform": "easytrader", "url": API, "identity_url": ID, "spa_url": SPA, **broker}}}
    )


def codec() -> EasytraderCodec:
    return EasytraderCodec(mofid_config().broker("mofid"))


TOKEN = EasytraderToken("eyJhbGciOi.access.token").pack()


# ---- request bytes -----------------------------------------------------------------------------------------


def split(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], headers, body


def test_the_open_sends_the_batch_of_the_draft_with_every_header_the_api_wants() -> None:
    line, headers, body = split(codec().order_request(TOKEN, ISIN, "buy", 20930, 1484, prepared=ULID))
    assert line == "POST /core/api/order/batchCreate HTTP/1.1"
    assert headers["Host"] == "api-mts.orbis.easytrader.ir"
    assert headers["Authorization"] == "Bearer eyJhbGciOi.access.token"
    assert headers["Referer"] == "https://d.easytrader.ir/"
    assert (
        headers["User-Agent"].startswith("Mozilla/5.0 (Windows NT 10.0; Win64; x64)")
        and "Chrome/" in headers["User-Agent"]
    )
    assert headers["Accept"] == "application/json, text/plain, */*" and headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    assert orjson.loads(body) == {"draftIds": [ULID], "removeDraftAfterCreate": False, "orderFrom": 34}


def test_without_a_draft_the_order_is_v2_order_with_strings_and_the_probe_is_money() -> None:
    line, _, body = split(codec().order_request(TOKEN, ISIN, "sell", 19730, 100))
    assert line == "POST /core/api/v2/order HTTP/1.1"
    assert orjson.loads(body) == {
        "order": {
            "orderFrom": 34,
            "price": "19730",
            "quantity": "100",
            "side": 1,
            "symbolIsin": ISIN,
            "validityType": 0,
        }
    }
    line, headers, body = split(codec().probe_request(TOKEN))
    assert line == "GET /core/api/money/ HTTP/1.1" and body == b"" and headers["Referer"] == SPA + "/"


def test_a_token_of_another_platform_builds_nothing() -> None:
    with pytest.raises(TokenUnreadable):
        codec().order_request("eyJhbGciOi.a.b", ISIN, "buy", 1, 1, prepared=ULID)
    with pytest.raises(TokenUnreadable):
        EasytraderToken.unpack('{"v": 1, "c": [], "nt": "x", "b": 116}')  # an Exir session
    assert EasytraderToken.unpack(TOKEN).access_token == "eyJhbGciOi.access.token"
    assert "access" not in repr(EasytraderToken.unpack(TOKEN))


# ---- the doc's error-detection rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "verdict", "code"),
    [
        (200, b'["01J0000000000000000000000A"]', Verdict.ACCEPTED, 0),  # the live batch answer
        (200, b"", Verdict.ACCEPTED, 0),  # an empty body counts as accepted
        (200, b"null", Verdict.ACCEPTED, 0),
        (200, b'{"isSuccessful": true, "error": null, "omsError": [], "id": "x"}', Verdict.ACCEPTED, 0),
        (200, b'{"isSuccessful": false, "omsError": [{"code": 8706, "message": "closed"}]}', Verdict.RETRY, 8706),
        (400, b'{"isSuccessful": false, "omsError": [{"code": 8706}]}', Verdict.RETRY, 8706),
        (200, b'{"isSuccessful": true, "omsError": [{"code": 8706}]}', Verdict.RETRY, 8706),
        (200, b'{"isSuccessful": false, "omsError": [{"code": 1011, "message": "m"}]}', Verdict.TERMINAL, 1011),
        (200, b'{"isSuccessful": false}', Verdict.TERMINAL, None),
        (200, b'{"error": "boom"}', Verdict.TERMINAL, None),
        (200, b'{"error": {"message": "boom"}}', Verdict.TERMINAL, None),
        (200, b"<html><body>Request Rejected</body></html>", Verdict.UNKNOWN, None),  # HTML does not count
        (204, b"", Verdict.UNKNOWN, None),
        (502, b"bad gateway", Verdict.UNKNOWN, None),
        (503, b'{"isSuccessful": false, "omsError": [{"code": 1011}]}', Verdict.UNKNOWN, 1011),
        (401, b"", Verdict.TERMINAL, 401),
        (403, b"You do not have permission to view this object", Verdict.TERMINAL, 403),
        (429, b"API calls quota exceeded!", Verdict.TERMINAL, 429),
        (400, b'{"title": "One or more validation errors occurred.", "status": 400}', Verdict.TERMINAL, 400),
    ],
)
def test_an_answer_is_accepted_only_as_the_doc_s_rules_say(status, body, verdict, code) -> None:
    answer = classify(status, body)
    assert (answer.verdict, answer.code) == (verdict, code)


def test_the_batch_answer_s_first_id_and_the_broker_s_words_are_kept() -> None:
    assert classify(200, b'["A1", "A2"]').tracking_number == "A1"
    refused = classify(200, '{"isSuccessful": false, "omsError": [{"code": 1003, "message": "قیمت خارج"}]}'.encode())
    assert refused.message == "قیمت خارج" and refused.serial_number is None


# ---- today's orders -------------------------------------------------------------------------------------------


def row(**changes):
    base = {
        "id": "Ab3dE5gH9k.XyZ1",
        "symbolIsin": ISIN,
        "symbolName": "خودرو",
        "price": 20930,
        "quantity": 1484,
        "executedQuantity": 0,
        "side": 0,
        "orderStateStr": "OnBoard",
        "createDateTime": "2026-11-21T08:45:00.120",
        "trades": [],
    }
    return {**base, **changes}


def test_a_row_s_id_stays_a_string_and_sides_are_0_buy_1_sell() -> None:
    order = broker_order(row())
    assert (order.tracking, order.serial, order.side, order.volume, order.executed) == (
        "Ab3dE5gH9k.XyZ1",
        None,
        "buy",
        1484,
        0,
    )
    assert order["side"] == 1 and order["trackingNumber"] == "Ab3dE5gH9k.XyZ1" and order["open"] and not order["filled"]
    assert order.created == datetime(2026, 11, 21, 8, 45, 0, 120_000, tzinfo=TEHRAN)
    sold = broker_order(row(side=1, executedQuantity=1484, orderStateStr="Executed"))
    assert sold.side == "sell" and sold["side"] == 2 and sold["filled"] and not sold["open"]
    assert broker_order(row(side=7)).side is None and broker_order(row(side=True))["side"] is None
    assert broker_order(row(orderStateStr="SomethingNew"))["open"]  # unknown text with something left: open


def test_create_date_time_is_read_as_iso_or_jalali() -> None:
    assert created_time("2026-11-21T08:45:00") == datetime(2026, 11, 21, 8, 45, tzinfo=TEHRAN)
    assert created_time("2026-11-21T05:15:00Z") == datetime(2026, 11, 21, 5, 15, tzinfo=UTC)
    assert created_time("1405/08/30 08:45:00") == datetime(2026, 11, 21, 8, 45, tzinfo=TEHRAN)
    assert created_time("1405-08-30T08:45") == datetime(2026, 11, 21, 8, 45, tzinfo=TEHRAN)
    assert created_time("1405/13/40 08:45:00") is None and created_time("") is None and created_time(5) is None


def test_today_s_orders_are_kept_by_their_time_and_an_unreadable_time_is_kept() -> None:
    rows = [
        broker_order(row()),
        broker_order(row(createDateTime="2026-11-20T12:00:00")),
        broker_order(row(createDateTime=None)),
    ]
    kept = orders_of_day(rows, date(2026, 11, 21))
    assert [o.row["createDateTime"] for o in kept] == ["2026-11-21T08:45:00.120", None]


def test_find_order_takes_the_same_isin_and_side_since_the_send_or_an_unreadable_time() -> None:
    since = datetime(2026, 11, 21, 8, 45, tzinfo=TEHRAN)
    older = broker_order(row(id="old", createDateTime="2026-11-21T08:30:00"))
    ours = broker_order(row(id="ours", createDateTime="2026-11-21T08:44:59"))  # inside the slack
    sell = broker_order(row(id="sell", side=1))
    assert find_order([sell, ours, older], ISIN, "buy", since, TEHRAN)["trackingNumber"] == "ours"
    assert find_order([sell, older], ISIN, "buy", since, TEHRAN) is None
    assert find_order([older], "IRO1OTHER001", "buy", None, TEHRAN) is None
    blind = broker_order(row(id="blind", createDateTime="not a time"))
    assert find_order([older, blind], ISIN, "buy", since, TEHRAN)["trackingNumber"] == "blind"
    assert codec().find_order([sell], ISIN, "sell", since, TEHRAN)["trackingNumber"] == "sell"


def test_money_and_portfolio_readings() -> None:
    power = parse_money({"balance": 5, "buyPower0": 1, "buyPower1": 2, "buyPower": 31_224_500, "credit": 0}, "mofid")
    assert (power.amount, power.remain, power.credit) == (31_224_500, 5, 0)
    with pytest.raises(BrokerUnavailable, match="buyPower"):
        parse_money({"balance": 5}, "mofid")
    items = {"portfolioItems": [{"isin": "IRO1OTHER001", "asset": 9}, {"isin": ISIN, "asset": 1484.0}]}
    assert parse_holding(items, ISIN, "mofid").volume == 1484
    assert parse_holding({"portfolioItems": []}, ISIN, "mofid").volume == 0
    with pytest.raises(BrokerUnavailable, match="portfolioItems"):
        parse_holding({"items": []}, ISIN, "mofid")


# ---- the identity server's pages and the OAuth pieces ---------------------------------------------------------

PAGE = """<html><body><form method="post" action="/Login?ReturnUrl=x">
<div class="validation-summary-errors text-danger"><ul><li>{error}</li></ul></div>
<input value="CfDJ8token" type="hidden" name="__RequestVerificationToken" />
{captcha}</form></body></html>"""
CAPTCHA = (
    '<img class="BDC_CaptchaImage" src="/BotDetectCaptcha.ashx?get=image&amp;c=OLoginCaptcha&amp;t=abc" '
    'id="OLoginCaptcha_CaptchaImage" />'
    '<input type="hidden" name="BDC_VCID_OLoginCaptcha" value="abc" />'
    '<input type="hidden" name="BDC_BackWorkaround_OLoginCaptcha" value="1" />'
    '<input type="hidden" name="BDC_Hs_OLoginCaptcha" value="hs" />'
    '<input type="hidden" name="BDC_SP_OLoginCaptcha" value="sp" />'
    '<input name="Captcha" type="text" />'
)


def test_the_login_page_s_token_captcha_block_and_errors_in_any_attribute_order() -> None:
    page = read_login_page(PAGE.format(error="", captcha=CAPTCHA))
    assert page.token == "CfDJ8token" and page.captcha_shown
    assert page.captcha_image == "/BotDetectCaptcha.ashx?get=image&c=OLoginCaptcha&t=abc"  # &amp; decoded
    assert page.captcha_fields == {
        "BDC_VCID_OLoginCaptcha": "abc",
        "BDC_BackWorkaround_OLoginCaptcha": "1",
        "BDC_Hs_OLoginCaptcha": "hs",
        "BDC_SP_OLoginCaptcha": "sp",
    }
    plain = read_login_page(PAGE.format(error="", captcha=""))
    assert not plain.captcha_shown and plain.captcha_fields == {} and plain.captcha_image is None


@pytest.mark.parametrize(
    ("error", "meaning"),
    [
        ("نام کاربری یا کلمه عبور نادرست است", "wrong_credentials"),
        ("کد امنیتی اشتباه است", "wrong_captcha"),
        ("کد امنیتی را وارد کنید", "captcha_required"),
        ("کد امنیتی اشتباه است. نام کاربری یا کلمه عبور نادرست است", "wrong_credentials"),  # credentials first
        ("خطای ناشناخته", "ambiguous"),
    ],
)
def test_a_failed_post_is_classified_by_the_persian_text_credentials_first(error: str, meaning: str) -> None:
    html = PAGE.format(error=error, captcha="")
    assert login_failure(read_login_page(html), html) == meaning


def test_the_summary_decides_not_a_placeholder_elsewhere_in_the_page() -> None:
    html = PAGE.format(error="خطای ناشناخته", captcha='<input name="Captcha" placeholder="کد امنیتی را وارد کنید" />')
    assert login_failure(read_login_page(html), html) == "ambiguous"


def test_pkce_is_s256_of_a_96_character_verifier_and_the_authorize_url_has_every_parameter() -> None:
    pkce = Pkce.new()
    assert len(pkce.verifier) == 96 and pkce.verifier not in repr(pkce)
    digest = hashlib.sha256(pkce.verifier.encode("ascii")).digest()
    assert pkce.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    url = authorize_url(ID, SPA + "/auth-callback", pkce.challenge)
    assert url.startswith(ID + "/connect/authorize/callback?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query == {
        "client_id": "easy_pkce",
        "redirect_uri": SPA + "/auth-callback",
        "response_type": "code",
        "scope": "easy2_api mts_api openid profile",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "response_mode": "query",
    }
    form = parse_qs(token_form("C0DE", SPA + "/auth-callback", pkce.verifier))
    assert {k: v[0] for k, v in form.items()} == {
        "grant_type": "authorization_code",
        "code": "C0DE",
        "redirect_uri": SPA + "/auth-callback",
        "client_id": "easy_pkce",
        "code_verifier": pkce.verifier,
    }


def test_the_code_comes_only_from_a_redirect_to_our_callback() -> None:
    callback = SPA + "/auth-callback"
    assert code_from(callback + "?code=AB12&scope=openid&session_state=x", callback) == "AB12"
    assert code_from("https://evil.example/auth-callback?code=AB12", callback) is None
    assert code_from(callback + "?error=access_denied", callback) is None
    assert code_from(ID + "/Login?ReturnUrl=%2Fconnect", callback) is None


def test_the_token_answer_or_its_oauth_error() -> None:
    assert token_answer({"access_token": "t", "expires_in": 43200, "token_type": "Bearer"}) == ("t", 43200)
    assert token_answer({"access_token": "t"}) == ("t", None)
    assert token_answer({"error": "invalid_grant"}) == "invalid_grant"
    assert token_answer(None) == "not JSON"


# ---- server-time ---------------------------------------------------------------------------------------------

NOW_MS = 1_795_000_000_000


@pytest.mark.parametrize(
    ("answer", "offset", "reading"),
    [
        (ServerTime(1500, NOW_MS + 1500 + 10), 1500, "server_minus_local"),  # the code's assumption holds
        (ServerTime(-1510, NOW_MS + 1500 + 10), 1500, "local_minus_server"),  # diff reversed: the offset still right
        (ServerTime(None, NOW_MS + 1510), 1500, "unchecked"),
        (ServerTime(99_999, NOW_MS + 1510), 1500, "unchecked"),  # diff agrees with neither sign
        (ServerTime(1510, None), 1500, "diff_assumed"),  # no serverTimestamp: diff less half the round trip
        (ServerTime(1510, 12345), 1500, "diff_assumed"),  # not an epoch in ms
    ],
)
def test_server_time_s_offset_and_diff_s_sign_checked_against_server_timestamp(answer, offset, reading) -> None:
    # sent at NOW_MS, the answer back 20 ms later: the midpoint is NOW_MS + 10
    found = server_offset_ms(answer, NOW_MS, NOW_MS, NOW_MS + 20)
    assert found is not None and found[0] == pytest.approx(offset) and found[1] == reading


def test_nothing_usable_in_server_time_is_none() -> None:
    assert server_offset_ms(ServerTime(None, None), NOW_MS, NOW_MS, NOW_MS + 20) is None


# ---- the request budget ---------------------------------------------------------------------------------------


def test_the_budget_counts_by_kind_over_a_sliding_hour_and_keeps_a_reserve_for_the_open() -> None:
    clock = FakeClock(datetime(2026, 11, 21, 4, 0, tzinfo=UTC))
    budget = RequestBudget(clock, 10, reserve=3)
    for kind in ["login"] * 5 + ["read"] * 2:
        budget.charge(kind)
        clock.advance(60)
    assert (budget.total, budget.by_kind, budget.in_window(), budget.left(), budget.left(urgent=True)) == (
        7,
        {"login": 5, "read": 2},
        7,
        0,
        3,
    )
    with pytest.raises(RateLimited, match="7 of its 10 requests an hour .3 kept for the open.") as refused:
        budget.charge("read")
    assert refused.value.retry_after == pytest.approx(3600 - 7 * 60)
    assert budget.total == 7  # a refused request is not counted
    for _ in range(3):
        budget.charge("batch", urgent=True)
    with pytest.raises(RateLimited):
        budget.charge("batch", urgent=True)
    clock.advance(3600 - 7 * 60 + 61)  # the first two (at 0 and 60 s) leave the hour
    assert budget.in_window() == 8 and budget.total == 10
    with pytest.raises(RateLimited):
        budget.charge("read")  # 8 still above the 7 a read may use
    budget.charge("batch", urgent=True)
    assert budget.summary() == {
        "requests": 11,
        "in_last_hour": 9,
        "cap": 10,
        "by_kind": {"login": 5, "read": 2, "batch": 4},
    }


def test_a_budget_without_a_cap_only_counts() -> None:
    budget = RequestBudget(FakeClock(), None)
    for _ in range(5000):
        budget.charge("read")
    assert budget.total == 5000 and budget.left() is None


# ---- the broker's config --------------------------------------------------------------------------------------


def test_a_mofid_broker_needs_its_api_and_identity_urls_and_takes_spa_url_and_its_cap() -> None:
    with pytest.raises(ConfigError, match=r"brokers\.mofid: platform 'easytrader' needs url and identity_url"):
        validate_config({"brokers": {"mofid": {"platform": "easytrader"}}})
    with pytest.raises(ConfigError, match=r"brokers\.mofid\.spa_url: 'd.easytrader.ir' is not an http\(s\) URL"):
        mofid_config(spa_url="d.easytrader.ir")
    with pytest.raises(ConfigError, match=r"brokers\.mofid\.requests_per_hour"):
        mofid_config(requests_per_hour=0)
    endpoints = mofid_config(spa_url=SPA + "/", requests_per_hour=1200).broker("mofid")
    assert (endpoints.platform, endpoints.url, endpoints.identity_url, endpoints.spa_url) == (
        "easytrader",
        API,
        ID,
        SPA,
    )
    assert endpoints.requests_per_hour == 1200 and mofid_config().broker("mofid").requests_per_hour is None
    assert platform_for("easytrader").needs == ("url", "identity_url")
    assert EasytraderCodec(endpoints).origin_url == API


def test_the_spa_is_d_easytrader_ir_when_not_configured() -> None:
    endpoints = validate_config(
        {"brokers": {"mofid": {"platform": "easytrader", "url": API, "identity_url": ID}}}
    ).broker("mofid")
    assert EasytraderCodec(endpoints).spa_url == SPA
    _, headers, _ = split(EasytraderCodec(endpoints).probe_request(TOKEN))
    assert headers["Referer"] == "https://d.easytrader.ir/"
