"""Latency and failure injection for the simulator, per route and optionally per broker.

A fault is written `ROUTE[@BROKER]:OPTION[,OPTION...]`, for example

    new_order:delay_ms=20,jitter_ms=5     every NewOrder answered 20-25 ms late
    captcha@gs:no_image,rate=0.3          30 % of gs captchas come without an image (throttling)
    login:status=503,rate=0.1             10 % of logins get HTTP 503
    tradingbook:html                      an HTML error page (502) instead of JSON
    new_order:drop,after                  the order is booked, then the connection closes unanswered

ROUTE is a route of a registered platform (`_platform.route_names()`; Ephoenix's are captcha, login,
tradingbook, instruments, calc, new_order, open_orders, orders, cancel, holdings; Exir adds bootstrap, stockinfo,
buyingpower, wages, rlc_prices, rlc_all; Online+ adds login_page, remain) or `*`. Options: `delay_ms=N`,
`jitter_ms=N` (a random 0..N added), `rate=P` (0..1, how often the failure happens; default 1), one failure
kind (`status=N`, `html`, `malformed`, `truncated`, `drop`, `no_image`; `html` may take a `status=N` too), and
`after` (the request is processed first and its answer replaced, as when a reply is lost on the way back).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from daemon.sim._platform import route_names

KINDS = ("status", "html", "malformed", "truncated", "drop", "no_image")
_FLAGS = ("html", "malformed", "truncated", "drop", "no_image", "after")
_HEAD = re.compile(r"^(?P<route>\*|[a-z_]+)(?:@(?P<broker>[a-z0-9]+))?$")


@dataclass(frozen=True)
class Fault:
    route: str = "*"
    broker: str | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    kind: str | None = None
    status: int | None = None
    rate: float = 1.0
    after: bool = False

    def matches(self, route: str | None, broker: str | None) -> bool:
        return (self.route == "*" or self.route == route) and (self.broker is None or self.broker == broker)

    def applies_to(self, route: str | None) -> bool:
        """A captcha-only kind (no_image) leaves other routes alone even under `*`."""
        return self.kind != "no_image" or route == "captcha"

    @property
    def label(self) -> str:
        return self.kind or "delay"


def parse_fault(text: str) -> Fault:
    """`ROUTE[@BROKER]:OPTION,...` as a Fault; a ValueError's message says what is wrong in one sentence."""
    head, sep, tail = text.strip().partition(":")
    match = _HEAD.match(head)
    if not match or not sep or not tail:
        raise ValueError(f"fault {text!r} is not ROUTE[@BROKER]:OPTION[,OPTION...], e.g. new_order:delay_ms=20")
    route, broker = match["route"], match["broker"]
    routes = route_names()
    if route != "*" and route not in routes:
        raise ValueError(f"fault {text!r} names route {route!r}; use one of {', '.join(routes)} or *")
    values: dict[str, object] = {"route": route, "broker": broker}
    for option in tail.split(","):
        name, eq, raw = option.strip().partition("=")
        if not eq:
            if name not in _FLAGS:
                raise ValueError(
                    f"fault {text!r}: {name!r} is not an option; use delay_ms=, jitter_ms=, rate=, "
                    f"status=, {', '.join(_FLAGS)}"
                )
            if name == "after":
                values["after"] = True
            else:
                _set_kind(values, name, text)
            continue
        values[name] = _number(name, raw, text)
        if name == "status":
            if values.get("kind") not in (None, "html"):
                raise ValueError(f"fault {text!r}: status= goes alone or with html")
            values.setdefault("kind", "status")
    return _checked(values, text)


def _set_kind(values: dict[str, object], kind: str, text: str) -> None:
    current = values.get("kind")
    if current == "status" and kind == "html":
        values["kind"] = "html"
        return
    if current is not None:
        raise ValueError(f"fault {text!r} names two failure kinds ({current} and {kind}); give one per fault")
    values["kind"] = kind


def _number(name: str, raw: str, text: str) -> float | int:
    if name not in ("delay_ms", "jitter_ms", "rate", "status"):
        raise ValueError(f"fault {text!r}: {name!r} is not an option; use delay_ms=, jitter_ms=, rate= or status=")
    try:
        value = int(raw) if name == "status" else float(raw)
    except ValueError:
        raise ValueError(f"fault {text!r}: {name}={raw!r} is not a number") from None
    if name == "status" and not 400 <= value <= 599:
        raise ValueError(f"fault {text!r}: status={value} is not an HTTP error status (400-599)")
    if name == "rate" and not 0 <= value <= 1:
        raise ValueError(f"fault {text!r}: rate={raw} is not between 0 and 1")
    if name in ("delay_ms", "jitter_ms") and value < 0:
        raise ValueError(f"fault {text!r}: {name} cannot be negative")
    return value


def _checked(values: dict[str, object], text: str) -> Fault:
    fault = Fault(**values)  # type: ignore[arg-type]
    if fault.kind is None and not (fault.delay_ms or fault.jitter_ms):
        raise ValueError(f"fault {text!r} sets neither a delay nor a failure kind")
    if fault.kind == "no_image" and fault.route not in ("captcha", "*"):
        raise ValueError(f"fault {text!r}: no_image only applies to the captcha route")
    if fault.kind == "html" and fault.status is None:
        fault = Fault(**{**values, "status": 502})  # type: ignore[arg-type]
    if fault.kind == "drop" and fault.status is not None:
        raise ValueError(f"fault {text!r}: drop sends no status")
    return fault


class FaultPlan:
    """The faults in force; changed at run time by tests and read on every request.

    Each fault draws from its own random stream, seeded from `seed`, its place in the order of adding and
    its text. So with a seed the n-th request a fault meets draws the same way in every run, whatever other
    traffic (captchas, other routes, other faults) came in between; without one the draws are fresh.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._faults: list[tuple[Fault, random.Random]] = []
        self._seed = seed
        self._added = 0

    def add(self, fault: Fault | str) -> Fault:
        fault = parse_fault(fault) if isinstance(fault, str) else fault
        stream = random.Random(f"{self._seed}/{self._added}/{fault}") if self._seed is not None else random.Random()
        self._added += 1
        self._faults.append((fault, stream))
        return fault

    def clear(self, route: str | None = None) -> None:
        self._faults = [(f, rng) for f, rng in self._faults if route is not None and f.route != route]

    @property
    def faults(self) -> tuple[Fault, ...]:
        return tuple(f for f, _ in self._faults)

    def for_request(self, route: str | None, broker: str | None) -> tuple[float, Fault | None]:
        """The delay (seconds) and the failure, if any, that this request meets (the first fault whose draw
        hits; every matching fault draws, so one fault's stream never depends on another's luck)."""
        delay_ms = 0.0
        failure: Fault | None = None
        for fault, rng in self._faults:
            if not fault.matches(route, broker) or not fault.applies_to(route):
                continue
            delay_ms += fault.delay_ms + (rng.uniform(0, fault.jitter_ms) if fault.jitter_ms else 0.0)
            hit = fault.kind is not None and rng.random() < fault.rate
            if failure is None and hit:
                failure = fault
        return delay_ms / 1000, failure
