"""The simulated broker's books: instruments, accounts, orders, and the rules an order must pass.

No HTTP and no clock reading here: callers pass the instants in, so every rule is a plain function of
its inputs and can be tested without a server. Money is in rial, as integers and Decimals, never floats.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

BUY, SELL = 1, 2
TEHRAN = ZoneInfo("Asia/Tehran")  # the brokers' own zone: an order's day and GetOrders' times are Tehran's

# Order states (the API numbers them 1-11): 2 = registered and open, 4 = cancelled.
STATE_ADDED = 2
STATE_CANCELED = 4
STATE_DESCRIPTIONS = {STATE_ADDED: "ثبت شده", STATE_CANCELED: "لغو شده"}
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

SpacingScope = Literal["account", "account_isin"]


@dataclass
class BookLevel:
    """One row of the order book (`bl`): best buy and sell price, volume and order count."""

    buy_price: int
    buy_volume: int
    buy_count: int
    sell_price: int = 0
    sell_volume: int = 0
    sell_count: int = 0

    def to_json(self, isin: str, row: int) -> dict[str, Any]:
        return {
            "isin": isin, "r": row,
            "bp": self.buy_price, "bv": self.buy_volume, "boc": self.buy_count,
            "sp": self.sell_price, "sv": self.sell_volume, "soc": self.sell_count,
        }


@dataclass
class Instrument:
    isin: str
    symbol: str
    title: str
    last: int
    maxap: int
    minap: int
    mineq: int = 1
    maxeq: int = 100_000
    book: list[BookLevel] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The `instruments/full` entry: nested `i` (identity, quantity limits), `t` (today's prices), `bl`."""
        return {
            "i": {"isin": self.isin, "s": self.symbol, "t": self.title, "mineq": self.mineq, "maxeq": self.maxeq},
            "t": {"isin": self.isin, "maxap": self.maxap, "minap": self.minap, "cup": self.last, "lp": self.last},
            "bl": [level.to_json(self.isin, row) for row, level in enumerate(self.book, start=1)],
        }


@dataclass
class Account:
    broker: str
    username: str
    password: str = field(repr=False)
    remain: int
    credit: int = 0
    holdings: dict[str, int] = field(default_factory=dict)
    holdings_error: str | None = None  # when set, the holdings call answers isError with this message
    token_generation: int = 0  # bumped to revoke every token issued before

    @property
    def buying_power(self) -> int:
        return self.remain + self.credit


@dataclass
class Order:
    broker: str
    username: str
    serial_number: int
    tracking_number: str
    isin: str
    symbol: str
    side: int
    price: int
    volume: int
    charged: int  # what the order took from buying power (buy) or 0 (sell)
    created_ns: int  # simulator clock
    validity: Any = 1
    validity_date: Any = None
    state: int = STATE_ADDED
    row_id: int = 0  # GetOrders' `id`: the order's place in the simulator's book, from 1
    symbol_title: str = ""

    @property
    def is_open(self) -> bool:
        return self.state == STATE_ADDED

    def to_json(self, created_iso: str) -> dict[str, Any]:
        return {
            "serialNumber": self.serial_number, "trackingNumber": self.tracking_number,
            "isin": self.isin, "symbol": self.symbol, "side": self.side, "price": self.price,
            "volume": self.volume, "executedVolume": 0, "state": self.state,
            "validity": self.validity, "validityDate": self.validity_date, "createdAt": created_iso,
        }

    @property
    def day(self) -> date:
        """The Tehran day the order was placed on, which GetOrders' fromDate and toDate select by."""
        return created_at(self.created_ns).date()

    def history_row(self) -> dict[str, Any]:
        """A GetOrders row. Nothing is ever filled here, so the executed figures are 0 and executionDate null;
        `created` is Tehran wall time without an offset (the client must read either form)."""
        created = created_at(self.created_ns)
        return {
            "id": self.row_id, "serialNumber": self.serial_number, "trackingNumber": self.tracking_number,
            "isin": self.isin, "symbol": self.symbol, "symbolTitle": self.symbol_title, "orderSide": self.side,
            "price": self.price, "volume": self.volume, "executedVolume": 0, "executedAmount": 0,
            "netTradedValue": 0, "totalFee": 0, "state": self.state,
            "stateDesc": STATE_DESCRIPTIONS.get(self.state, ""), "isDone": not self.is_open,
            "date": f"{created:%Y/%m/%d}", "created": created.replace(tzinfo=None).isoformat(timespec="milliseconds"),
            "executionDate": None, "pamCode": pam_code(self.broker, self.username),
        }


