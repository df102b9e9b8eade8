"""Ephoenix on the simulator: its endpoints, codes and JSON over the shared market, one prefix per broker and role.

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

Bodies and codes follow ephoenix-api.md. The market's rules (money, price band, volume, spacing) are the
shared market's (`_market`); this module names their refusals in Ephoenix's codes, in Ephoenix's order
(closed market, then spacing, then the body, then the market's checks), and writes Ephoenix's JSON.
A module for another platform follows the same shape and registers itself at the bottom.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Literal

from aiohttp import web

from daemon.sim._captcha_image import render_captcha
from daemon.sim._fills import Execution
from daemon.sim._http import ERROR_CODE, NO_IMAGE, USERNAME, add_route, json_response, read_json
from daemon.sim._http import state_of as _state
from daemon.sim._market import (
    BUY,
    SELL,
    TEHRAN,
    Account,
    BookLevel,
    Instrument,
    Market,
    Order,
    OrderRequest,
    Refusal,
    created_at,
    fee_of,
    round_half_up,
)
from daemon.sim._platform import register_platform
from daemon.sim._state import SimState

NAME = "ephoenix"

# Order states (the API numbers them 1-11): 3 = fully executed is the document's (`includeStatus: [3]`); 2 registered
# and open, 4 cancelled and 5 partly executed are the simulator's own guesses.
STATE_ADDED = 2
STATE_EXECUTED = 3
STATE_CANCELED = 4
STATE_PARTIAL = 5
STATE_DESCRIPTIONS = {
    STATE_ADDED: "ثبت شده",
    STATE_EXECUTED: "اجرا شده",
    STATE_CANCELED: "لغو شده",
    STATE_PARTIAL: "بخشی اجرا شده",
}
MAX_PAGE_SIZE = 500  # GetOrders' largest page; a bigger pageSize is a malformed request

# Codes from ephoenix-api.md, then the simulator's own for cases the document does not name.
OK = 0
INVALID_VOLUME = 1001
BELOW_MIN_VALUE = 1006
INSUFFICIENT_BALANCE = 1011
MARKET_CLOSED = 1017
TOO_SOON = 1018
WRONG_CAPTCHA = -1000
WRONG_CREDENTIALS = 3000
INVALID_REQUEST = 1000  # simulator's own: a field missing or of the wrong type
PRICE_OUT_OF_RANGE = 1003  # simulator's own: price outside today's [minap, maxap]
UNKNOWN_INSTRUMENT = 1004  # simulator's own
INSUFFICIENT_HOLDINGS = 1012  # simulator's own: a sell for more shares than the account holds
ORDER_NOT_FOUND = 1020  # simulator's own: CancelOrder of an order that is not this account's open order

REFUSAL_CODES: dict[Refusal, int] = {
    Refusal.UNKNOWN_INSTRUMENT: UNKNOWN_INSTRUMENT,
    Refusal.VOLUME: INVALID_VOLUME,
    Refusal.PRICE: PRICE_OUT_OF_RANGE,
    Refusal.BALANCE: INSUFFICIENT_BALANCE,
    Refusal.HOLDINGS: INSUFFICIENT_HOLDINGS,
    Refusal.MIN_VALUE: BELOW_MIN_VALUE,
}

MESSAGES: dict[int, str] = {
    INVALID_REQUEST: "درخواست نامعتبر است",
    INVALID_VOLUME: "حجم سفارش اشتباه",
    PRICE_OUT_OF_RANGE: "قیمت سفارش خارج از محدوده مجاز روزانه است",
    UNKNOWN_INSTRUMENT: "نماد مورد نظر یافت نشد",
    BELOW_MIN_VALUE: "ارزش سفارش کمتر از حداقل مجاز است",
    INSUFFICIENT_BALANCE: "مانده حساب کافی نیست",
    INSUFFICIENT_HOLDINGS: "دارایی کافی برای فروش وجود ندارد",
    MARKET_CLOSED: "بازار در وضعیت سفارش گیری نمی‌باشد",
    TOO_SOON: "فاصله زمانی ثبت دو سفارش کمتر از حد مجاز",
    ORDER_NOT_FOUND: "سفارش مورد نظر یافت نشد",
    WRONG_CAPTCHA: "کد امنیتی اشتباه است",
    WRONG_CREDENTIALS: "نام کاربری یا رمز عبور اشتباه است",
}


# ---- the market's answers in Ephoenix's codes and JSON --------------------------------------------
def check_order(market: Market, account: Account, order: OrderRequest) -> int:
    """The market's checks after the timing rules, as Ephoenix's code of the first that fails, or OK."""
    refusal = market.check_order(account, order)
    return OK if refusal is None else REFUSAL_CODES[refusal]


def cancel(market: Market, account: Account, serial_number: int, now_ns: int, open_ns: int | None = None) -> int:
    """CancelOrder's code: OK, or 1020 when the account has no such order with something left at `now_ns`."""
    return OK if market.cancel(account, serial_number, now_ns, open_ns) else ORDER_NOT_FOUND


