"""The simulated broker's books: instruments, accounts, orders, and the rules an order must pass.

No HTTP and no clock reading here: callers pass the instants in, so every rule is a plain function of
its inputs and can be tested without a server. Money is in rial, as integers and Decimals, never floats.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, Literal

BUY, SELL = 1, 2

# Order states (the API numbers them 1-11): 2 = registered and open, 4 = cancelled.
STATE_ADDED = 2
STATE_CANCELED = 4

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
        booked = Order(
            broker=account.broker, username=account.username, serial_number=serial,
            tracking_number=str(self._rng.randrange(10**11, 10**12)), isin=order.isin,
            symbol=self.instruments[order.isin].symbol, side=order.side, price=order.price, volume=order.volume,
            charged=charged, created_ns=created_ns, validity=order.validity, validity_date=order.validity_date,
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