def created_at(created_ns: int) -> datetime:
    """An order's simulator-clock instant (epoch ns) as Tehran time, to the microsecond."""
    seconds, ns = divmod(created_ns, 10**9)
    return datetime.fromtimestamp(seconds, TEHRAN).replace(microsecond=ns // 1000)


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

    def selects(self, order: Order) -> bool:
        day = order.day
        return ((self.from_date is None or day >= self.from_date) and (self.to_date is None or day <= self.to_date)
                and (self.side is None or order.side == self.side) and (self.isin is None or order.isin == self.isin)
                and (not self.include_status or order.state in self.include_status)
                and (self.pam_code is None or pam_code(order.broker, order.username) == self.pam_code))

    def page_of(self, orders: list[Order]) -> tuple[list[Order], int]:
        """This query's page of `orders` and how many pass the filters in all (`totalRecords`)."""
        chosen = sorted((o for o in orders if self.selects(o)), key=lambda o: (o.created_ns, o.row_id), reverse=True)
        start = (self.page - 1) * self.page_size
        return chosen[start:start + self.page_size], len(chosen)


@dataclass(frozen=True)
class OrderParams:
    volume: int
    total_net_amount: int
    total_fee: int

    def to_json(self) -> dict[str, int]:
        return {"volume": self.volume, "totalNetAmount": self.total_net_amount, "totalFee": self.total_fee}


def round_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fee_of(price: int, volume: int, fee_rate: Decimal) -> int:
    return round_half_up(Decimal(price) * volume * fee_rate)


def calculate_order_param(side: int, total_net_amount: Decimal, price: Decimal, mineq: int, maxeq: int,
                          fee_rate: Decimal) -> OrderParams:
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


@dataclass
class OrderRules:
    """The knobs of NewOrder's checks; a live object, so a test or the CLI can change them while running."""

    buy_fee: Decimal = Decimal("0.003712")
    sell_fee: Decimal = Decimal("0.0088")
    spacing_ms: float = 300.0
    spacing_scope: SpacingScope = "account"
    min_order_value: int = 5_000_000

    def fee_rate(self, side: int) -> Decimal:
        return self.buy_fee if side == BUY else self.sell_fee


@dataclass(frozen=True)
class OrderRequest:
    """A NewOrder body, checked for shape only (the rules come later)."""

    isin: str
    side: int
    price: int
    volume: int
    validity: Any = 1
    validity_date: Any = None


class Market:
    """Every broker's accounts and orders plus the shared instruments, with the NewOrder rules."""

    def __init__(self, rules: OrderRules | None = None, rng: random.Random | None = None) -> None:
        self.rules = rules or OrderRules()
        self.instruments: dict[str, Instrument] = {}
        self.accounts: dict[tuple[str, str], Account] = {}
        self.orders: dict[tuple[str, int], Order] = {}
        self._rng = rng or random.Random()
        self._next_serial: dict[str, int] = {}
        self._booked = 0
        self._last_attempt_ns: dict[tuple[str, ...], int] = {}

    # ---- set-up -------------------------------------------------------------------------------
    def add_instrument(self, instrument: Instrument) -> Instrument:
        if instrument.minap > instrument.maxap:
            raise ValueError(f"{instrument.isin}: minap {instrument.minap} is above maxap {instrument.maxap}")
        if not 0 < instrument.mineq <= instrument.maxeq:
            raise ValueError(f"{instrument.isin}: mineq and maxeq must satisfy 0 < mineq <= maxeq")
        self.instruments[instrument.isin] = instrument
        return instrument

    def add_account(self, account: Account) -> Account:
        key = (account.broker, account.username)
        if key in self.accounts:
            raise ValueError(f"account {account.username!r} already exists at broker {account.broker!r}")
        self.accounts[key] = account
        return account

    def account(self, broker: str, username: str) -> Account | None:
        return self.accounts.get((broker, username))

    # ---- the rules ----------------------------------------------------------------------------
    def spacing_violated(self, account: Account, isin: str | None, monotonic_ns: int) -> bool:
        """Whether this attempt comes too soon after the previous one; every attempt counts, refused or not."""
        key: tuple[str, ...] = (account.broker, account.username)
        if self.rules.spacing_scope == "account_isin":
            key += (isin or "",)
        previous = self._last_attempt_ns.get(key)
        self._last_attempt_ns[key] = monotonic_ns
        return previous is not None and monotonic_ns - previous < self.rules.spacing_ms * 1_000_000

    def check_order(self, account: Account, order: OrderRequest) -> int:
        """The first failing rule's code after the timing rules (volume, price, money, minimum), or OK."""
        instrument = self.instruments.get(order.isin)
        if instrument is None:
            return UNKNOWN_INSTRUMENT
        if not instrument.mineq <= order.volume <= instrument.maxeq:
            return INVALID_VOLUME
        if not instrument.minap <= order.price <= instrument.maxap:
            return PRICE_OUT_OF_RANGE
        if order.side == BUY:
            if self.cost(order) > account.buying_power:
                return INSUFFICIENT_BALANCE
        elif order.volume > account.holdings.get(order.isin, 0):
            return INSUFFICIENT_HOLDINGS
        if order.price * order.volume < self.rules.min_order_value:
            return BELOW_MIN_VALUE
        return OK

    def cost(self, order: OrderRequest) -> int:
        """What a buy takes from buying power: price x volume plus the fee rounded half up."""
        return order.price * order.volume + fee_of(order.price, order.volume, self.rules.buy_fee)

    def accept(self, account: Account, order: OrderRequest, created_ns: int) -> Order:
        """Book an order that passed every rule: funds or shares are reserved until it is cancelled."""
        charged = 0
        if order.side == BUY:
            charged = self.cost(order)
            account.remain -= charged
        else:
            account.holdings[order.isin] = account.holdings.get(order.isin, 0) - order.volume
        serial = self._next_serial.get(account.broker, 1_000_001 + self._rng.randrange(0, 9_000_000, 1000))
        self._next_serial[account.broker] = serial + 1
        self._booked += 1
        instrument = self.instruments[order.isin]
        booked = Order(
            broker=account.broker, username=account.username, serial_number=serial,
            tracking_number=str(self._rng.randrange(10**11, 10**12)), isin=order.isin,
            symbol=instrument.symbol, side=order.side, price=order.price, volume=order.volume,
            charged=charged, created_ns=created_ns, validity=order.validity, validity_date=order.validity_date,
            row_id=self._booked, symbol_title=instrument.title,
        )
        self.orders[(account.broker, serial)] = booked
        return booked

    def cancel(self, account: Account, serial_number: int) -> int:
        order = self.orders.get((account.broker, serial_number))
        if order is None or order.username != account.username or not order.is_open:
            return ORDER_NOT_FOUND
        order.state = STATE_CANCELED
        if order.side == BUY:
            account.remain += order.charged
        else:
            account.holdings[order.isin] = account.holdings.get(order.isin, 0) + order.volume
        return OK

    def orders_of(self, account: Account, open_only: bool = False) -> list[Order]:
        return [
            o for o in self.orders.values()
            if o.broker == account.broker and o.username == account.username and (o.is_open or not open_only)
        ]


def parse_order_request(body: Any) -> OrderRequest | None:
    """The NewOrder body's fields, or None when one is missing or of the wrong type."""
    if not isinstance(body, dict):
        return None
    isin, side = body.get("isin"), body.get("side")
    price, volume = _whole(body.get("price")), _whole(body.get("volume"))
    if not isinstance(isin, str) or side not in (BUY, SELL) or isinstance(side, bool) or price is None or volume is None:
        return None
    return OrderRequest(isin=isin, side=side, price=price, volume=volume,
                        validity=body.get("validity", 1), validity_date=body.get("validityDate"))


def parse_orders_query(body: Any) -> OrdersQuery | None:
    """The GetOrders body as a query, or None when a field has the wrong type or value. Missing fields take
    the defaults (page 1 of 50, no filter); dates are Gregorian YYYY/MM/DD as ephoenix-api.md shows."""
    if not isinstance(body, dict):
        return None
    page, size = body.get("page", 1), body.get("pageSize", 50)
    side, isin, pam, states = body.get("side"), body.get("isin"), body.get("pamCode"), body.get("includeStatus") or []
    if not (_plain_int(page) and page >= 1 and _plain_int(size) and 1 <= size <= MAX_PAGE_SIZE):
        return None
    if side not in (None, BUY, SELL) or isinstance(side, bool) or not isinstance(isin, (str, type(None))) \
            or not isinstance(pam, (str, type(None))):
        return None
    if not isinstance(states, list) or not all(_plain_int(s) for s in states):
        return None
    bounds = [_slashed_date(body.get(key)) for key in ("fromDate", "toDate")]
    if any(bound is False for bound in bounds):
        return None
    return OrdersQuery(page=page, page_size=size, from_date=bounds[0] or None, to_date=bounds[1] or None,
                       side=side, isin=isin, include_status=frozenset(states), pam_code=pam)


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