def state_code(order: Order, done: Execution) -> int:
    """Cancelled whatever executed before; else fully, partly or not yet executed."""
    if not order.is_open:
        return STATE_CANCELED
    if done.quantity >= order.volume:
        return STATE_EXECUTED
    return STATE_PARTIAL if done.quantity else STATE_ADDED


def book_level_json(level: BookLevel, isin: str, row: int) -> dict[str, Any]:
    return {
        "isin": isin,
        "r": row,
        "bp": level.buy_price,
        "bv": level.buy_volume,
        "boc": level.buy_count,
        "sp": level.sell_price,
        "sv": level.sell_volume,
        "soc": level.sell_count,
    }


def instrument_json(instrument: Instrument) -> dict[str, Any]:
    """The `instruments/full` entry: nested `i` (identity, quantity limits), `t` (today's prices), `bl`."""
    i = instrument
    return {
        "i": {"isin": i.isin, "s": i.symbol, "t": i.title, "mineq": i.mineq, "maxeq": i.maxeq},
        "t": {"isin": i.isin, "maxap": i.maxap, "minap": i.minap, "cup": i.last, "lp": i.last},
        "bl": [book_level_json(level, i.isin, row) for row, level in enumerate(i.book, start=1)],
    }


def order_json(order: Order, created_iso: str, done: Execution) -> dict[str, Any]:
    """A GetOpenOrders entry."""
    o = order
    return {
        "serialNumber": o.serial_number,
        "trackingNumber": o.tracking_number,
        "isin": o.isin,
        "symbol": o.symbol,
        "side": o.side,
        "price": o.price,
        "volume": o.volume,
        "executedVolume": done.quantity,
        "state": state_code(o, done),
        "validity": o.validity,
        "validityDate": o.validity_date,
        "createdAt": created_iso,
    }


def history_row(order: Order, done: Execution, fee_rate: Decimal) -> dict[str, Any]:
    """A GetOrders row. `executedAmount` is the gross rial traded, `totalFee` its fee (half up, as the market charges
    it) and `netTradedValue` the account's side of it (gross plus fee for a buy, less it for a sell): the simulator's
    reading of fields the document names without their meaning. `executionDate` is the last trade's Tehran wall time,
    null before any; `created` is Tehran wall time without an offset (the client must read either form)."""
    o = order
    created = created_at(o.created_ns)
    state = state_code(o, done)
    gross = done.value
    fee = sum(fee_of(t.price, t.quantity, fee_rate) for t in done.trades)
    last = done.last_ns
    return {
        "id": o.row_id,
        "serialNumber": o.serial_number,
        "trackingNumber": o.tracking_number,
        "isin": o.isin,
        "symbol": o.symbol,
        "symbolTitle": o.symbol_title,
        "orderSide": o.side,
        "price": o.price,
        "volume": o.volume,
        "executedVolume": done.quantity,
        "executedAmount": gross,
        "netTradedValue": gross + fee if o.side == BUY else gross - fee,
        "totalFee": fee,
        "state": state,
        "stateDesc": STATE_DESCRIPTIONS.get(state, ""),
        "isDone": state in (STATE_EXECUTED, STATE_CANCELED),
        "date": f"{created:%Y/%m/%d}",
        "created": created.replace(tzinfo=None).isoformat(timespec="milliseconds"),
        "executionDate": None
        if last is None
        else created_at(last).replace(tzinfo=None).isoformat(timespec="milliseconds"),
        "pamCode": pam_code(o.broker, o.username),
    }


