"""How much of an order the simulated exchange has executed at an instant: the per-instrument fill plans (a share of
the volume from some time after the open on), the fills a test marks by hand, and a cancel that stops both.

Nothing runs in the background: an order's execution is computed when a platform reads it, from the instant the
caller passes in (the simulator's clock), so a plan works the same under fake time. No clock reading here.

A plan is written `ISIN=RATIO@DELAY[:PRICE][,RATIO@DELAY[:PRICE]...]`, for example

    IRO1FOLD0001=0.6@5s            60 % of each accepted order executed 5 s after the open, at its own price
    IRO1FOLD0001=0.4@2s,1@60s      40 % at +2 s, the whole order at +1 min
    IRO1IKCO0001=1@500ms:3030      all of it at +0.5 s, at 3030 rial a share

RATIO is the share of the order's volume executed from then on (0..1, not decreasing from step to step; the
quantity is floor(volume x ratio)); DELAY is N, Ns, Nms or Nm after the open (N alone is seconds).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

_STEP = re.compile(r"^(?P<ratio>[0-9]*\.?[0-9]+)@(?P<delay>[0-9]*\.?[0-9]+)(?P<unit>ms|s|m)?(?::(?P<price>[0-9]+))?$")
_ISIN = re.compile(r"^[A-Z0-9]{12}$")
_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), None: Decimal(1)}


@dataclass(frozen=True)
class FillStep:
    """From `delay_s` after the open on, `ratio` of an order's volume is executed (in all), at `price` a share
    (None: the order's own price) for what this step adds."""

    delay_s: float
    ratio: float
    price: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delay_s) and self.delay_s >= 0):
            raise ValueError(f"a fill's delay must be 0 s or more, not {self.delay_s}")
        if not (math.isfinite(self.ratio) and 0 <= self.ratio <= 1):
            raise ValueError(f"a fill ratio must be between 0 and 1, not {self.ratio}")
        if self.price is not None and (isinstance(self.price, bool) or self.price <= 0):
            raise ValueError(f"a fill price must be a positive number of rial, not {self.price}")

    def quantity(self, volume: int) -> int:
        """floor(volume x ratio), exactly (0.6 x 1000 is 600, never 599)."""
        return int((Decimal(volume) * Decimal(repr(self.ratio))).to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True)
class FillPlan:
    """One instrument's steps, by delay; a later step never executes less than an earlier one."""

    steps: tuple[FillStep, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a fill plan needs at least one step")
        ordered = sorted(self.steps, key=lambda s: s.delay_s)
        if any(b.ratio < a.ratio for a, b in zip(ordered, ordered[1:], strict=False)):
            raise ValueError("a fill plan's ratios must not decrease as the delays grow")
        object.__setattr__(self, "steps", tuple(ordered))

    @classmethod
    def of(cls, ratio: float, delay_s: float, price: int | None = None) -> FillPlan:
        return cls((FillStep(delay_s, ratio, price),))


@dataclass(frozen=True)
class Mark:
    """A fill marked by hand: from `at_ns` (simulator clock) on, `quantity` of the order executed in all."""

    at_ns: int
    quantity: int
    price: int


@dataclass(frozen=True)
class Trade:
    quantity: int
    price: int
    at_ns: int


@dataclass(frozen=True)
class Execution:
    """What an order has traded by some instant: its trades, oldest first."""

    trades: tuple[Trade, ...] = ()

    @property
    def quantity(self) -> int:
        return sum(t.quantity for t in self.trades)

    @property
    def value(self) -> int:
        """Rial traded, gross: the sum of quantity x price over the trades."""
        return sum(t.quantity * t.price for t in self.trades)

    @property
    def average_price(self) -> Decimal | None:
        """Rial per share over what was executed; None when nothing was."""
        quantity = self.quantity
        return Decimal(self.value) / quantity if quantity else None

    @property
    def last_ns(self) -> int | None:
        return self.trades[-1].at_ns if self.trades else None


def execution(
    volume: int,
    price: int,
    start_ns: int,
    plan: FillPlan | None,
    marks: Iterable[Mark],
    until_ns: int,
) -> Execution:
    """The trades of an order of `volume` at `price` up to `until_ns` (now, or its cancel if sooner): the plan's
    steps counted from `start_ns` (the open) and the marks, in time order, each adding what it executes beyond the
    quantity already traded."""
    events: list[tuple[int, int, int]] = []
    if plan is not None:
        for step in plan.steps:
            at = start_ns + round(Decimal(repr(step.delay_s)) * 10**9)
            events.append((at, step.quantity(volume), step.price or price))
    events.extend((m.at_ns, m.quantity, m.price) for m in marks)
    done, trades = 0, []
    for at, quantity, at_price in sorted(events, key=lambda e: e[0]):
        if at > until_ns:
            break
        if quantity > done:
            trades.append(Trade(quantity - done, at_price, at))
            done = quantity
    return Execution(tuple(trades))


def parse_fill(text: str) -> tuple[str, FillPlan]:
    """`ISIN=RATIO@DELAY[:PRICE],...` as (ISIN, plan); a ValueError's message says what to fix in one sentence."""
    isin, sep, tail = text.strip().partition("=")
    isin = isin.strip()
    example = "IRO1FOLD0001=0.6@5s or IRO1FOLD0001=0.4@2s,1@60s:5570"
    if not sep or not _ISIN.match(isin) or not tail.strip():
        raise ValueError(f"fill {text!r} is not ISIN=RATIO@DELAY[:PRICE][,...], e.g. {example}")
    steps = []
    for part in tail.split(","):
        found = _STEP.match(part.strip())
        if not found:
            raise ValueError(
                f"fill {text!r}: step {part.strip()!r} is not RATIO@DELAY[:PRICE] (DELAY in s, ms or m), e.g. {example}"
            )
        try:
            delay = Decimal(found["delay"]) * _UNITS[found["unit"]]
            ratio = float(Decimal(found["ratio"]))
        except InvalidOperation:
            raise ValueError(f"fill {text!r}: step {part.strip()!r} has no number where one belongs") from None
        price = int(found["price"]) if found["price"] else None
        try:
            steps.append(FillStep(float(delay), ratio, price))
        except ValueError as exc:
            raise ValueError(f"fill {text!r}: {exc}") from None
    try:
        return isin, FillPlan(tuple(steps))
    except ValueError as exc:
        raise ValueError(f"fill {text!r}: {exc}") from None
