"""RLC market data on the simulator over HTTP on 127.0.0.1: the official client's odd URL, numbers as strings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yarl

from daemon.sim import Simulator
from daemon.sim.rlc import encode_blob, parse_blob, rlc_settings
from tests.simhelp import sim_settings

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
FOLD, MSMI = "IRO1FOLD0001", "IRO1MSMI0001"  # FOLD: band [5260, 5580], maxeq 200000; MSMI: [6920, 7340], 150000


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    sim = Simulator.default(accounts=1, brokers=[("khobregan", "exir")], settings=sim_settings())
    async with sim:
        yield sim


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"User-Agent": UA}) as session:
        yield session


async def rlc_get(
    http: aiohttp.ClientSession, sim: Simulator, handler: str, query: str, slashes: str = "//"
) -> tuple[int, Any]:
    rlc_url = sim.broker_urls("khobregan")["rlc_url"]
    async with http.get(yarl.URL(f"{rlc_url}{slashes}{handler}?{query}", encoded=True)) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


def prices_query(*isins: str) -> str:
    return encode_blob({"Type": "getstockprice2", "la": "Fa", "arr": ",".join(isins)}) + "&jsoncallback="


def test_the_blob_is_encoded_as_the_official_client_does() -> None:
    """rlc-market-data.md's example, character for character."""
    assert encode_blob({"Type": "getstockprice2", "la": "Fa", "arr": "IRO1SROD0001,IRO1MSMI0001"}) == (
        "%7B%27Type%27%3A%27getstockprice2%27%2C%27la%27%3A%27Fa%27%2C%27arr%27%3A%27IRO1SROD0001%2CIRO1MSMI0001%27%7D"
    )
    assert parse_blob("%7B%27Type%27%3A%27ALL21%27%7D&jsoncallback=", strict=True) == ({"Type": "ALL21"}, "")
    assert parse_blob("%7B%27Type%27%3A%27ALL21%27%7D", strict=True) is None  # no &jsoncallback=
    assert parse_blob('{"Type":"ALL21"}&jsoncallback=', strict=True) is None  # double quotes: not this shape


async def test_getstockprice2_answers_the_band_and_quantity_bounds_as_strings_matched_on_nc(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, rows = await rlc_get(http, sim, "StockInformationHandler", prices_query(MSMI, "IRO1NONE0001", FOLD))
    assert status == 200 and [r["nc"] for r in rows] == [FOLD, MSMI]  # the market's order; the unknown is left out
    fold = rows[0]
    assert (fold["hap"], fold["lap"], fold["mxqo"], fold["mnqo"]) == (
        "5580.0000000000000",
        "5260.0000000000000",
        "200000.0000000000000",
        "1.0000000000000",
    )
    assert fold["sf"] == sim.instruments[FOLD].symbol and fold["cn"] == sim.instruments[FOLD].title
    best = sim.instruments[FOLD].book[0]
    assert (fold["bbq"], fold["bbp"], fold["nbb"]) == (
        f"{best.buy_volume}.0000000000000",
        f"{best.buy_price}.0000000000000",
        f"{best.buy_count}.0000000000000",
    )
    assert {"ltp", "cp", "pcp", "bsq", "bsp", "nbs"} <= set(fold)
    sim.instruments[MSMI].maxap = 7_400  # a live market: the next read sees the change
    assert (await rlc_get(http, sim, "StockInformationHandler", prices_query(MSMI)))[1][0]["hap"].startswith("7400.")


async def test_all21_answers_every_instrument_with_the_same_row_shape(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, rows = await rlc_get(http, sim, "StocksHandler.ashx", encode_blob({"Type": "ALL21"}) + "&jsoncallback=")
    assert status == 200 and [r["nc"] for r in rows] == list(sim.instruments)
    one = (await rlc_get(http, sim, "StockInformationHandler", prices_query(FOLD)))[1][0]
    assert rows[0] == one and rows[0]["sn"] is None


async def test_the_url_shape_is_held_to_while_strict_and_numbers_may_be_plain(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    assert (await rlc_get(http, sim, "StockInformationHandler", prices_query(FOLD), slashes="/"))[0] == 404
    no_callback = encode_blob({"Type": "getstockprice2", "la": "Fa", "arr": FOLD})
    assert (await rlc_get(http, sim, "StockInformationHandler", no_callback))[0] == 400
    assert (await rlc_get(http, sim, "StockInformationHandler", "Type=getstockprice2&arr=" + FOLD))[0] == 400
    wrong_type = encode_blob({"Type": "ALL21"}) + "&jsoncallback="
    assert (await rlc_get(http, sim, "StockInformationHandler", wrong_type))[0] == 400
    settings = rlc_settings(sim)
    settings.strict_url, settings.numbers = False, "number"
    status, rows = await rlc_get(http, sim, "StockInformationHandler", no_callback, slashes="/")
    assert status == 200 and (rows[0]["hap"], rows[0]["mxqo"]) == (5580.0, 200000.0)


async def test_a_named_callback_makes_jsonp(sim: Simulator, http: aiohttp.ClientSession) -> None:
    query = encode_blob({"Type": "getstockprice2", "la": "Fa", "arr": FOLD}) + "&jsoncallback=cb"
    status, text = await rlc_get(http, sim, "StockInformationHandler", query)
    assert status == 200 and text.startswith('cb([{"nc":"IRO1FOLD0001"') and text.endswith("]);")


async def test_rlc_needs_no_login_but_a_browser_agent_and_meets_faults_by_route(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    url = f"{sim.broker_urls('khobregan')['rlc_url']}//StockInformationHandler?{prices_query(FOLD)}"
    async with aiohttp.ClientSession() as bare, bare.get(yarl.URL(url, encoded=True)) as response:
        assert response.status == 403
    sim.add_fault("rlc_prices:status=503")
    assert (await rlc_get(http, sim, "StockInformationHandler", prices_query(FOLD)))[0] == 503
    assert (await rlc_get(http, sim, "StocksHandler.ashx", encode_blob({"Type": "ALL21"}) + "&jsoncallback="))[0] == 200
    assert [(r.route, r.status) for r in sim.request_log.records()] == [
        ("rlc_prices", 403),
        ("rlc_prices", 503),
        ("rlc_all", 200),
    ]
