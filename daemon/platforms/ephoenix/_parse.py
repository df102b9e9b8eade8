"""Ephoenix's answers read into the project's models (pure, so each broker quirk is tested without a network)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from daemon.errors import BrokerError, BrokerUnavailable, OrderRejected
from daemon.platforms._models import BrokerOrder, BuyingPower, Holding, Instrument, finite
from daemon.sizing import Limits

BROKER_ZONE = ZoneInfo("Asia/Tehran")  # where a broker's times without an offset are wall-clock times
SIDE_NAMES = {1: "buy", 2: "sell"}
STATE_CANCELLED = 4
"""The order state read as "the broker ended it" (ephoenix-api.md numbers states 1-11 and names only 3, fully
executed); `isDone` true with something left reads the same (README, "Ephoenix fills")."""


def error_code(body: Any) -> int | None:
    """The answer's `errorCode` as int (None when absent or not a number): the one reader of it."""
    return int_or_none(body.get("errorCode")) if isinstance(body, dict) else None


def failed(body: Any) -> bool:
    """Whether an answer says it failed: a non-zero error code, or isSuccess false."""
    return isinstance(body, dict) and (error_code(body) not in (None, 0) or body.get("isSuccess") is False)


def error_message(body: Any) -> str:
    return str(body.get("errorMessage") or body.get("message") or "") if isinstance(body, dict) else ""


def raise_for_error_code(body: Any) -> None:
    """Any answer with a non-zero error code (or isSuccess false) is a rejection; key on the code, not the text."""
    if failed(body):
        code = error_code(body)
        raise OrderRejected(code if code is not None else -1, error_message(body))


def parse_buying_power(body: Any, broker: str) -> BuyingPower:
    amount = finite(body.get("buyingPower")) if isinstance(body, dict) else None
    if amount is None:
        raise BrokerUnavailable(f"broker {broker}: the trading book has no usable buyingPower.")
    return BuyingPower(amount, body.get("remain"), body.get("credit"), body.get("timestamp"))


def parse_instrument(body: Any, isin: str) -> Instrument:
    items = (
        body
        if isinstance(body, list)
        else (body.get("result") or body.get("data") or body.get("instruments") or [body])
        if isinstance(body, dict)
        else []
    )
    for item in items if isinstance(items, list) else [items]:
        if not isinstance(item, dict):
            continue
        info, today = item.get("i") or {}, item.get("t") or {}
        if (item.get("isin") or info.get("isin") or isin) != isin:
            continue
        try:
            limits = Limits(int(info["mineq"]), int(info["maxeq"]), int(today["minap"]), int(today["maxap"]))
        except (KeyError, TypeError, ValueError):
            continue
        last = int_or_none(today.get("cup"))
        return Instrument(isin, str(info.get("s", "")), str(info.get("t", "")), limits, last)
    raise BrokerUnavailable(f"market data: no usable limits for {isin} in the answer.")


def parse_holdings(body: Any, isin: str, broker: str) -> int:
    if isinstance(body, dict) and body.get("isError"):
        raise BrokerError(
            f"broker {broker}: holdings refused: {body.get('message') or body.get('errorMessage') or 'no reason given'}"
        )
    rows = body
    if isinstance(body, dict):
        rows = body.get("result") or body.get("data") or body.get("positions") or []
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and (row.get("isin") or row.get("ISIN")) == isin:
            try:
                return max(int(float(row.get("remainVolume") or 0)), 0)
            except (TypeError, ValueError):
                raise BrokerUnavailable(f"broker {broker}: holdings for {isin} have no number.") from None
    return 0


def parse_holding(body: Any, isin: str, broker: str) -> Holding:
    return Holding(isin, parse_holdings(body, isin, broker))


def list_of_orders(body: Any, broker: str, path: str) -> list[dict[str, Any]]:
    """The rows of an open-orders answer: a list, or one under result/data/orders/rows; anything else raises."""
    rows = body if isinstance(body, list) else None
    if isinstance(body, dict):
        rows = next(
            (body[key] for key in ("result", "data", "orders", "rows") if isinstance(body.get(key), list)), None
        )
    if rows is None or not all(isinstance(row, dict) for row in rows):
        raise BrokerUnavailable(f"broker {broker}: {path} answered something that is not a list of orders.")
    return rows


