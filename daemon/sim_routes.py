"""The simulator's HTTP face: Ephoenix's endpoints under one port, one path prefix per broker and role.

    /{broker}/identity/api/Captcha/GetCaptcha                          captcha
    /{broker}/identity/api/v2/accounts/login                           login
    /{broker}/trading/api/v2/tradingbook/GetLastTradingBook            tradingbook
    /{broker}/trading/api/v2/orders/CalculateOrderParam                calc
    /{broker}/trading/api/v2/orders/NewOrder                           new_order
    /{broker}/trading/api/v2/orders/GetOpenOrders?type=1               open_orders
    /{broker}/trading/api/v2/orders/GetOrders (POST, paged, filtered)  orders
    /{broker}/trading/api/v2/orders/CancelOrder?serialNumber=N         cancel
    /{broker}/backoffice/api/portfolio/getrealsecuritypositionbydate   holdings
    /marketdata/api/v2/instruments/full                                instruments

Bodies and codes follow ephoenix-api.md; the rules themselves live in sim_market.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from daemon.captcha_image import render_captcha
from daemon.sim_faults import Fault
from daemon.sim_log import RequestRecord
from daemon.sim_market import (
    BUY, INVALID_REQUEST, MARKET_CLOSED, MESSAGES, OK, SELL, TOO_SOON, UNKNOWN_INSTRUMENT, WRONG_CAPTCHA,
    WRONG_CREDENTIALS, Account, Order, as_decimal, calculate_order_param, parse_order_request, parse_orders_query,
)
from daemon.sim_state import SimState

STATE = web.AppKey("sim_state", SimState)
USERNAME = web.RequestKey("sim_username", str)
ERROR_CODE = web.RequestKey("sim_error_code", int)
FAULT = web.RequestKey("sim_fault", str)
NO_IMAGE = web.RequestKey("sim_no_image", bool)
DROPPED = web.RequestKey("sim_dropped", bool)
TEHRAN = ZoneInfo("Asia/Tehran")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HTML_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def _state(request: web.Request) -> SimState:
    return request.app[STATE]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


async def read_json(request: web.Request) -> Any:
    """The body as JSON with exact Decimals for fractions; None when it is not JSON."""
    raw = await request.read()
    try:
        return json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None


def rejection(request: web.Request, code: int, status: int | None = None) -> web.Response:
    """A refused request: isSuccess false, the code and its Persian message."""
    request[ERROR_CODE] = code
    body = {"isSuccess": False, "errorCode": code, "errorMessage": MESSAGES[code]}
    return json_response(body, status=status or _state(request).settings.rejection_status)


# ---- identity -------------------------------------------------------------------------------------
def _throttled(request: web.Request) -> web.Response | None:
    """HTTP 429 while this identity host is cooling down, else None (and the call is counted)."""
    st = _state(request)
    left = st.limiter.admit(request.match_info["broker"], st.clock.monotonic_ns())
    if left is None:
        return None
    return web.Response(status=429, text="Too Many Requests", headers=st.limiter.retry_after_header(left))


async def captcha(request: web.Request) -> web.StreamResponse:
    if (refused := _throttled(request)) is not None:
        return refused
    st = _state(request)
    broker = st.brokers[request.match_info["broker"]]
    salt = st.captchas.new_salt(st.rng.randbytes(16), st.now_ns())
    answer = st.captchas.answer(salt)
    body: dict[str, Any] = {"salt": salt, "hashedCaptcha": st.captchas.hash(salt, answer)}
    if not request.get(NO_IMAGE):
        image = render_captcha(answer, broker.captcha_format, random.Random(salt))
        st.captchas.showed(image, answer)
        body = {"captchaByteData": base64.b64encode(image).decode("ascii"), **body}
    return json_response(body)


async def login(request: web.Request) -> web.StreamResponse:
    if (refused := _throttled(request)) is not None:
        return refused
    st = _state(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        return _login_answer(request, INVALID_REQUEST)
    username = body.get("loginName")
    if isinstance(username, str):
        request[USERNAME] = username
    answer = body.get("captcha") if isinstance(body.get("captcha"), dict) else {}
    now_ns = st.now_ns()
    if not st.captchas.verify(answer.get("salt"), answer.get("hash"), answer.get("value"), now_ns):
        return _login_answer(request, WRONG_CAPTCHA)
    account = st.market.account(request.match_info["broker"], username) if isinstance(username, str) else None
    password = body.get("password")
    if account is None or not isinstance(password, str) or password != account.password:
        return _login_answer(request, WRONG_CREDENTIALS)
    ttl = int(st.settings.token_ttl_s)
    token, expire_in = st.tokens.issue(account.broker, account.username, account.token_generation, now_ns // 10**9, ttl)
    return _login_answer(request, OK, token, expire_in)


def _login_answer(request: web.Request, code: int, token: str | None = None, expire_in: int | None = None) -> web.Response:
    """Login answers HTTP 200 whatever happened; the body says."""
    request[ERROR_CODE] = code
    return json_response({
        "token": token, "expireIn": expire_in, "errorCode": code, "isSuccess": code == OK,
        "errorMessage": MESSAGES.get(code),
    })


# ---- trading and back office (token required) -----------------------------------------------------
def authorized(request: web.Request) -> Account:
    """The account whose live token this request carries; HTTP 401 for a missing, unknown or expired one."""
    st = _state(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    claims = st.tokens.verify(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    account = None
    if claims is not None and claims.broker == request.match_info["broker"]:
        account = st.market.account(claims.broker, claims.username)
    if account is not None:
        request[USERNAME] = account.username
    if account is None or claims is None or claims.generation != account.token_generation \
            or claims.expires_s <= st.now_ns() // 10**9:
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return account


async def trading_book(request: web.Request) -> web.StreamResponse:
    account = authorized(request)
    return json_response({
        "buyingPower": account.buying_power, "remain": account.remain, "credit": account.credit,
        "timestamp": _state(request).now_ns() // 10**9,
    })


async def calculate_order_param_route(request: web.Request) -> web.StreamResponse:
    authorized(request)
    st = _state(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        return rejection(request, INVALID_REQUEST)
    side, amount, price = body.get("side"), as_decimal(body.get("totalNetAmount")), as_decimal(body.get("price"))
    if side not in (BUY, SELL) or isinstance(side, bool) or amount is None or price is None:
        return rejection(request, INVALID_REQUEST)
    instrument = st.market.instruments.get(body.get("isin"))  # type: ignore[arg-type]
    if instrument is None:
        return rejection(request, UNKNOWN_INSTRUMENT)
    params = calculate_order_param(side, amount, price, instrument.mineq, instrument.maxeq, st.market.rules.fee_rate(side))
    return json_response(params.to_json())


async def new_order(request: web.Request) -> web.StreamResponse:
    account = authorized(request)
    st = _state(request)
    body = await read_json(request)
    order = parse_order_request(body)
    isin = body.get("isin") if isinstance(body, dict) else None
    now_ns = st.now_ns()
    too_soon = st.market.spacing_violated(account, isin if isinstance(isin, str) else None, st.clock.monotonic_ns())
    if not st.is_open(now_ns):
        code = MARKET_CLOSED
    elif too_soon:
        code = TOO_SOON
    elif order is None:
        code = INVALID_REQUEST
    else:
        code = st.market.check_order(account, order)
    if code != OK or order is None:
        return rejection(request, code)
    booked = st.market.accept(account, order, now_ns)
    request[ERROR_CODE] = OK
    ids = {"serialNumber": booked.serial_number, "trackingNumber": booked.tracking_number}
    if st.settings.order_response == "nested":
        return json_response({"isSuccess": True, "result": {**ids, "state": booked.state}})
    return json_response({"isSuccess": True, "errorCode": OK, "errorMessage": None, **ids})


def _orders_json(orders: list[Order]) -> list[dict[str, Any]]:
    return [o.to_json(datetime.fromtimestamp(o.created_ns / 1e9, TEHRAN).isoformat(timespec="milliseconds"))
            for o in orders]


async def open_orders(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    return json_response(_orders_json(st.market.orders_of(authorized(request), open_only=True)))


async def orders_history(request: web.Request) -> web.StreamResponse:
    """GetOrders: one page of the account's orders in every state, newest first, with the filters applied."""
    account = authorized(request)
    query = parse_orders_query(await read_json(request))
    if query is None:
        return rejection(request, INVALID_REQUEST, status=400)
    rows, total = query.page_of(_state(request).market.orders_of(account))
    return json_response({"rows": [o.history_row() for o in rows], "totalRecords": total})


