"""The RLC market-data client (daemon/platforms/rlc): the odd URL as the doc gives it, the rows' numbers as
strings or numbers, rows dropped without a band, and one batched GET against a loopback server."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from daemon.client import HttpPool
from daemon.errors import BrokerUnavailable
from daemon.platforms.rlc import NO_CAP, RlcClient, blob, parse_stock_prices, rial, stock_price_url

DOC_URL = (
    "https://core.tadbirrlc.com//StockInformationHandler?%7B%27Type%27%3A%27getstockprice2%27%2C%27la%27%3A%27Fa"
    "%27%2C%27arr%27%3A%27IRO1SROD0001%2CIRO1MSMI0001%27%7D&jsoncallback="
)


def test_the_url_is_the_doc_s_example_byte_for_byte() -> None:
    assert stock_price_url("https://core.tadbirrlc.com/", ["IRO1SROD0001", "IRO1MSMI0001"]) == DOC_URL
    assert unquote(blob({"Type": "ALL21"})) == "{'Type':'ALL21'}"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("9930.0000000000000", 9930),
        (9930.0, 9930),
        ("19729.9999999999", 19730),
        ("200000", 200000),
        (" 42 ", 42),
        ("", None),
        (None, None),
        ("n/a", None),
        ("NaN", None),
        (True, None),
    ],
)
def test_numbers_come_as_strings_or_numbers_and_round_to_the_nearest_rial(value, expected) -> None:
    assert rial(value) == expected


def test_rows_are_keyed_by_isin_and_a_row_without_a_band_is_dropped() -> None:
    body = [
        {
            "nc": "IRO1MSMI0001",
            "sf": "فملی",
            "cn": "ملی مس",
            "hap": "20930.0000",
            "lap": "19730.00",
            "mxqo": "100000.0",
            "mnqo": 1,
            "ltp": "20330.0",
            "bbq": "5000000",
        },
        {"nc": "IRO1SROD0001", "hap": 9930.0, "lap": 9370.0, "mxqo": 0},
        {"nc": "IRO1ZERO0001", "hap": "0", "lap": "0"},
        {"nc": "IRO1JUNK0001", "hap": "n/a", "lap": "1"},
        {"sf": "no nc"},
        "not a row",
    ]
    quotes = parse_stock_prices(body)
    assert sorted(quotes) == ["IRO1MSMI0001", "IRO1SROD0001"]
    msmi = quotes["IRO1MSMI0001"].instrument()
    assert (msmi.limits.minap, msmi.limits.maxap, msmi.limits.mineq, msmi.limits.maxeq) == (19730, 20930, 1, 100000)
    assert (msmi.symbol, msmi.last_price, quotes["IRO1MSMI0001"].best_bid_volume) == ("فملی", 20330, 5000000)
    srod = quotes["IRO1SROD0001"]
    assert srod.mxqo is None and srod.instrument().limits.maxeq == NO_CAP  # 0 means unknown: not capped
    assert parse_stock_prices({"not": "a list"}) == {}


def rlc_app(seen: list[str], status: int = 200, body: bytes | None = None) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        if body is not None:
            return web.Response(status=status, body=body, content_type="application/json")
        asked = unquote(request.query_string.split("&jsoncallback=")[0])
        isins = asked.split("'arr':'")[1].rstrip("'}").split(",")
        rows = [
            {"nc": i, "hap": "9930.0000000000000", "lap": "9370.0", "mxqo": "50000.0"}
            for i in isins
            if i != "IRO1NONE0001"
        ]
        return web.json_response(rows, status=status)

    app = web.Application()
    app.router.add_get("/rlc//StockInformationHandler", handler)
    return app


async def serve(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_one_batched_get_with_the_doubled_slash_and_the_blob_sent_as_built() -> None:
    seen: list[str] = []
    server = await serve(rlc_app(seen))
    try:
        base = str(server.make_url("/rlc"))
        async with HttpPool(5.0) as http:
            client = RlcClient(http, base)
            quotes = await client.quotes(["IRO1SROD0001", "IRO1MSMI0001", "IRO1NONE0001"])
            instrument = await client.instrument("IRO1SROD0001")
            with pytest.raises(BrokerUnavailable, match="no price band for IRO1NONE0001"):
                await client.instrument("IRO1NONE0001")
        assert sorted(quotes) == ["IRO1MSMI0001", "IRO1SROD0001"]
        assert (instrument.limits.maxap, instrument.limits.minap, instrument.limits.maxeq) == (9930, 9370, 50000)
        assert seen[0] == stock_price_url("/rlc", ["IRO1SROD0001", "IRO1MSMI0001", "IRO1NONE0001"])
        assert len(seen) == 3
    finally:
        await server.close()


@pytest.mark.parametrize(
    "status, body, why",
    [(502, b"<html>", "HTTP 502"), (200, b"<html>oops</html>", "not JSON"), (403, b"[]", "HTTP 403")],
)
async def test_a_bad_answer_is_unavailable_not_an_empty_market(status: int, body: bytes, why: str) -> None:
    server = await serve(rlc_app([], status, body))
    try:
        async with HttpPool(5.0) as http:
            with pytest.raises(BrokerUnavailable, match=why):
                await RlcClient(http, str(server.make_url("/rlc"))).quotes(["IRO1SROD0001"])
    finally:
        await server.close()


async def test_nothing_listening_is_unavailable() -> None:
    server = await serve(rlc_app([]))
    base = str(server.make_url("/rlc"))
    await server.close()
    async with HttpPool(2.0) as http:
        with pytest.raises(BrokerUnavailable, match="RLC getstockprice2 failed"):
            await RlcClient(http, base).quotes(["IRO1SROD0001"])