def pam_code(broker: str, username: str) -> str:
    """The account code GetOrders rows carry: it ends with the username, as the brokers' do."""
    return f"{broker.upper()}{username}"


@dataclass(frozen=True)
class OrdersQuery:
    """A GetOrders body, checked for shape: a page of one account's orders, newest first, after the filters."""

    page: int = 1
    page_size: int = 50
    from_date: date | None = None
    to_date: date | None = None
    side: int | None = None
    isin: str | None = None
    include_status: frozenset[int] = frozenset()  # empty: every state
    pam_code: str | None = None

    def selects(self, order: Order, state: int) -> bool:
        """Whether `order`, in `state` now, passes every filter."""
        day = order.day
        return (
            (self.from_date is None or day >= self.from_date)
            and (self.to_date is None or day <= self.to_date)
            and (self.side is None or order.side == self.side)
            and (self.isin is None or order.isin == self.isin)
            and (not self.include_status or state in self.include_status)
            and (self.pam_code is None or pam_code(order.broker, order.username) == self.pam_code)
        )

    def page_of(
        self,
        orders: list[Order],
        state_of: Callable[[Order], int] = lambda o: STATE_ADDED if o.is_open else STATE_CANCELED,
    ) -> tuple[list[Order], int]:
        """This query's page of `orders` and how many pass the filters in all (`totalRecords`); `state_of` gives an
        order's state now (by default: open or cancelled, nothing executed)."""
        chosen = sorted(
            (o for o in orders if self.selects(o, state_of(o))), key=lambda o: (o.created_ns, o.row_id), reverse=True
        )
        start = (self.page - 1) * self.page_size
        return chosen[start : start + self.page_size], len(chosen)


@dataclass(frozen=True)
class OrderParams:
    volume: int
    total_net_amount: int
    total_fee: int

    def to_json(self) -> dict[str, int]:
        return {"volume": self.volume, "totalNetAmount": self.total_net_amount, "totalFee": self.total_fee}


def calculate_order_param(
    side: int, total_net_amount: Decimal, price: Decimal, mineq: int, maxeq: int, fee_rate: Decimal
) -> OrderParams:
    """CalculateOrderParam: the volume `total_net_amount` pays for (buy) or brings in (sell), fee included.

    Buy: v = floor(amount / (price * (1 + fee))); sell: v = floor(amount / (price * (1 - fee))); then
    v = min(v, maxeq) and v = 0 below mineq. Fee = round-half-up(v * price * fee); the answered total is
    v * price + fee for a buy and v * price - fee for a sell.
    """
    if price <= 0:
        return OrderParams(0, 0, 0)
    factor = 1 + fee_rate if side == BUY else 1 - fee_rate
    volume = int((total_net_amount / (price * factor)).to_integral_value(rounding=ROUND_FLOOR))
    volume = min(volume, maxeq)
    if volume < mineq:
        volume = 0
    gross = price * volume
    fee = round_half_up(gross * fee_rate)
    total = gross + fee if side == BUY else gross - fee
    return OrderParams(volume, int(total), fee)


def parse_order_request(body: Any) -> OrderRequest | None:
    """The NewOrder body's fields, or None when one is missing or of the wrong type."""
    if not isinstance(body, dict):
        return None
    isin, side = body.get("isin"), body.get("side")
    price, volume = _whole(body.get("price")), _whole(body.get("volume"))
    if (
        not isinstance(isin, str)
        or side not in (BUY, SELL)
        or isinstance(side, bool)
        or price is None
        or volume is None
    ):
        return None
    return OrderRequest(
        isin=isin,
        side=side,
        price=price,
        volume=volume,
        validity=body.get("validity", 1),
        validity_date=body.get("validityDate"),
    )