async def cancel_order(request: web.Request) -> web.StreamResponse:
    account = authorized(request)
    raw = request.query.get("serialNumber", "")
    if not raw.isdigit():
        return rejection(request, INVALID_REQUEST)
    code = _state(request).market.cancel(account, int(raw))
    if code != OK:
        return rejection(request, code)
    request[ERROR_CODE] = OK
    return json_response({"isSuccess": True, "errorCode": OK, "errorMessage": None, "serialNumber": int(raw)})


async def holdings(request: web.Request) -> web.StreamResponse:
    account = authorized(request)
    if account.holdings_error is not None:
        return json_response({"isError": True, "message": account.holdings_error, "result": None})
    instruments = _state(request).market.instruments
    result = [
        {"isin": isin, "symbol": instruments[isin].symbol if isin in instruments else "", "remainVolume": float(volume)}
        for isin, volume in account.holdings.items() if volume > 0
    ]
    return json_response({"isError": False, "message": None, "result": result})


# ---- market data (shared) -------------------------------------------------------------------------
async def instruments_full(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    isins = body.get("isinList") if isinstance(body, dict) else None
    if not isinstance(isins, list) or not all(isinstance(i, str) for i in isins):
        return rejection(request, INVALID_REQUEST, status=400)
    known = _state(request).market.instruments
    return json_response([known[isin].to_json() for isin in isins if isin in known])


# ---- middlewares: record, known broker, faults ------------------------------------------------------
@web.middleware
async def record_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: take the arrival stamp, and log the request however it ends."""
    st = _state(request)
    wall_ns, mono_ns = st.arrivals.take(request.protocol)
    status: int | None = 500
    try:
        response = await handler(request)
        status = None if request.get(DROPPED) else response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        st.arrivals.reset(request.protocol)
        st.log.add(RequestRecord(
            time_ns=wall_ns, monotonic_ns=mono_ns, handled_monotonic_ns=st.clock.monotonic_ns(),
            method=request.method, path=request.path_qs, route=request.match_info.route.name,
            broker=request.match_info.get("broker"), username=request.get(USERNAME), status=status,
            error_code=request.get(ERROR_CODE), fault=request.get(FAULT),
        ))


@web.middleware
async def known_broker(request: web.Request, handler: Handler) -> web.StreamResponse:
    broker = request.match_info.get("broker")
    if broker is not None and broker not in _state(request).brokers:
        return json_response({"isSuccess": False, "errorMessage": f"no simulated broker {broker!r}"}, status=404)
    return await handler(request)


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Delay, then fail as the plan says: before the handler runs, or after it with `after`."""
    st = _state(request)
    route = request.match_info.route.name
    delay_s, failure = st.faults.for_request(route, request.match_info.get("broker"))
    if delay_s:
        await st.sleep(delay_s)
    if failure is None:
        return await handler(request)
    request[FAULT] = failure.label
    if failure.kind == "no_image":
        request[NO_IMAGE] = True
        return await handler(request)
    answer: web.StreamResponse | None = None
    if failure.after or failure.kind in ("malformed", "truncated"):
        try:
            answer = await handler(request)
        except web.HTTPException as exc:
            answer = exc
    return _failed(request, failure, answer)


def _failed(request: web.Request, failure: Fault, answer: web.StreamResponse | None) -> web.StreamResponse:
    """The answer a failure puts in place of the real one (malformed and truncated spoil the real one)."""
    if failure.kind == "drop":
        request[DROPPED] = True
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=200)
    if failure.kind == "html":
        status = failure.status or 502
        reason = web.Response(status=status).reason
        return web.Response(status=status, text=_HTML_PAGE.format(status=status, reason=reason), content_type="text/html")
    if failure.kind == "status":
        status = failure.status or 500
        reason = web.Response(status=status).reason
        body = {"type": "about:blank", "title": reason, "status": status}
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/problem+json")
    real = answer.body if isinstance(answer, web.Response) and isinstance(answer.body, bytes) else b"{}"
    status = answer.status if answer is not None else 200
    spoiled = real[: max(1, len(real) // 2)] if failure.kind == "truncated" else b")]}'\n" + real
    return web.Response(body=spoiled, status=status, content_type="application/json")


async def _skewed_date(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp would stamp the host's time; a broker's Date comes from its own (skewed) clock."""
    response.headers["Date"] = format_datetime(_state(request).now(), usegmt=True)


def build_app(state: SimState) -> web.Application:
    app = web.Application(middlewares=[record_request, known_broker, inject_faults])
    app[STATE] = state
    app.on_response_prepare.append(_skewed_date)
    identity, trading = "/{broker}/identity/api", "/{broker}/trading/api/v2"
    app.router.add_get(f"{identity}/Captcha/GetCaptcha", captcha, name="captcha")
    app.router.add_post(f"{identity}/v2/accounts/login", login, name="login")
    app.router.add_get(f"{trading}/tradingbook/GetLastTradingBook", trading_book, name="tradingbook")
    app.router.add_post(f"{trading}/orders/CalculateOrderParam", calculate_order_param_route, name="calc")
    app.router.add_post(f"{trading}/orders/NewOrder", new_order, name="new_order")
    app.router.add_get(f"{trading}/orders/GetOpenOrders", open_orders, name="open_orders")
    app.router.add_post(f"{trading}/orders/GetOrders", orders_history, name="orders")
    app.router.add_delete(f"{trading}/orders/CancelOrder", cancel_order, name="cancel")
    app.router.add_post("/{broker}/backoffice/api/portfolio/getrealsecuritypositionbydate", holdings, name="holdings")
    app.router.add_post("/marketdata/api/v2/instruments/full", instruments_full, name="instruments")
    return app
