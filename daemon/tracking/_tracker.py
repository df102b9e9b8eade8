"""Following the day's accepted orders through the broker's lists after the window, one beat at a time.

Each beat reads the journal (so a restarted process takes up where the last one stopped), asks each account
with an order still open for its list of the day's orders (one request per account: it lists every order of the
day, filled and cancelled ones too) through the account's client, so the reads count in its request budget, and
writes one `fill` record per change (state or executed quantity), flushed and fsynced before the beat ends. It
only reads: nothing here places, edits or cancels an order.

A read that fails is counted (`metrics.tracker_error`), logged once per account and streak, and tried again on
the next beat; an account whose hourly request budget is low is not read that beat. At the close (the final
beat) an order that was never read or found is recorded `unknown` with the reason, and the user is told.
When tracking ends, the fill summary goes out and, once it reached a destination, a `tracked` record says so: a
process killed between the last change and the delivery sends it on restart, and one restarted after it does not
tell those accounts again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import date, tzinfo
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from daemon import metrics
from daemon.clock import Clock
from daemon.errors import BrokerError, ConfigError
from daemon.firing import Journal, ReportRow, summarize
from daemon.logs import get_logger, scrub
from daemon.platforms import BrokerOrder, Codec, RequestBudget
from daemon.tracking._reading import FINAL, Reading, changed, find_ours, read_fill

log = get_logger("tracking")
READ_ERRORS = (BrokerError, ConfigError, OSError, TimeoutError, aiohttp.ClientError)
NOT_LISTED = "not in the broker's list of the day's orders"


class OrderLists(Protocol):
    """What the tracker needs of an account's client (daemon.client.BrokerClient has it)."""

    account: Any  # has `name`
    codec: Codec

    @property
    def broker(self) -> str: ...

    @property
    def requests(self) -> RequestBudget | None: ...

    async def today_orders(self, day: date) -> list[BrokerOrder]: ...


class Told(Protocol):
    """What the tracker tells the user (daemon.notify.Notifications has it)."""

    def fill_summary(self, day: date, rows: Sequence[ReportRow]) -> None: ...

    def unknown_fills(self, day: date, rows: Sequence[ReportRow]) -> None: ...

    async def delivered(self, event: str) -> bool: ...