def parse_orders_query(body: Any) -> OrdersQuery | None:
    """The GetOrders body as a query, or None when a field has the wrong type or value. Missing fields take
    the defaults (page 1 of 50, no filter); dates are Gregorian YYYY/MM/DD as ephoenix-api.md shows."""
    if not isinstance(body, dict):
        return None
    page, size = body.get("page", 1), body.get("pageSize", 50)
    side, isin, pam, states = body.get("side"), body.get("isin"), body.get("pamCode"), body.get("includeStatus") or []
    if not (_plain_int(page) and page >= 1 and _plain_int(size) and 1 <= size <= MAX_PAGE_SIZE):
        return None
    if (
        side not in (None, BUY, SELL)
        or isinstance(side, bool)
        or not isinstance(isin, (str, type(None)))
        or not isinstance(pam, (str, type(None)))
    ):
        return None
    if not isinstance(states, list) or not all(_plain_int(s) for s in states):
        return None
    bounds = [_slashed_date(body.get(key)) for key in ("fromDate", "toDate")]
    if any(bound is False for bound in bounds):
        return None
    return OrdersQuery(
        page=page,
        page_size=size,
        from_date=bounds[0] or None,
        to_date=bounds[1] or None,
        side=side,
        isin=isin,
        include_status=frozenset(states),
        pam_code=pam,
    )


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _slashed_date(value: Any) -> date | None | Literal[False]:
    """YYYY/MM/DD as a date, None for null, False for anything else."""
    if value is None:
        return None
    if not isinstance(value, str):
        return False
    parts = value.strip().split("/")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or len(parts[0]) != 4:
        return False
    try:
        return date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return False


def _whole(value: Any) -> int | None:
    """An integral JSON number (5150 or 5150.0) as int; anything else is None."""
    number = as_decimal(value)
    if number is None or number != number.to_integral_value():
        return None
    return int(number)


def as_decimal(value: Any) -> Decimal | None:
    """A JSON number as an exact Decimal (floats through their shortest repr); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
        return None
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    return number if number.is_finite() else None


# ---- the routes -----------------------------------------------------------------------------------
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


def _login_answer(
    request: web.Request, code: int, token: str | None = None, expire_in: int | None = None
) -> web.Response:
    """Login answers HTTP 200 whatever happened; the body says."""
    request[ERROR_CODE] = code
    return json_response(
        {
            "token": token,
            "expireIn": expire_in,
            "errorCode": code,
            "isSuccess": code == OK,
            "errorMessage": MESSAGES.get(code),
        }
    )


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
    if (
        account is None
        or claims is None
        or claims.generation != account.token_generation
        or claims.expires_s <= st.now_ns() // 10**9
    ):
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return account


async def trading_book(request: web.Request) -> web.StreamResponse:
    account = authorized(request)
    return json_response(
        {
            "buyingPower": account.buying_power,
            "remain": account.remain,
            "credit": account.credit,
            "timestamp": _state(request).now_ns() // 10**9,
        }
    )


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
    params = calculate_order_param(
        side, amount, price, instrument.mineq, instrument.maxeq, st.market.rules.fee_rate(side)
    )
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
        code = check_order(st.market, account, order)
    if code != OK or order is None:
        return rejection(request, code)
    booked = st.market.accept(account, order, now_ns)
    request[ERROR_CODE] = OK
    ids = {"serialNumber": booked.serial_number, "trackingNumber": booked.tracking_number}
    if st.settings.order_response == "nested":
        return json_response({"isSuccess": True, "result": {**ids, "state": state_code(booked, st.execution(booked))}})
    return json_response({"isSuccess": True, "errorCode": OK, "errorMessage": None, **ids})


def _orders_json(st: SimState, orders: list[Order]) -> list[dict[str, Any]]:
    return [
        order_json(
            o, datetime.fromtimestamp(o.created_ns / 1e9, TEHRAN).isoformat(timespec="milliseconds"), st.execution(o)
        )
        for o in orders
    ]


async def open_orders(request: web.Request) -> web.StreamResponse:
    """GetOpenOrders: the account's orders still in the book now (a fully executed or cancelled one has left)."""
    st = _state(request)
    return json_response(_orders_json(st, st.market.live_orders_of(authorized(request), st.now_ns(), st.open_ns())))