def orders_page(body: Any, broker: str, path: str) -> tuple[list[dict[str, Any]], int | None]:
    """A GetOrders page: its rows and `totalRecords` (None when missing or not a count); garbage raises."""
    if isinstance(body, dict) and "rows" not in body and isinstance(body.get("result"), dict):
        body = body["result"]
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise BrokerUnavailable(f"broker {broker}: {path} answered something that is not a page of orders.")
    total = whole_or_none(body.get("totalRecords"))
    return rows, total if total is not None and total >= 0 else None


def normalise_order(row: dict[str, Any]) -> dict[str, Any]:
    """An order row from GetOpenOrders or GetOrders with the keys the executor reads, typed alike for both.

    The row's own fields stay; these are replaced or added: `isin` (str or None), `side` (1 buy, 2 sell or
    None; GetOrders calls it `orderSide`), `serialNumber`, `price`, `volume`, `executedVolume`, `state` (int
    or None), `trackingNumber` (str or None), `createdAt` (the broker's own text: `created` in GetOrders) and
    `created`: an aware datetime, or None when the broker's time cannot be read (see `broker_time`).
    """
    created = next((row[key] for key in ("created", "createdAt") if row.get(key) is not None), None)
    side = next((row[key] for key in ("orderSide", "side") if row.get(key) is not None), None)
    return {
        **row,
        "isin": row.get("isin") if isinstance(row.get("isin"), str) else None,
        "side": side_code(side),
        "serialNumber": whole_or_none(row.get("serialNumber")),
        "trackingNumber": id_text(row.get("trackingNumber")),
        "price": whole_or_none(row.get("price")),
        "volume": whole_or_none(row.get("volume")),
        "executedVolume": whole_or_none(row.get("executedVolume")),
        "state": whole_or_none(row.get("state")),
        "createdAt": created,
        "created": broker_time(created),
    }


def broker_order(row: dict[str, Any]) -> BrokerOrder:
    """A raw order row as the project's model (a mapping over `normalise_order`'s row), with what it executed:
    `executedVolume` shares at `executedAmount / executedVolume` rial each (GetOrders only; None otherwise), and
    cancelled when its state is 4 or `isDone` is true with something left."""
    norm = normalise_order(row)
    volume, executed = norm["volume"], norm["executedVolume"]
    amount = finite(row.get("executedAmount"))
    traded = executed is not None and executed > 0
    average = amount / executed if traded and amount is not None and amount > 0 else None
    complete = volume is not None and executed is not None and executed >= volume
    ended = norm["state"] == STATE_CANCELLED or row.get("isDone") is True
    return BrokerOrder(
        isin=norm["isin"],
        side=SIDE_NAMES.get(norm["side"]),
        serial=norm["serialNumber"],
        tracking=norm["trackingNumber"],
        created=norm["created"],
        volume=norm["volume"],
        executed=norm["executedVolume"],
        price=norm["price"],
        state=norm["state"],
        row=norm,
        average_price=average,
        cancelled=ended and not complete,
    )


def broker_time(value: Any) -> datetime | None:
    """A broker's ISO time as an aware datetime: with its offset (or Z) as given, without one as Tehran wall
    time (the brokers' own zone); None for anything without a time of day or not ISO text."""
    if not isinstance(value, str) or ":" not in value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=BROKER_ZONE) if moment.tzinfo is None else moment


def order_key(order: dict[str, Any] | BrokerOrder, page: int, n: int) -> tuple[Any, ...]:
    """What tells two rows apart: the broker's row id, else the serial number, else the row's place."""
    row_id = id_text(order.get("id"))
    if row_id is not None:
        return ("id", row_id)
    if order["serialNumber"] is not None:
        return ("serial", order["serialNumber"])
    return ("place", page, n)


def id_text(value: Any) -> str | None:
    """An id the broker may send as text or as a number, as text; None when empty or of another type."""
    if isinstance(value, str):
        return value.strip() or None
    number = whole_or_none(value)
    return str(number) if number is not None else None


def side_code(value: Any) -> int | None:
    code = whole_or_none(value)
    return code if code in (1, 2) else None


def whole_or_none(value: Any) -> int | None:
    """A whole number (or its text) as int; None for a bool, a fraction or anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return int_or_none(value) if isinstance(value, (int, str)) else None


def int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