class Tracker:
    def __init__(
        self,
        state_dir: Path,
        day: date,
        tz: tzinfo,
        clock: Clock,
        clients: Callable[[], Sequence[OrderLists]],
        *,
        notify: Told | None = None,
        budget_floor: int = 10,
    ) -> None:
        self.day = day
        self.tz = tz
        self.clock = clock
        self.journal = Journal(state_dir, day)
        self._clients = clients
        self._notify = notify
        self._floor = budget_floor
        self._failing: dict[str, str] = {}  # account -> why its reads fail, for the streak's one log line
        self.reads: dict[str, int] = {}  # account -> lists read by this tracker
        self.ended = False

    def rows(self) -> list[ReportRow]:
        """The day's report rows as the journal (and what is queued for it) has them now."""
        return summarize(self.journal.records())

    async def beat(self, final: bool = False) -> bool:
        """One read of every account with an order still followed; True once nothing is left to follow (every
        order filled, cancelled or unknown) or after the `final` beat (the close)."""
        if self.ended:
            return True
        clients = {c.account.name: c for c in self._clients()}
        followed = [r for r in self.rows() if r.accepted and r.account in clients and r.fill_state not in FINAL]
        if not followed:  # ended earlier; a process killed before its summary went out owes it still
            self.ended = True
            await self._finish(clients, final, [])
            return True
        by_account: dict[str, list[ReportRow]] = {}
        for row in followed:
            by_account.setdefault(row.account, []).append(row)
        names = list(by_account)
        lists = await asyncio.gather(*(self._read(clients[name]) for name in names))
        left: list[ReportRow] = []
        unknown: list[ReportRow] = []
        changes: list[dict[str, Any]] = []
        for name, (orders, why) in zip(names, lists):
            client = clients[name]
            for row in by_account[name]:
                order = find_ours(orders, row, client.codec.find_order, self.tz) if orders is not None else None
                if order is None:
                    if final and row.fill_state is None:
                        self._record_unknown(row, client.broker, why or NOT_LISTED)
                        unknown.append(row)
                    elif not final:
                        left.append(row)
                    continue
                reading = read_fill(order, row.volume)
                metrics.fill_seen(name, row.isin, reading.executed, reading.fill_value or 0.0)
                if changed(row, reading):
                    changes.append(self._record(row, client.broker, order, reading))
                if reading.state not in FINAL and not final:
                    left.append(row)
        written = await self.journal.flush(durable=True)
        for fields in changes:  # logged once on disk (a kill before the fsync loses the change and its line alike)
            log.info("tracking.change", written=written, **fields)
        if left:
            return False
        self.ended = True
        await self._finish(clients, final, unknown)
        return True

    async def _finish(self, clients: Mapping[str, OrderLists], final: bool, unknown: list[ReportRow]) -> None:
        """The day's end of tracking for these accounts' accepted orders: logged, the user told of the accounts not
        told yet today, and, once the summary reached a destination, a `tracked` record, so a restart neither tells
        an account twice nor, killed before the summary went out, forgets to."""
        records = self.journal.records()
        told = {str(a) for r in records if r.get("kind") == "tracked" and isinstance(r.get("accounts"), list)
                for a in r["accounts"]}  # fmt: skip
        mine = [r for r in summarize(records) if r.accepted and r.account in clients and r.account not in told]
        if not mine:
            return
        log.info(
            "tracking.done",
            day=self.day.isoformat(),
            at_close=final,
            orders=len(mine),
            filled=sum(r.fill_state == "filled" for r in mine),
            shares=sum(r.executed or 0 for r in mine),
            rial=round(sum(r.fill_value or 0 for r in mine)),
        )
        if self._notify is not None:
            if unknown:
                self._notify.unknown_fills(self.day, [r for r in mine if r.key in {u.key for u in unknown}])
            self._notify.fill_summary(self.day, mine)
            if not await self._notify.delivered("fill_summary"):
                log.warning("tracking.summary_unsent", day=self.day.isoformat(), consequence="a restart today sends it")
                return
        self.journal.record("tracked", accounts=sorted({r.account for r in mine}), at_close=final)
        if not await self.journal.flush(durable=True):
            log.warning("tracking.record_unwritten", path=str(self.journal.path), consequence="a restart tells again")

    async def _read(self, client: OrderLists) -> tuple[list[BrokerOrder] | None, str | None]:
        """The account's orders of the day, or (None, why) when they could not be read this beat."""
        name = client.account.name
        budget = client.requests
        if budget is not None and (budget.left() or 0) < self._floor:
            why = "the broker's hourly request cap left no room to read its orders"
            self._streak(name, client.broker, why, "tracking.skipped", budget.summary())
            return None, why
        try:
            orders = await client.today_orders(self.day)
        except READ_ERRORS as exc:
            metrics.tracker_error(name, client.broker)
            why = scrub(str(exc)) or type(exc).__name__
            self._streak(name, client.broker, why, "tracking.read_failed", {})
            return None, f"its orders could not be read ({why})"
        self.reads[name] = self.reads.get(name, 0) + 1
        if self._failing.pop(name, None) is not None:
            log.info("tracking.read_recovered", account=name, broker=client.broker)
        return orders, None

    def _streak(self, name: str, broker: str, why: str, event: str, more: Mapping[str, Any]) -> None:
        if name not in self._failing:
            log.warning(event, account=name, broker=broker, reason=why, consequence="tried again next beat", **more)
        self._failing[name] = why

    def _fields(self, row: ReportRow, broker: str) -> dict[str, Any]:
        return {
            "account": row.account,
            "broker": row.broker or broker,
            "isin": row.isin,
            "side": row.side,
            "serial_number": row.serial_number,
            "tracking_number": row.tracking_number,
            "volume": row.volume,
            "fill_at": self.clock.now().astimezone(self.tz).isoformat(),
        }

    def _record(self, row: ReportRow, broker: str, order: Mapping[str, Any], reading: Reading) -> dict[str, Any]:
        fields = self._fields(row, broker)
        typed = order if isinstance(order, BrokerOrder) else None
        if fields["serial_number"] is None and typed is not None:
            fields["serial_number"] = typed.serial
        if fields["tracking_number"] is None and typed is not None:
            fields["tracking_number"] = typed.tracking
        self.journal.record(
            "fill",
            **fields,
            executed=reading.executed,
            average_price=reading.average_price,
            fill_value=reading.fill_value,
            fill_state=reading.state,
        )
        return {
            "account": row.account,
            "isin": row.isin,
            "side": row.side,
            "was": row.fill_state,
            "now": reading.state,
            "executed": reading.executed,
            "volume": row.volume,
        }

    def _record_unknown(self, row: ReportRow, broker: str, why: str) -> None:
        self.journal.record("fill", **self._fields(row, broker), fill_state="unknown", reason=why)
        log.warning("tracking.unknown", account=row.account, isin=row.isin, side=row.side, reason=why)
