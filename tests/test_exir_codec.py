"""Exir's hot path (daemon/platforms/exir/_codec.py): the order body as the doc gives it, the request bytes of
a second computed before it, the answers' meaning, matching over orderbookReport rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from daemon.config import BrokerEndpoints
from daemon.net import build_request
from daemon.platforms import Verdict, platform_for
from daemon.platforms.exir import (
    ORDER_PATH,
    STOCK_INFO_PATH,
    ExirCodec,
    ExirToken,
    TokenUnreadable,
    broker_order,
    classify,
    find_order,
    order_body,
    x_app_n,
)
from daemon.platforms.exir._codec import USER_AGENT

TEHRAN = ZoneInfo("Asia/Tehran")
NT = "07" + "3141592653589793238462643383279502884197" * 3
COOKIES = (
    ("cookiesession1", "LB-1", "/"),
    ("JWT-TOKEN", "aaa.bbb.ccc", "/"),
    ("client_login_id", "ddd.eee.fff", "/"),
    ("lb", "root", "/"),
    ("lb", "api", "/khobregan/api"),  # the same name on another path, as a load balancer sets it
)
TOKEN = ExirToken(COOKIES, NT, 116, 400.0).pack()
OPEN = int(datetime(2026, 6, 2, 5, 15, tzinfo=UTC).timestamp())
ISIN = "IRO1XXXX0001"


def endpoints(url: str = "http://127.0.0.1:8123/khobregan") -> BrokerEndpoints:
    return BrokerEndpoints(
        code="khobregan",
        identity_url=url,
        trading_url=url,
        backoffice_url=url,
        market_data_url="http://127.0.0.1:8123/md",
        platform="exir",
        url=url,
        rlc_url="http://127.0.0.1:8123/rlc",
    )


def test_the_order_body_is_exactly_the_doc_s() -> None:
    assert order_body(116, ISIN, "buy", 9930, 601) == {
        "bankAccountId": -1,
        "brokerCode": 116,
        "disclosedQuantity": 0,
        "hasUnderCautionAgreement": True,
        "insMaxLcode": ISIN,
        "orderType": "ORDER_TYPE_LIMIT",
        "price": "9930.0",
        "quantity": "601",
        "side": "SIDE_BUY",
        "validityType": "VALIDITY_TYPE_DAY",
        "coreType": "c",
    }
    assert order_body(116, ISIN, "sell", 9370, 777)["side"] == "SIDE_SALE"
    assert order_body(116, ISIN, "buy", 123_456_789, 1)["price"] == "123456789.0"


def test_exir_is_registered_and_its_codec_sends_to_the_tenant() -> None:
    platform = platform_for("exir")
    codec = platform.codec(endpoints())
    assert isinstance(codec, ExirCodec) and codec.origin_url == "http://127.0.0.1:8123/khobregan"
    assert codec.spacing_ms(TOKEN) == 400.0


def test_the_bytes_for_a_second_computed_before_it_equal_those_built_at_that_second() -> None:
    codec = ExirCodec(endpoints())
    early = codec.order_request(TOKEN, ISIN, "buy", 9930, 601)
    for second in (OPEN - 1, OPEN, OPEN + 1):
        built_then = ExirCodec(endpoints()).order_request(TOKEN, ISIN, "buy", 9930, 601).at(second)
        assert early.at(second) == built_then
    # and both are the request written out plainly: the signature over the path relative to the tenant root
    body = orjson.dumps(order_body(116, ISIN, "buy", 9930, 601))
    plain = build_request(
        "POST",
        "http://127.0.0.1:8123/khobregan" + ORDER_PATH,
        {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Cookie": "cookiesession1=LB-1; JWT-TOKEN=aaa.bbb.ccc; client_login_id=ddd.eee.fff; lb=api",
            "X-App-N": x_app_n(NT, "/api/v1/order", OPEN),
        },
        body,
    )
    assert early.at(OPEN) == plain
    assert early.at(OPEN) != early.at(OPEN + 1)  # only the signature differs between seconds
    head, sep, rest = early.at(OPEN + 1).partition(b"X-App-N: ")
    assert (
        head == plain.partition(b"X-App-N: ")[0]
        and rest.split(b"\r\n", 1)[1] == plain.split(b"X-App-N: ")[1].split(b"\r\n", 1)[1]
    )


def test_the_request_line_carries_the_prefix_but_the_signature_does_not() -> None:
    raw = ExirCodec(endpoints()).order_request(TOKEN, ISIN, "buy", 9930, 601).at(OPEN)
    assert raw.startswith(b"POST /khobregan/api/v1/order HTTP/1.1\r\n")
    assert f"X-App-N: {x_app_n(NT, '/api/v1/order', OPEN)}\r\n".encode() in raw
    real = ExirCodec(endpoints("https://khobregan.exirbroker.com")).order_request(TOKEN, ISIN, "buy", 9930, 601)
    assert real.at(OPEN).startswith(b"POST /api/v1/order HTTP/1.1\r\nHost: khobregan.exirbroker.com\r\n")


def test_the_probe_is_a_signed_stock_info_get() -> None:
    raw = ExirCodec(endpoints()).probe_request(TOKEN).at(OPEN)
    assert raw.startswith(b"GET /khobregan/api/v1/user/stockInfo HTTP/1.1\r\n")
    assert f"X-App-N: {x_app_n(NT, STOCK_INFO_PATH, OPEN)}\r\n".encode() in raw
    assert b"\r\nCookie: cookiesession1=LB-1; JWT-TOKEN=aaa.bbb.ccc; client_login_id=ddd.eee.fff; lb=api\r\n" in raw
    # on a host without the prefix, the cookie of the /khobregan/api path does not match: the root one goes
    real = ExirCodec(endpoints("https://khobregan.exirbroker.com")).probe_request(TOKEN).at(OPEN)
    assert b"\r\nCookie: cookiesession1=LB-1; JWT-TOKEN=aaa.bbb.ccc; client_login_id=ddd.eee.fff; lb=root\r\n" in real


def test_a_token_of_another_platform_is_refused_as_unreadable() -> None:
    with pytest.raises(TokenUnreadable):
        ExirCodec(endpoints()).order_request("eyJhbGciOi.eyJzdWIi.sig", ISIN, "buy", 9930, 601)
    assert ExirToken.unpack(TOKEN) == ExirToken(COOKIES, NT, 116, 400.0)


@pytest.mark.parametrize(
    "status, body, verdict, code, serial",
    [
        (200, b'{"type":"orderSuccess","id":12345678}', Verdict.ACCEPTED, 0, 12345678),
        (200, b'{"result":{"mmtpOrderId":"87654321"}}', Verdict.ACCEPTED, 0, 87654321),
        (200, b"", Verdict.ACCEPTED, 0, None),
        (201, b"ok", Verdict.ACCEPTED, 0, None),
        (
            400,
            b'{"type":"error","errorCode":1005,"description":"\xd9\x81\xd8\xa7\xd8\xb5\xd9\x84\xd9\x87 "}',
            Verdict.RETRY,
            1005,
            None,
        ),
        (400, b'{"type":"error","errorCode":1011,"descriptionEn":"insufficient"}', Verdict.TERMINAL, 1011, None),
        (200, b'{"type":"error","errorCode":1017}', Verdict.RETRY, 1017, None),  # "not open yet": never books
        (401, b'{"type":"error","errorCode":4010}', Verdict.TERMINAL, 4010, None),
        (401, b"", Verdict.TERMINAL, 401, None),
        (500, b'{"errorCode":1005}', Verdict.UNKNOWN, 1005, None),
        (502, b"<html>bad gateway</html>", Verdict.UNKNOWN, None, None),
        (400, b"<html>", Verdict.UNKNOWN, None, None),
        (404, b'{"what":"no code"}', Verdict.UNKNOWN, None, None),
    ],
)
def test_answers_are_classified_on_status_and_code(status, body, verdict, code, serial) -> None:
    answer = classify(status, body)
    assert (answer.verdict, answer.code, answer.serial_number) == (verdict, code, serial)


def test_a_rejection_keeps_the_broker_s_words() -> None:
    answer = classify(400, '{"errorCode":1011,"description":"مانده کافي نيست ","descriptionEn":"x"}'.encode())
    assert answer.message == "مانده کافي نيست" and answer.raw["errorCode"] == 1011


def row(**fields):
    base = {
        "mmtpOrderId": 40001,
        "uuid": "u-1",
        "orderSideName": "خريد",
        "quantity": 601,
        "remainingQuantity": 601,
        "tradedQuantity": 0,
        "price": 9930,
        "averageTradedPrice": 0,
        "insMaxLCode": ISIN,
        "entryDateTime": "1405/03/12-08:45:00",
        "mmtpOrderStatusName": "در صف",
    }
    return broker_order({**base, **fields})


def test_find_order_matches_isin_side_and_time_since() -> None:
    since = datetime(2026, 6, 2, 8, 45, 1, tzinfo=TEHRAN)  # entryDateTime has whole seconds: the slack covers it
    ours = row()
    yesterday = row(mmtpOrderId=39999, entryDateTime="1405/03/11-08:45:00")
    sell = row(mmtpOrderId=40002, orderSideName="فروش")
    other = row(mmtpOrderId=40003, insMaxLCode="IRO1YYYY0001")
    assert find_order([yesterday, sell, other, ours], ISIN, "buy", since, TEHRAN) is ours
    assert find_order([yesterday, sell, other], ISIN, "buy", since, TEHRAN) is None
    assert find_order([yesterday, sell], ISIN, "sell", since, TEHRAN) is sell
    assert find_order([ours, yesterday], ISIN, "buy", since, TEHRAN, serial_number=39999) is yesterday
    late = since + timedelta(seconds=30)
    assert find_order([ours], ISIN, "buy", late, TEHRAN) is None


def test_an_order_without_a_readable_side_or_time_may_be_ours() -> None:
    since = datetime(2026, 6, 2, 8, 45, tzinfo=TEHRAN)
    unreadable_side = row(orderSideName="?")
    unreadable_time = row(entryDateTime="soon")
    assert find_order([unreadable_side], ISIN, "sell", since, TEHRAN) is unreadable_side
    assert find_order([unreadable_time], ISIN, "buy", since + timedelta(hours=1), TEHRAN) is unreadable_time


def test_rows_are_normalised_from_jalali_tehran_time() -> None:
    order = row(tradedQuantity=100, remainingQuantity=501, averageTradedPrice=9925.5)
    assert order.created == datetime(2026, 6, 2, 8, 45, tzinfo=TEHRAN)
    assert order.created.astimezone(UTC) == datetime(2026, 6, 2, 5, 15, tzinfo=UTC)
    assert (order.isin, order.side, order.serial, order.tracking) == (ISIN, "buy", 40001, "u-1")
    assert (order.volume, order.executed, order["remaining"], order["filled"]) == (601, 100, 501, True)
    assert order["side"] == 1 and order["serialNumber"] == 40001 and order["averagePrice"] == 9925.5
    assert row()["filled"] is False and row(orderSideName="فروش").side == "sell"
    assert row(insMaxLCode=None, insMaxLcode="IRO1ZZZZ0001").isin == "IRO1ZZZZ0001"
    assert date(2026, 6, 2) == row().created.date()
