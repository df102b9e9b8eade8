"""The shared market every simulated platform trades in: instruments, accounts, buying power, orders, and
the rules an order must pass.

No HTTP, no platform's codes or JSON, and no clock reading here: callers pass the instants in, so every
rule is a plain function of its inputs and can be tested without a server. A platform module turns a
`Refusal` into its own code and a model into its own JSON. Money is in rial, as integers and Decimals,
never floats.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

BUY, SELL = 1, 2
TEHRAN = ZoneInfo("Asia/Tehran")  # the brokers' own zone: an order's day is Tehran's

OrderState = Literal["open", "cancelled"]  # nothing is ever filled in the simulator
OPEN: OrderState = "open"
CANCELLED: OrderState = "cancelled"
SpacingScope = Literal["account", "account_isin"]


class Refusal(enum.Enum):
    """Why the market refuses an order, before a platform names it in its own code."""

    UNKNOWN_INSTRUMENT = "unknown instrument"
    VOLUME = "volume outside [mineq, maxeq]"
    PRICE = "price outside [minap, maxap]"
    BALANCE = "cost above buying power"
    HOLDINGS = "more shares than held"
    MIN_VALUE = "value below the minimum"


@dataclass
class BookLevel:
    """One row of the order book: best buy and sell price, volume and order count."""

    buy_price: int
    buy_volume: int
    buy_count: int
    sell_price: int = 0
    sell_volume: int = 0
    sell_count: int = 0


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


@dataclass
class Account:
    broker: str
    username: str
    password: str = field(repr=False)
    remain: int
    credit: int = 0
    holdings: dict[str, int] = field(default_factory=dict)
    holdings_error: str | None = None  # when set, the holdings call answers an error with this message
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
    state: OrderState = OPEN
    row_id: int = 0  # the order's place in the simulator's book, from 1
    symbol_title: str = ""

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    @property
    def day(self) -> date:
        """The Tehran day the order was placed on, which order histories select by."""
        return created_at(self.created_ns).date()


def created_at(created_ns: int) -> datetime:
    """An order's simulator-clock instant (epoch ns) as Tehran time, to the microsecond."""
    seconds, ns = divmod(created_ns, 10**9)
    return datetime.fromtimestamp(seconds, TEHRAN).replace(microsecond=ns // 1000)


def round_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fee_of(price: int, volume: int, fee_rate: Decimal) -> int:
    return round_half_up(Decimal(price) * volume * fee_rate)


@dataclass
class OrderRules:
    """The knobs of the order checks; a live object, so a test or the CLI can change them while running."""

    buy_fee: Decimal = Decimal("0.003712")
    sell_fee: Decimal = Decimal("0.0088")
    spacing_ms: float = 300.0
    spacing_scope: SpacingScope = "account"
    min_order_value: int = 5_000_000

    def fee_rate(self, side: int) -> Decimal:
        return self.buy_fee if side == BUY else self.sell_fee


@dataclass(frozen=True)
class OrderRequest:
    """An order as a platform parsed it from its request, checked for shape only (the rules come later)."""

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

    def check_order(self, account: Account, order: OrderRequest) -> Refusal | None:
        """The first failing rule after the timing rules (instrument, volume, price, money, minimum), or None.

        A platform names the refusal in its own codes; the order of the checks is the market's.
        """
        instrument = self.instruments.get(order.isin)
        if instrument is None:
            return Refusal.UNKNOWN_INSTRUMENT
        if not instrument.mineq <= order.volume <= instrument.maxeq:
            return Refusal.VOLUME
        if not instrument.minap <= order.price <= instrument.maxap:
            return Refusal.PRICE
        if order.side == BUY:
            if self.cost(order) > account.buying_power:
                return Refusal.BALANCE
        elif order.volume > account.holdings.get(order.isin, 0):
            return Refusal.HOLDINGS
        if order.price * order.volume < self.rules.min_order_value:
            return Refusal.MIN_VALUE
        return None

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
            broker=account.broker,
            username=account.username,
            serial_number=serial,
            tracking_number=str(self._rng.randrange(10**11, 10**12)),
            isin=order.isin,
            symbol=instrument.symbol,
            side=order.side,
            price=order.price,
            volume=order.volume,
            charged=charged,
            created_ns=created_ns,
            validity=order.validity,
            validity_date=order.validity_date,
            row_id=self._booked,
            symbol_title=instrument.title,
        )
        self.orders[(account.broker, serial)] = booked
        return booked

    def cancel(self, account: Account, serial_number: int) -> bool:
        """Cancel the account's open order `serial_number` and free what it reserved; False when there is none."""
        order = self.orders.get((account.broker, serial_number))
        if order is None or order.username != account.username or not order.is_open:
            return False
        order.state = CANCELLED
        if order.side == BUY:
            account.remain += order.charged
        else:
            account.holdings[order.isin] = account.holdings.get(order.isin, 0) + order.volume
        return True

    def orders_of(self, account: Account, open_only: bool = False) -> list[Order]:
        return [
            o
            for o in self.orders.values()
            if o.broker == account.broker and o.username == account.username and (o.is_open or not open_only)
        ]
