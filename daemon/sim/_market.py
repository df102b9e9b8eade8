"""The shared market every simulated platform trades in: instruments, accounts, buying power, orders, and
the rules an order must pass.

No HTTP, no platform's codes or JSON, and no clock reading here: callers pass the instants in, so every
rule is a plain function of its inputs and can be tested without a server. A platform module turns a
`Refusal` into its own code and a model into its own JSON. Money is in rial, as integers and Decimals,
never floats.

What an order has executed is read at an instant (`execution(order, now_ns, open_ns)`): the instrument's fill plan
(`_fills`) and the fills marked by hand, up to the order's cancel. Every platform's rows show it in their own fields.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from daemon.sim._fills import Execution, FillPlan, Mark, execution

BUY, SELL = 1, 2
TEHRAN = ZoneInfo("Asia/Tehran")  # the brokers' own zone: an order's day is Tehran's

OrderState = Literal["open", "cancelled"]  # what executed is read at an instant (Market.execution), not a state
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
    cancelled_ns: int | None = None  # simulator clock: nothing executes after it

    @property
    def is_open(self) -> bool:
        """Not cancelled; whether it is still in the book also depends on what executed (`Market.is_live`)."""
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

    def __init__(
        self,
        rules: OrderRules | None = None,
        rng: random.Random | None = None,
        fill_plans: Callable[[], Mapping[str, FillPlan]] | None = None,
    ) -> None:
        self.rules = rules or OrderRules()
        self._plans = fill_plans or dict
        self._marks: dict[tuple[str, int], list[Mark]] = {}
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

    def cancel(self, account: Account, serial_number: int, now_ns: int, open_ns: int | None = None) -> bool:
        """Cancel the account's order `serial_number` that still has something left at `now_ns` and free what the
        unexecuted rest reserved; False when there is no such order."""
        order = self.orders.get((account.broker, serial_number))
        if order is None or order.username != account.username or not self.is_live(order, now_ns, open_ns):
            return False
        self.end(order, now_ns, open_ns)
        return True

    def end(self, order: Order, now_ns: int, open_ns: int | None = None) -> Execution:
        """The broker ends `order` at `now_ns` (a cancel, an expiry, a rejection after booking): what executed by then
        stays, nothing more executes, and the rest's reservation is freed. Ending an ended order changes nothing."""
        done = self.execution(order, now_ns, open_ns)
        if order.state == CANCELLED:
            return done
        order.state, order.cancelled_ns = CANCELLED, now_ns
        rest = order.volume - done.quantity
        account = self.accounts[(order.broker, order.username)]
        if order.side == BUY:  # the executed part stays spent; the rest's cost with its fee comes back
            account.remain += (
                order.charged if rest == order.volume else self.cost(OrderRequest(order.isin, BUY, order.price, rest))
            )
        else:
            account.holdings[order.isin] = account.holdings.get(order.isin, 0) + rest
        return done

    # ---- executions ---------------------------------------------------------------------------
    def execution(self, order: Order, now_ns: int, open_ns: int | None = None) -> Execution:
        """What `order` has executed by `now_ns`: its instrument's plan counted from the open (`open_ns`; None: the
        market was open already, so from the order's own booking) and the marked fills, up to its cancel."""
        start = open_ns if open_ns is not None else order.created_ns
        until = now_ns if order.cancelled_ns is None else min(now_ns, order.cancelled_ns)
        marks = self._marks.get((order.broker, order.serial_number), ())
        return execution(order.volume, order.price, start, self._plans().get(order.isin), marks, until)

    def is_live(self, order: Order, now_ns: int, open_ns: int | None = None) -> bool:
        """Still in the book at `now_ns`: not cancelled and not fully executed."""
        return order.is_open and self.execution(order, now_ns, open_ns).quantity < order.volume

    def mark_fill(self, order: Order, now_ns: int, quantity: int | None = None, price: int | None = None) -> Mark:
        """From `now_ns` on, `quantity` of `order` (all of it by default) executed in all, what this adds at `price`
        (the order's own by default); a ValueError for a quantity that does not fit or an ended order."""
        qty = order.volume if quantity is None else quantity
        if isinstance(qty, bool) or not 0 < qty <= order.volume:
            raise ValueError(f"a fill of {qty} does not fit an order of {order.volume}")
        if price is not None and (isinstance(price, bool) or price <= 0):
            raise ValueError(f"a fill price must be a positive number of rial, not {price}")
        if order.cancelled_ns is not None and now_ns >= order.cancelled_ns:
            raise ValueError(f"order {order.serial_number} was cancelled: nothing executes after that")
        mark = Mark(now_ns, qty, order.price if price is None else price)
        self._marks.setdefault((order.broker, order.serial_number), []).append(mark)
        return mark

    def orders_of(self, account: Account) -> list[Order]:
        """Every order of the account, in any state."""
        return [o for o in self.orders.values() if o.broker == account.broker and o.username == account.username]

    def live_orders_of(self, account: Account, now_ns: int, open_ns: int | None = None) -> list[Order]:
        """The account's orders still in the book at `now_ns` (open lists)."""
        return [o for o in self.orders_of(account) if self.is_live(o, now_ns, open_ns)]