async def orders_history(request: web.Request) -> web.StreamResponse:
    """GetOrders: one page of the account's orders in every state, newest first, with the filters applied."""
    account = authorized(request)
    query = parse_orders_query(await read_json(request))
    if query is None:
        return rejection(request, INVALID_REQUEST, status=400)
    st = _state(request)
    done = {o.row_id: st.execution(o) for o in st.market.orders_of(account)}
    rows, total = query.page_of(st.market.orders_of(account), lambda o: state_code(o, done[o.row_id]))
    return json_response(
        {
            "rows": [history_row(o, done[o.row_id], st.market.rules.fee_rate(o.side)) for o in rows],
            "totalRecords": total,
        }
    )


async def cancel_order(request: web.Request) -> web.StreamResponse:
    account = authorized(request)
    raw = request.query.get("serialNumber", "")
    if not raw.isdigit():
        return rejection(request, INVALID_REQUEST)
    st = _state(request)
    code = cancel(st.market, account, int(raw), st.now_ns(), st.open_ns())
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
        for isin, volume in account.holdings.items()
        if volume > 0
    ]
    return json_response({"isError": False, "message": None, "result": result})


# ---- market data (shared) -------------------------------------------------------------------------
async def instruments_full(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    isins = body.get("isinList") if isinstance(body, dict) else None
    if not isinstance(isins, list) or not all(isinstance(i, str) for i in isins):
        return rejection(request, INVALID_REQUEST, status=400)
    known = _state(request).market.instruments
    return json_response([instrument_json(known[isin]) for isin in isins if isin in known])


# ---- the platform ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class EphoenixSim:
    """Ephoenix's routes on the shared app, and the three URLs per broker the daemon's config takes."""

    name: str = NAME
    title: str = "Ephoenix"
    routes: tuple[str, ...] = (
        "captcha",
        "login",
        "tradingbook",
        "instruments",
        "calc",
        "new_order",
        "open_orders",
        "orders",
        "cancel",
        "holdings",
    )
    reserved: frozenset[str] = frozenset({"marketdata"})

    def add_routes(self, app: web.Application) -> None:
        identity, trading = "/{broker}/identity/api", "/{broker}/trading/api/v2"
        for method, path, handler, route in (
            ("GET", f"{identity}/Captcha/GetCaptcha", captcha, "captcha"),
            ("POST", f"{identity}/v2/accounts/login", login, "login"),
            ("GET", f"{trading}/tradingbook/GetLastTradingBook", trading_book, "tradingbook"),
            ("POST", f"{trading}/orders/CalculateOrderParam", calculate_order_param_route, "calc"),
            ("POST", f"{trading}/orders/NewOrder", new_order, "new_order"),
            ("GET", f"{trading}/orders/GetOpenOrders", open_orders, "open_orders"),
            ("POST", f"{trading}/orders/GetOrders", orders_history, "orders"),
            ("DELETE", f"{trading}/orders/CancelOrder", cancel_order, "cancel"),
            ("POST", "/{broker}/backoffice/api/portfolio/getrealsecuritypositionbydate", holdings, "holdings"),
            ("POST", "/marketdata/api/v2/instruments/full", instruments_full, "instruments"),
        ):
            add_route(app, self.name, method, path, handler, route)

    def broker_config(self, base_url: str, code: str) -> dict[str, str]:
        """Ephoenix is the daemon's default platform, so the entry needs no `platform` key."""
        return {
            "identity_url": f"{base_url}/{code}/identity",
            "trading_url": f"{base_url}/{code}/trading",
            "backoffice_url": f"{base_url}/{code}/backoffice",
        }


PLATFORM = register_platform(EphoenixSim())
