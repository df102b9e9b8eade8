"""The pure rules of the open: what an answer means, who goes first, what bytes go out."""

from __future__ import annotations

from datetime import date

import httptools
import orjson
import pytest

from daemon.firing import FirePlan, assign_slots, classify, firing_order, new_order_request
from daemon.net import WireResponse
from daemon.platforms import Verdict
from daemon.platforms.ephoenix import interpret


def response(status: int, body) -> WireResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return WireResponse(status, {}, raw, 0, 0, True)


@pytest.mark.parametrize(
    ("status", "body", "verdict", "code"),
    [
        (200, {"isSuccess": True, "errorCode": 0, "serialNumber": 7, "trackingNumber": "T7"}, Verdict.ACCEPTED, 0),
        (200, {"result": {"serialNumber": 8, "trackingNumber": 99}}, Verdict.ACCEPTED, 0),  # the nested shape
        (
            200,
            {"isSuccess": False, "errorCode": 1017, "errorMessage": "بازار در وضعیت سفارش گیری نمی‌باشد"},
            Verdict.RETRY,
            1017,
        ),
        (400, {"isSuccess": False, "errorCode": 1018, "errorMessage": "x"}, Verdict.RETRY, 1018),
        (200, {"isSuccess": False, "errorCode": 1011, "errorMessage": "مانده حساب کافی نیست"}, Verdict.TERMINAL, 1011),
        (200, {"errorCode": 1001}, Verdict.TERMINAL, 1001),
        (200, {"errorCode": 1006}, Verdict.TERMINAL, 1006),
        (200, {"errorCode": 4242}, Verdict.TERMINAL, 4242),  # an unknown code: resending cannot be known to help
        (401, b"", Verdict.TERMINAL, 401),
        (503, {"errorCode": 1017}, Verdict.UNKNOWN, None),
        (200, b"<html>oops</html>", Verdict.UNKNOWN, None),
        (200, {"isSuccess": False}, Verdict.UNKNOWN, None),
    ],
)
def test_classify(status, body, verdict, code):
    answer = classify(response(status, body))
    assert (answer.verdict, answer.code) == (verdict, code)


def test_accepted_answers_carry_the_ids():
    answer = interpret(200, {"result": {"serialNumber": "12", "trackingNumber": 99}})
    assert (answer.serial_number, answer.tracking_number) == (12, "99")


def test_the_message_is_the_brokers_own_text():
    assert (
        classify(response(200, {"errorCode": 1011, "errorMessage": "مانده حساب کافی نیست"})).message
        == "مانده حساب کافی نیست"
    )


def plan(account: str, isin: str = "IRO1FOLD0001", priority: int = 0) -> FirePlan:
    return FirePlan(account, "gs", account, isin, "buy", 100, 10, priority, "http://127.0.0.1:1/gs/trading")


def test_priority_first_then_a_rotation_that_moves_daily():
    plans = [plan(name) for name in "abcd"] + [plan("vip", priority=-1)]
    days = [date.fromordinal(date(2026, 11, 28).toordinal() + i) for i in range(5)]
    orders = [[p.account for p in firing_order(plans, day)] for day in days]
    assert all(order[0] == "vip" for order in orders)
    assert {order[1] for order in orders} == set("abcd")  # within five days each ordinary account leads once
    assert all(sorted(order[1:]) == list("abcd") for order in orders)


def test_an_accounts_orders_take_successive_slots_unless_spacing_is_per_symbol():
    plans = [plan("a", "IRO1FOLD0001"), plan("a", "IRO1IKCO0001"), plan("b")]
    assign_slots(plans, "account")
    assert sorted(p.slot for p in plans if p.account == "a") == [0, 1] and plans[2].slot == 0
    assign_slots(plans, "account_isin")
    assert all(p.slot == 0 for p in plans)


def test_new_order_request_is_a_complete_http_request():
    raw = new_order_request("https://api-gs.ephoenix.ir", "tok.en.value", "IRO1FOLD0001", "buy", 5580, 200)
    seen: dict = {"headers": {}, "body": b""}

    class Sink:
        def on_url(self, url):
            seen["url"] = url

        def on_header(self, name, value):
            seen["headers"][name.decode().lower()] = value.decode()

        def on_body(self, body):
            seen["body"] += body

    parser = httptools.HttpRequestParser(Sink())
    parser.feed_data(raw)
    assert parser.get_method() == b"POST" and seen["url"] == b"/api/v2/orders/NewOrder"
    assert seen["headers"]["authorization"] == "Bearer tok.en.value"
    assert seen["headers"]["host"] == "api-gs.ephoenix.ir"
    assert int(seen["headers"]["content-length"]) == len(seen["body"])
    assert orjson.loads(seen["body"]) == {
        "isin": "IRO1FOLD0001",
        "side": 1,
        "validity": 1,
        "validityDate": None,
        "accountType": 1,
        "price": 5580,
        "volume": 200,
        "serialNumber": 0,
    }
