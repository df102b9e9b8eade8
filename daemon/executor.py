"""The open: every account's order on the wire in the first milliseconds, from pre-built requests.

arm()          before the open (about a minute): plans from the warm cache, connections opened, the
               broker's clock offset measured, the journal reconciled (no order is sent twice).
final_check()  seconds before the open: buying power and holdings re-read, volumes recomputed (a plan
               whose volume is not positive is never sent), requests rebuilt, connections pinged.
               After it, nothing but NewOrder reaches the broker until the window ends.
fire()         waits for the instant on the event loop's clock with a short final spin, writes every
               account's first request in one tight loop, then each first answer is read in its
               connection's callback (one shared timer for the deadlines); an order it does not end gets
               a task that resends after 1017/1018 no closer than the account's spacing, until it is
               accepted, a terminal answer comes, the attempts run out or the window closes.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import ssl
import statistics
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from functools import partial
from typing import Any, Literal

from daemon import metrics
from daemon.account import no_retries
from daemon.client import BrokerClient
from daemon.clock import Clock
from daemon.config import AccountSettings, ExecutorSettings
from daemon.errors import BrokerError, ConfigError, RateLimited
from daemon.firing import (
    Answer,
    FirePlan,
    Journal,
    JournaledDraft,
    Lookup,
    Presence,
    ReportRow,
    Verdict,
    assign_slots,
    firing_order,
    journaled_drafts,
    look_up,
    resume_action,
    summarize,
)
from daemon.logs import get_logger, scrub
from daemon.net import (
    AnswerWatch,
    ClockReference,
    ClockSyncError,
    OffsetEstimate,
    Origin,
    RealtimeWindow,
    WireConnection,
    WireError,
    WireResponse,
    WireTimeout,
    estimate_from_date,
    estimate_from_timestamps,
    fire_all,
    measure_ntp_offset,
    monotonic_deadline_ns,
    sample_date_ticks,
    sample_readings,
    tls_context,
    wait_until_monotonic,
    wire_probe,
)
from daemon.platforms import Codec, RequestBudget, SignedRequest, order_origin, order_spacing_ms

log = get_logger("executor")
OutcomeState = Literal["accepted", "rejected", "not placed", "unknown"]
SEND, ENDED = "send", "ended"
Settled = Answer | Literal["send", "ended"]
"""What settling a lost answer found: send it (the broker shows none), it ended here, or its late answer."""
NS = 1_000_000_000
PROBE_CONNECTIONS = 4
FINAL_CHECK_MARGIN_NS = 200_000_000  # the final check ends at least this long before the first send


@dataclass(frozen=True, slots=True)
class BrokerClock:
    """The broker's clock against ours and the round trip to it, measured at arm time."""

    estimate: OffsetEstimate
    rtt_ns: int

    def lead_ns(self, settings: ExecutorSettings) -> int:
        """How long before the open to send so the order lands at the open, never before it."""
        if settings.lead_ms != "auto":
            return int(float(settings.lead_ms) * 1e6)
        return max(0, self.rtt_ns // 2 - int(self.estimate.uncertainty_s * NS))


@dataclass(frozen=True, slots=True)
class Skipped:
    """An order an arm did not plan: `done` when it ended earlier today, else it is not ready, and why."""

    account: str
    isin: str
    side: str
    reason: str
    done: bool = False


class Executor:
    """One open for some accounts. It takes what it uses: a client per account (whose platform codec builds
    every request and reads every answer), the executor settings, the clock, the exchange's zone, the
    window's length and the CA bundle; `from_wiring` builds one from the service container."""

    def __init__(
        self,
        journal: Journal,
        *,
        clients: Callable[[AccountSettings], BrokerClient],
        settings: ExecutorSettings,
        clock: Clock,
        tz: tzinfo,
        window_s: float,
        ca_bundle: str | None = None,
        day: date | None = None,
    ) -> None:
        self.client = clients
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.tz = tz
        self.window_s = window_s
        self.ca_bundle = ca_bundle
        self.day = day or self.clock.now().astimezone(tz).date()
        self.plans: list[FirePlan] = []
        self.clocks: dict[str, BrokerClock] = {}
        self.reference = ClockReference.take(self.clock)
        self.open_at: datetime | None = None
        self._accounts: dict[str, AccountSettings] = {}
        self._done: set[tuple[str, str, str]] = set()
        self.skipped: list[Skipped] = []
        """Every order this arm did not plan and why, for `fire --dry-run`."""
        self._tls_context: ssl.SSLContext | None = None
        self._free_at: dict[tuple[str, ...], int] = {}
        """When each spacing scope (an account, or an account and ISIN) may send next: every send of the window
        takes its turn here, so an account's orders never refuse each other with 1018."""
        self._first_sent: set[tuple[str, str, str]] = set()
        self._by_scope: dict[tuple[str, ...], list[FirePlan]] = {}
        self.exclusive = True
        """Hold the journal's day lock from the arm (one firing process per state directory); a group's processes
        are kept apart by their leases instead."""
        self.keep: Callable[[str], bool] = lambda account: True
        """Whether an account is still this process's to fire (a group lease); asked at the final check."""
        self._budgets: dict[str, RequestBudget] = {}
        """The request budget of each account whose platform caps requests (easytrader): what the executor sends
        itself (batches, probes) is charged there too, and nothing is sent past the cap."""
        self._log: Any = log
        """The executor's logger; in the window one bound once (structlog's proxy builds a logger per call)."""
        self.realtime = RealtimeWindow(settings.realtime, settings.realtime_priority, clock)
        """SCHED_FIFO with memory locked from just before the final check to the end of the first-send loop."""

    @classmethod
    def from_wiring(cls, services: Any, journal: Journal, day: date | None = None) -> Executor:
        """An executor on a service container's clients, config and clock (what runner, fire and demo use)."""
        config = services.config
        bundle = config.client.ca_bundle
        return cls(
            journal,
            clients=services.client,
            settings=config.executor,
            clock=services.clock,
            tz=config.tz,
            window_s=config.schedule.window_s,
            ca_bundle=str(bundle) if bundle else None,
            day=day,
        )

    # ---- arm ---------------------------------------------------------------------------------------

    async def arm(self, accounts: list[AccountSettings], open_at: datetime) -> list[FirePlan]:
        """Plans, connections and clocks for an open at `open_at` (an aware time on the broker's clock)."""
        if open_at.tzinfo is None:
            raise ValueError("open_at must be timezone-aware")
        if self.exclusive:
            await self.journal.acquire()
        self.open_at = open_at
        self._accounts = {a.name: a for a in accounts}
        self.journal.record("arm", open_at=open_at.isoformat(), accounts=len(accounts))
        history = {row.key: row for row in summarize(self.journal.records())}
        self._drafts = journaled_drafts(self.journal.records())
        late = self.clock.now() >= open_at  # a restart inside the window: precision no longer pays for itself
        results = await asyncio.gather(*(self._plan_account(a, history) for a in accounts))
        self.plans = [p for plans in results for p in plans]
        assign_slots(self.plans, self.settings.spacing_scope)
        await self._measure_clocks(skip=late)
        await asyncio.gather(*(self._open_connection(p) for p in self.plans))
        self._schedule()
        for plan in self.plans:
            self.journal.record(
                "plan",
                **plan.journal_fields(),
                price=plan.price,
                volume=plan.volume,
                slot=plan.slot,
                open_monotonic_ns=plan.open_monotonic_ns,
                send_at_ns=plan.send_at_ns,
                prepared=plan.prepared,
            )
        if not await self.journal.flush(durable=True):
            log.error(
                "executor.journal_unwritable",
                path=str(self.journal.path),
                consequence="firing without a durable journal: a restart could not tell what was sent",
            )
        for broker, clock in self.clocks.items():
            metrics.broker_clock(broker, clock.estimate.offset_s, clock.estimate.uncertainty_s)
        log.info(
            "executor.armed",
            plans=len(self.plans),
            accounts=len(accounts),
            open_at=open_at.isoformat(),
            late=late,
            clocks={b: _clock_summary(c) for b, c in self.clocks.items()},
        )
        return self.plans

    async def _plan_account(
        self, account: AccountSettings, history: dict[tuple[str, str, str], ReportRow]
    ) -> list[FirePlan]:
        """The account's plans; an order today's journal shows ended is left alone, and one an earlier process
        may have sent (a restart inside the window) is first looked up at the broker."""
        client = self.client(account)
        plans: list[FirePlan] = []
        settled: set[tuple[str, str]] = set()  # planned, or left alone as ended: the rest are not ready
        if (budget := client.requests) is not None:
            self._budgets[account.name] = budget
        try:
            token = await client.token()
            amounts = await client.order_amounts(use_cache=True)
            for order, amount in zip(account.orders, amounts):
                row = history.get((account.name, order.isin, order.side))
                action = resume_action(row, self.clock.time_ns())
                if action == "done":
                    assert row is not None
                    log.info(
                        "executor.already_done",
                        account=account.name,
                        isin=order.isin,
                        side=order.side,
                        result=row.result,
                    )
                    self.skipped.append(
                        Skipped(account.name, order.isin, order.side, f"ended earlier today: {row.result}", done=True)
                    )
                    settled.add((order.isin, order.side))
                    continue
                unsure_since = None
                if action == "ask_broker":
                    assert row is not None
                    since = _since(row, self.tz)
                    with no_retries():
                        found = await self._ask_broker(
                            client, order.isin, order.side, since, row.serial_number, reason="restart"
                        )
                    if found.presence is Presence.FOUND:
                        self._record_outcome_fields(
                            account.name,
                            client.broker,
                            order.isin,
                            order.side,
                            "accepted",
                            0,
                            "found at the broker after a restart",
                            found,
                        )
                        self.skipped.append(
                            Skipped(
                                account.name,
                                order.isin,
                                order.side,
                                "accepted earlier (found at the broker)",
                                done=True,
                            )
                        )
                        settled.add((order.isin, order.side))
                        continue
                    if found.presence is Presence.UNKNOWN:
                        unsure_since = since
                params = await client.order_params(order, amount=amount, use_cache=True)
                codec = client.codec
                plan = FirePlan(
                    account.name,
                    client.broker,
                    client.username,
                    order.isin,
                    order.side,
                    params.price,
                    params.volume,
                    account.priority,
                    order_origin(codec, token),  # Online+: the API base the token's login page named
                    amount=params.amount,
                    codec=codec,
                )
                plan.unsure_since = unsure_since
                await self._prepare_draft(client, plan, self._drafts.get(plan.key))
                plan.prepare(_order_request(codec, token, plan))
                plan.spacing_ns = self._platform_spacing_ns(codec, token)
                plans.append(plan)
                settled.add((order.isin, order.side))
        except (BrokerError, ConfigError) as exc:
            for order in (o for o in account.orders if (o.isin, o.side) not in settled):
                self._skip(account, client.broker, order.isin, order.side, f"not ready: {scrub(str(exc))}")
            return plans
        return plans

    async def _ask_broker(
        self, client: BrokerClient, isin: str, side: str, since: datetime | None, serial_number: int | None, reason: str
    ) -> Lookup:
        """The broker's open and today's orders, asked once and matched by its codec; the answer is journaled."""
        result = await look_up(
            client, self.day, isin, side, since, self.tz, serial_number, match=client.codec.find_order
        )
        self.journal.record(
            "lookup",
            account=client.account.name,
            broker=client.broker,
            isin=isin,
            side=side,
            presence=result.presence.value,
            serial_number=result.serial_number,
            tracking_number=result.tracking_number,
            reason=reason,
            error=result.reason or None,
        )
        if result.presence is Presence.UNKNOWN:
            log.warning("executor.broker_cannot_say", account=client.account.name, isin=isin, reason=result.reason)
        return result

    def _skip(self, account: AccountSettings, broker: str, isin: str, side: str, reason: str) -> None:
        self.journal.record("skip", account=account.name, broker=broker, isin=isin, side=side, reason=reason)
        self.skipped.append(Skipped(account.name, isin, side, reason))
        log.warning("executor.skip", account=account.name, isin=isin, reason=reason)

    async def _prepare_draft(
        self, client: BrokerClient, plan: FirePlan, journaled: JournaledDraft | None, discard: bool = True
    ) -> None:
        """The order's draft, for a platform that makes the order before the open (easytrader; the others make
        none, at no cost). A draft this day's journal already holds for the same price and volume is sent again
        rather than a new one made (a restart: never two drafts of one order that could both be placed); one of
        another size is replaced (deleted here unless `discard` is off: the caller rebuilds the bytes first). The
        new id is journaled before anything can send it."""
        if plan.volume <= 0 or plan.price <= 0:
            return  # never sent (the final check drops it, or drafts it when it grows)
        if journaled is not None and (journaled.price, journaled.volume) == (plan.price, plan.volume):
            plan.prepared = journaled.prepared
            log.info("executor.draft_reused", account=plan.account, isin=plan.isin, draft=plan.prepared)
            return
        prepare = getattr(client.session, "prepare_order", None)
        prepared = await prepare(plan.isin, plan.side, plan.price, plan.volume) if prepare is not None else None
        if prepared is None:
            return
        self.journal.record(
            "draft",
            **plan.journal_fields(),
            prepared=prepared,
            price=plan.price,
            volume=plan.volume,
            replaces=journaled.prepared if journaled is not None else None,
        )
        plan.prepared = prepared
        if journaled is not None and discard:
            await self._discard_draft(client, journaled.prepared)

    async def _discard_draft(self, client: BrokerClient, prepared: str) -> None:
        """Best effort: a draft left at the broker is never sent, since only the journal's latest one is."""
        discard = getattr(client.session, "discard_prepared", None)
        if discard is None:
            return
        try:
            await discard(prepared)
        except BrokerError as exc:
            log.info("executor.draft_kept", account=client.account.name, draft=prepared, reason=scrub(str(exc)))

    def _spend(self, plan: FirePlan, kind: str, urgent: bool = False) -> str | None:
        """Charge one request the executor sends for this plan's account to its budget; the refusal's reason when
        the broker's cap would be passed (nothing is sent then), None when it may go (or no cap applies)."""
        budget = self._budgets.get(plan.account)
        if budget is None:
            return None
        try:
            budget.charge(kind, urgent=urgent)
        except RateLimited as exc:
            log.error("executor.request_cap", account=plan.account, kind=kind, **budget.summary())
            return str(exc)
        return None

    def _may_send(self, plan: FirePlan, last: Answer | None = None) -> bool:
        """Charge the order's next send to its account's budget (urgent: the reserve is the open's); past the cap
        it ends "not placed" instead (the hourly cap is never sprayed through)."""
        refused = self._spend(plan, "batch" if plan.prepared is not None else "order", urgent=True)
        if refused is None:
            return True
        self._outcome(plan, "not placed", last.code if last else None, f"request cap: {refused}", answer=last)
        return False

    async def _open_connection(self, plan: FirePlan) -> None:
        plan.conn = WireConnection(
            plan.trading_url, self.clock, ssl_context=self._tls, connect_timeout=self.settings.connect_timeout_s
        )
        try:
            await plan.conn.connect()
        except WireError as exc:
            log.warning("executor.connect_failed", account=plan.account, reason=str(exc))

    @property
    def _tls(self) -> ssl.SSLContext | None:
        """One verifying TLS context for every connection (loading the CA store once, not per connection)."""
        if self._tls_context is None and any(p.trading_url.startswith("https:") for p in self.plans):
            self._tls_context = tls_context(self.ca_bundle)
        return self._tls_context

    async def _measure_clocks(self, skip: bool = False) -> None:
        """One measurement per trading host: brokers behind one host share one clock (none after the open)."""
        if skip:
            self.clocks = {
                p.broker: BrokerClock(OffsetEstimate(0.0, 1.0, 0, "skipped: armed after the open"), 0)
                for p in self.plans
            }
            self.reference = ClockReference.take(self.clock)
            return
        source = self.settings.clock_source
        own: dict[str, BrokerClock] = {}
        if source in ("auto", "server-time"):  # first each broker's own clock endpoint, where its platform has one
            firsts: dict[str, FirePlan] = {}
            for plan in self.plans:
                firsts.setdefault(plan.broker, plan)
            found = await asyncio.gather(*(self._broker_clock(p) for p in firsts.values()))
            own = {broker: clock for broker, clock in zip(firsts, found) if clock is not None}
            if source == "server-time" and len(own) < len(firsts):
                log.warning(
                    "executor.no_broker_clock",
                    brokers=[b for b in firsts if b not in own],
                    consequence="probing the Date header",
                )
            source = "date"
        by_origin: dict[Origin, FirePlan] = {}
        for plan in self.plans:
            if plan.broker not in own:
                by_origin.setdefault(Origin.from_url(plan.trading_url), plan)
        measured = dict(
            zip(by_origin, await asyncio.gather(*(self._measure_clock(p, source) for p in by_origin.values())))
        )
        self.clocks = {p.broker: own.get(p.broker) or measured[Origin.from_url(p.trading_url)] for p in self.plans}
        self.reference = ClockReference.take(self.clock)

    async def _measure_clock(self, plan: FirePlan, source: str) -> BrokerClock:
        """The clock of the plan's trading host from probes on the order path (`source`: date, timestamp, ntp)."""
        if source == "none":
            return BrokerClock(OffsetEstimate(0.0, 0.0, 0, "none"), 0)
        client = self.client(self._accounts[plan.account])
        token = await client.token()
        made = plan.codec.probe_request(token)  # type: ignore[union-attr]
        # A signed probe (Exir) is signed for our clock's second: the offset is what is being measured.
        request = self._charged_probe(plan, made)
        conns = [
            WireConnection(
                plan.trading_url, self.clock, ssl_context=self._tls, connect_timeout=self.settings.connect_timeout_s
            )
            for _ in range(PROBE_CONNECTIONS)
        ]
        try:
            await asyncio.gather(*(c.connect() for c in conns))
            if source == "ntp":
                estimate = await measure_ntp_offset(str(self.settings.ntp_server), self.clock)
                samples = await sample_readings(wire_probe(conns, request, "date"), self.clock, count=5)
            elif source == "timestamp":
                samples = await sample_readings(wire_probe(conns, request, "timestamp"), self.clock, count=9)
                estimate = estimate_from_timestamps(samples)
            else:
                samples = await sample_date_ticks(
                    wire_probe(conns, request, "date"), self.clock, max_in_flight=PROBE_CONNECTIONS
                )
                estimate = estimate_from_date(samples)
            rtt = int(statistics.median(s.rtt_ns for s in samples)) if samples else 0
        except (ClockSyncError, WireError, OSError, RateLimited) as exc:
            log.error(
                "executor.clock_unmeasured",
                broker=plan.broker,
                reason=str(exc),
                consequence="firing on the local clock",
            )
            return BrokerClock(OffsetEstimate(0.0, 1.0, 0, "unmeasured"), 0)
        finally:
            for conn in conns:
                conn.close()
        log.info(
            "executor.clock",
            broker=plan.broker,
            offset_ms=round(estimate.offset_s * 1000, 2),
            uncertainty_ms=round(estimate.uncertainty_s * 1000, 2),
            rtt_ms=round(rtt / 1e6, 2),
            source=estimate.source,
            samples=estimate.samples,
        )
        return BrokerClock(estimate, rtt)

    async def _broker_clock(self, plan: FirePlan) -> BrokerClock | None:
        """The broker's clock from an endpoint of its platform's own (easytrader's server-time: a few reads, where
        probing the Date header would spend dozens of requests against the hourly cap); None when it has none."""
        client = self.client(self._accounts[plan.account])
        ask = getattr(client.session, "broker_clock", None)
        if ask is None:
            return None
        try:
            estimate = await ask()
        except BrokerError as exc:
            log.warning("executor.broker_clock_failed", broker=plan.broker, reason=scrub(str(exc)))
            return None
        if estimate is None:
            return None
        # No round trip of the order path is measured: twice the uncertainty (half a round trip and the stamp's
        # ms) bounds it, and lead_ms auto then sends at the open, never before it.
        rtt_ns = int(2 * estimate.uncertainty_s * NS)
        log.info(
            "executor.clock",
            broker=plan.broker,
            offset_ms=round(estimate.offset_s * 1000, 2),
            uncertainty_ms=round(estimate.uncertainty_s * 1000, 2),
            rtt_ms=round(rtt_ns / 1e6, 2),
            source=estimate.source,
            samples=estimate.samples,
        )
        return BrokerClock(estimate, rtt_ns)

    def _charged_probe(self, plan: FirePlan, made: bytes | SignedRequest) -> bytes | Callable[[], bytes]:
        """The clock probe's request for `wire_probe`: signed for the second it leaves in (Exir), and charged to the
        account's request budget each time (RateLimited stops the measurement) when its platform has a cap."""
        budget = self._budgets.get(plan.account)
        if budget is None:
            return made if isinstance(made, bytes) else lambda: made.at(self.clock.time_ns() // NS)

        def request() -> bytes:
            budget.charge("probe")
            return made if isinstance(made, bytes) else made.at(self.clock.time_ns() // NS)

        return request

    def retarget(self, open_at: datetime) -> None:
        """Move the open (e.g. `fire --now`) without measuring again; instants are recomputed."""
        self.open_at = open_at
        self._schedule()

    def broker_now(self) -> datetime:
        """The broker's time now, by the first measured clock (for `--now` and the demo)."""
        clock = next(iter(self.clocks.values()), None)
        offset = clock.estimate.offset_s if clock else 0.0
        return datetime.fromtimestamp(self.clock.time_ns() / NS + offset, tz=self.tz)

    @property
    def _spacing_ns(self) -> int:
        return int((self.settings.spacing_ms + self.settings.spacing_margin_ms) * 1e6)

    def _spacing(self, plan: FirePlan) -> int:
        """The least gap between the sends of this plan's account: the executor's, or its platform's when longer."""
        return max(self._spacing_ns, plan.spacing_ns)

    def _platform_spacing_ns(self, codec: Codec, token: str) -> int:
        """An account's platform spacing (Exir's sendOrderDelay) with the executor's margin; 0 when it states none
        or asks no more than the executor's spacing."""
        platform_ms = order_spacing_ms(codec, token)
        if platform_ms is None or platform_ms <= self.settings.spacing_ms:
            return 0
        return int((platform_ms + self.settings.spacing_margin_ms) * 1e6)

    def _scope(self, plan: FirePlan) -> tuple[str, ...]:
        return (plan.account,) if self.settings.spacing_scope == "account" else (plan.account, plan.isin)

    def _take_turn(self, plan: FirePlan, earliest_ns: int) -> int:
        """The first instant from `earliest_ns` at which this plan's scope is free, reserved for it: clear of
        the scope's last send and of the planned first sends of its orders still to go."""
        spacing, scope = self._spacing(plan), self._scope(plan)
        at = max(earliest_ns, self._free_at.get(scope, 0))
        for planned in sorted(
            p.send_at_ns for p in self._by_scope.get(scope, ()) if p.key not in self._first_sent and p is not plan
        ):
            if planned - spacing < at < planned + spacing:
                at = planned + spacing
        self._free_at[scope] = at + spacing
        return at

    def _respace_from(self, now_ns: int) -> None:
        """Armed after the open (a restart): the instants have passed, so an account's orders leave from now,
        one spacing apart, instead of all in one loop (where the second would be refused as too soon)."""
        for plan in self.plans:
            plan.send_at_ns = max(plan.send_at_ns, now_ns + plan.slot * self._spacing(plan))
        self.plans.sort(key=lambda p: p.send_at_ns)

    def _schedule(self) -> None:
        """Fix every plan's instants on the monotonic clock (a wall-clock step after this moves nothing)."""
        for plan in self.plans:
            clock = self.clocks.get(plan.broker) or BrokerClock(OffsetEstimate(0.0, 1.0, 0, "unmeasured"), 0)
            plan.open_monotonic_ns = monotonic_deadline_ns(self.open_at, clock.estimate, self.reference)  # type: ignore[arg-type]
            plan.send_at_ns = plan.open_monotonic_ns - clock.lead_ns(self.settings) + plan.slot * self._spacing(plan)
        self.plans = firing_order(self.plans, self.day)
        self.plans.sort(key=lambda p: p.send_at_ns)

    # ---- final check -------------------------------------------------------------------------------

    async def final_check(self) -> None:
        """Fresh buying power and holdings, volumes recomputed, requests rebuilt, connections checked.

        Every call is tried once (no retry policy): seconds before the open nothing may wait out a backoff.
        """
        by_account: dict[str, list[FirePlan]] = defaultdict(list)
        for plan in self.plans:
            by_account[plan.account].append(plan)
        with no_retries():
            await asyncio.gather(*(self._recheck_account(name, plans) for name, plans in by_account.items()))
        await self._drop_unsendable()

    async def _drop_unsendable(self) -> None:
        """A plan whose volume is not positive, or whose account another process now holds (`keep`), is never
        sent; a connection left mid-ping is not trusted."""
        for plan in self.plans:
            if plan.conn is not None and plan.conn.in_flight:
                plan.conn.close()  # its ping's answer must never be read as the order's; fire reopens it
        kept = [p for p in self.plans if p.volume > 0 and self.keep(p.account)]
        dropped = [p for p in self.plans if p not in kept]
        for plan in dropped:
            reason = (
                "volume not positive at the final check"
                if plan.volume <= 0
                else "another process holds the account now"
            )
            if plan.unsure_since is not None:  # it may be at the broker already: not "not sent"
                self._outcome(
                    plan, "unknown", None, f"{reason}; an earlier process may have sent it and the broker could not say"
                )
                continue
            self.journal.record("skip", **plan.journal_fields(), reason=reason)
            self.skipped.append(Skipped(plan.account, plan.isin, plan.side, reason))
            log.warning("executor.skip", account=plan.account, isin=plan.isin, reason=reason)
        self.plans = kept
        await self.journal.flush()

    async def _recheck_account(self, name: str, plans: list[FirePlan]) -> None:
        account = self._accounts[name]
        client = self.client(account)
        try:
            # A fresh buying power read is also the token probe: a token revoked since warmup gets a 401,
            # a new login follows, and the requests below are rebuilt with the new token.
            amounts = dict(zip((o.isin for o in account.orders), await client.order_amounts(use_cache=False)))
            token = await client.token()
            replaced: list[str] = []
            for plan in plans:
                order = next(o for o in account.orders if o.isin == plan.isin)
                if order.side != "buy" or amounts.get(plan.isin) != plan.amount:
                    # The same money sizes the same buy (the day's limits hold): resized only when it changed.
                    params = await client.order_params(order, amount=amounts.get(plan.isin), use_cache=False)
                    if (params.volume, params.price) != (plan.volume, plan.price):
                        log.info(
                            "executor.replanned", account=name, isin=plan.isin, volume=params.volume, was=plan.volume
                        )
                        if (old := await self._redraft(client, plan, params.price, params.volume)) is not None:
                            replaced.append(old)
                    plan.volume, plan.price, plan.amount = params.volume, params.price, params.amount
                plan.prepare(_order_request(client.codec, token, plan))
                plan.spacing_ns = self._platform_spacing_ns(client.codec, token)
                await self._follow_origin(plan, order_origin(client.codec, token))
            for old in replaced:  # only now: until the bytes were rebuilt, the old draft was what they sent
                await self._discard_draft(client, old)
            ping = client.codec.probe_request(token)
        except (BrokerError, ConfigError) as exc:
            log.warning(
                "executor.final_check_failed",
                account=name,
                reason=scrub(str(exc)),
                consequence="firing the plan made at arm time",
            )
            ping = None
        for plan in plans:
            await self._check_connection(plan, ping)

    async def _redraft(self, client: BrokerClient, plan: FirePlan, price: int, volume: int) -> str | None:
        """A resized order of a platform with drafts gets a new draft (journaled), so the batch at the open sends
        the new size; a size that is not positive needs none (the plan is dropped). The old draft's id is returned
        for the caller to delete once the bytes are rebuilt (it stays sendable until then)."""
        old = plan.prepared
        if volume > 0 and price > 0:
            draft = JournaledDraft(old, plan.price, plan.volume) if old is not None else None
            resized = FirePlan(plan.account, plan.broker, plan.username, plan.isin, plan.side, price, volume, 0, "")
            await self._prepare_draft(client, resized, draft, discard=False)  # raises: the plan keeps its draft
            plan.prepared = resized.prepared
        else:
            plan.prepared = None
        return old

    async def _follow_origin(self, plan: FirePlan, origin: str) -> None:
        """A new login may name another API base (Online+'s login page): the rebuilt bytes go there, so the
        connection opened at the arm for the old one is replaced."""
        if origin == plan.trading_url:
            return
        log.info("executor.origin_moved", account=plan.account, origin=origin)
        plan.trading_url = origin
        if plan.conn is not None:
            plan.conn.close()
            await self._open_connection(plan)

    async def _check_connection(self, plan: FirePlan, ping: bytes | SignedRequest | None) -> None:
        """A connection the broker closed while idle is reopened; a live one is pinged to stay warm (a ping charged
        to a capped account's budget: none past the cap)."""
        if plan.conn is None:
            return
        if ping is not None and self._spend(plan, "probe") is not None:
            ping = None
        try:
            if ping is not None:
                if not isinstance(ping, bytes):
                    ping = ping.at(self._utc_second(plan, self.clock.monotonic_ns()))
                await plan.conn.ping(ping, timeout=self.settings.answer_timeout_s)
            elif not plan.conn.is_alive() or plan.conn.in_flight:
                await plan.conn.reconnect()
        except WireError as exc:
            log.warning("executor.connection_dead", account=plan.account, reason=str(exc))

    # ---- fire --------------------------------------------------------------------------------------

    async def fire(self) -> None:
        """Send at the planned instants, then follow every order until it ends or the window closes.

        Every plan's intent is fsynced before the first send; the sends are queued for the disk right after
        each first-send loop, and every final answer right when it comes (see `daemon.firing._journal`)."""
        if not self.plans:
            log.warning("executor.nothing_to_fire")
            await self.journal.close()
            return
        window_end_ns = max(p.open_monotonic_ns for p in self.plans) + int(self.window_s * NS)
        first_open = min(p.open_monotonic_ns for p in self.plans)
        first_clock = self.clocks.get(self.plans[0].broker)
        self.journal.record(
            "window",
            open_monotonic_ns=first_open,
            window_end_monotonic_ns=window_end_ns,
            offset_ms=round(first_clock.estimate.offset_s * 1000, 3) if first_clock else None,
            uncertainty_ms=round(first_clock.estimate.uncertainty_s * 1000, 3) if first_clock else None,
            offset_source=first_clock.estimate.source if first_clock else None,
        )
        self._by_scope = defaultdict(list)
        for plan in self.plans:
            self._by_scope[self._scope(plan)].append(plan)
        self._record_intents()
        if not await self.journal.flush(durable=True):
            log.error(
                "executor.intents_unwritten",
                path=str(self.journal.path),
                consequence="firing anyway: a restart may not see these intents",
            )
        followers = _Followers(AnswerWatch(self.clock))
        self._log = log.bind()  # a thousand outcome lines in the window: one logger, not one per line
        unsure = [p for p in self.plans if p.unsure_since is not None]
        for plan in unsure:  # the broker decides first whether these are sent at all
            followers.start(self._follow(plan, None, window_end_ns))
        # In the window the plan itself is the retry policy. Real-time from here when fire runs alone; the loop's end
        # leaves it either way (run_after_arm took it before the final check).
        with self.realtime, no_retries(), _no_gc_pause():
            followers.context = contextvars.copy_context()  # what a follower started from an answer runs in
            for group in _groups([p for p in self.plans if p.unsure_since is None]):
                if self._budgets:  # charged before the wait: a capped account's batch past its cap never goes
                    group = [p for p in group if self._may_send(p)]
                    if not group:
                        continue
                signed = [p for p in group if p.signed is not None]
                for plan in signed:  # built before the wait: the first send stays one write
                    plan.sign_for(self._utc_second(plan, plan.send_at_ns))
                # the loop's pairs too: built after the wait they cost ~0.8 µs a plan (cold objects), 0.8 ms at 1000
                # accounts before the first write
                pairs = [(p.conn, p.request) for p in group]
                # a later slot: an account whose last send left late may still be busy at the instant (asked now,
                # for the plans busy at the earliest instant the wait can end: the rest are free then too)
                free_by = group[0].send_at_ns
                busy = [p for p in group if self._free_at.get(self._scope(p), 0) > free_by] if self._free_at else []
                await wait_until_monotonic(group[0].send_at_ns, self.clock)
                changed = False
                if signed:  # woken late across a second's edge: that second's bytes
                    changed = self._sign_late(signed, self.clock.monotonic_ns())
                if busy:  # those still busy wait for their turn
                    ready = self._defer_busy(group, busy, followers, window_end_ns)
                    changed |= len(ready) < len(group)
                    group = ready
                if changed:
                    pairs = [(p.conn, p.request) for p in group]
                sent = fire_all(pairs)  # type: ignore[arg-type]
                for plan, result in zip(group, sent):
                    self._journal_attempt(plan, 1, result)
                    self._first_sent.add(plan.key)
                    if not isinstance(result, WireError):
                        scope = self._scope(plan)
                        self._free_at[scope] = max(self._free_at.get(scope, 0), result + self._spacing(plan))
                self.journal.flush_soon()
                self._await_first_answers(group, sent, followers, window_end_ns)
        try:
            with no_retries():
                await followers.wait()
        finally:
            self._log = log
        self.realtime.release_memory()  # the first-send loop kept it locked (munlockall costs ms): now it may go
        complete = await self.journal.close()
        log.info("executor.window_closed", orders=len(self.plans), accepted=len(self._done), journal_complete=complete)
        metrics.fire_done(self.outcome)

    def _sign_late(self, signed: list[FirePlan], now_ns: int) -> bool:
        """Re-sign the plans whose broker's UTC second at `now_ns` is not the one they were signed for (woken late
        across a second's edge); the second is worked out once per broker, not once per plan."""
        seconds: dict[str, int] = {}
        changed = False
        for plan in signed:
            second = seconds.get(plan.broker)
            if second is None:
                second = seconds[plan.broker] = self._utc_second(plan, now_ns)
            changed |= plan.sign_for(second)
        return changed

    def _defer_busy(
        self, group: list[FirePlan], busy: list[FirePlan], followers: _Followers, window_end_ns: int
    ) -> list[FirePlan]:
        """`group` less those of `busy` whose scope is still not free now: a follower sends each at its turn."""
        now = self.clock.monotonic_ns()
        later = [p for p in busy if self._free_at.get(self._scope(p), 0) > now]
        for plan in later:
            followers.start(self._follow(plan, None, window_end_ns))
        return [p for p in group if p not in later] if later else group  # FirePlan compares by identity

    def _record_intents(self) -> None:
        """What is about to be sent and when, on both clocks: what a restart reads to know what may be out."""
        for plan in self.plans:
            wall_ns, broker_time = self._on_both_clocks(plan, plan.send_at_ns)
            self.journal.record(
                "intent",
                **plan.journal_fields(),
                price=plan.price,
                volume=plan.volume,
                planned_wall_ns=wall_ns,
                planned_broker_time=broker_time.isoformat(),
                open_monotonic_ns=plan.open_monotonic_ns,
                unsure=plan.unsure_since is not None,
                prepared=plan.prepared,
            )

    def _await_first_answers(
        self, group: list[FirePlan], sent: list[int | WireError], followers: _Followers, window_end_ns: int
    ) -> None:
        """Each sent order of a first-send loop waits for its answer on its connection's callback, under one shared
        timer; a write that failed goes to a follower at once (nothing reached the broker: no answer to wait for)."""
        now = self.clock.monotonic_ns()
        timeout = min(self.settings.answer_timeout_s, max((window_end_ns - now) / NS, 0.05))
        for plan, result in zip(group, sent):
            if isinstance(result, WireError):
                followers.start(self._follow(plan, result, window_end_ns))
                continue
            followers.hold()
            followers.watch.expect(
                plan.conn,  # type: ignore[arg-type]
                timeout,
                partial(self._first_answer, followers, plan, result, window_end_ns),
                now,
            )

    def _first_answer(
        self,
        followers: _Followers,
        plan: FirePlan,
        sent_ns: int,
        window_end_ns: int,
        outcome: WireResponse | WireError,
    ) -> None:
        """A first answer, a lost connection or the deadline, in the protocol's callback (what `_read_answer` makes
        of them); an order that ends on it ends here, any other gets a follower task from there on."""
        try:
            if isinstance(outcome, WireError):
                read = self._answer_lost(plan, 1, outcome)
            else:
                answer = self._answer_of(plan, 1, outcome)
                if answer.verdict is not Verdict.UNKNOWN and self._ended(plan, 1, answer, answer):
                    followers.end()
                    return
                read = (None if answer.verdict is Verdict.UNKNOWN else answer), False
            followers.start(self._follow(plan, sent_ns, window_end_ns, read), followers.context)
            followers.end()
        except Exception as exc:  # a follower's error ends the wait as it would a gather of tasks
            followers.fail(exc)

    async def _follow(
        self,
        plan: FirePlan,
        first: int | WireError | None,
        window_end_ns: int,
        read: tuple[Answer | None, bool] | None = None,
    ) -> None:
        """One order after its first send (already journaled): read answers, resend on 1017/1018 after the
        spacing, stop when it ends. A lost answer is settled before anything is sent again: a late answer on
        the connection, or the broker's lists (unknown is not absent). `first` None: not sent yet (an order an
        earlier process may have sent is settled first; one whose scope was busy waits for its turn). `read`:
        what reading the first answer gave already (`_read_answer`'s pair)."""
        spacing_ns = self._spacing(plan)
        attempt, sent_ns = 1, first
        if sent_ns is None:
            if (
                plan.unsure_since is not None
                and await self._settle(plan, plan.unsure_since, window_end_ns, "restart", attempt, None) is not SEND
            ):
                return
            await wait_until_monotonic(self._take_turn(plan, self.clock.monotonic_ns()), self.clock)
            self._first_sent.add(plan.key)
            if not self._may_send(plan):
                return
            sent_ns = await self._resend(plan)
            self._journal_attempt(plan, attempt, sent_ns)
        last_answer: Answer | None = None
        while True:
            if isinstance(sent_ns, WireError):
                answer: Answer | None = None
                last_send = self.clock.monotonic_ns()
            else:
                last_send = sent_ns
                if read is not None:
                    (answer, pending), read = read, None
                else:
                    answer, pending = await self._read_answer(plan, attempt, window_end_ns)
                if answer is None:  # lost: a late answer on the connection or the broker's lists decide
                    settled = await self._settle(
                        plan,
                        self._sent_since(plan),
                        window_end_ns,
                        "lost answer",
                        attempt,
                        plan.conn if pending else None,
                    )
                    if settled is ENDED:
                        return
                    if isinstance(settled, Answer):
                        answer = settled
                    elif plan.conn is not None:
                        plan.conn.close()  # a late answer must never be read as the resend's
            last_answer = answer or last_answer
            if self._ended(plan, attempt, answer, last_answer):
                return
            # Nothing reached the broker after a failed write, so no spacing is owed then; the account's other
            # orders take their turns too (`_take_turn`).
            next_ns = self._take_turn(
                plan,
                self.clock.monotonic_ns()
                if isinstance(sent_ns, WireError)
                else max(last_send + spacing_ns, self.clock.monotonic_ns()),
            )
            if next_ns >= window_end_ns:
                return self._outcome(
                    plan, "not placed", last_answer.code if last_answer else None, "window closed", answer=last_answer
                )
            await wait_until_monotonic(next_ns, self.clock)
            if not self._may_send(plan, last_answer):
                return
            attempt += 1
            sent_ns = await self._resend(plan)
            self._journal_attempt(plan, attempt, sent_ns)

    def _ended(self, plan: FirePlan, attempt: int, answer: Answer | None, last_answer: Answer | None) -> bool:
        """The order's outcome when this answer ends it (accepted, rejected, or its last attempt's); False: go on."""
        if answer is not None and answer.verdict is Verdict.ACCEPTED:
            self._outcome(plan, "accepted", 0, "accepted", answer=answer)
        elif answer is not None and answer.verdict is Verdict.TERMINAL:
            self._outcome(plan, "rejected", answer.code, answer.message or "rejected", answer=answer)
        elif attempt >= self.settings.max_attempts:
            code = last_answer.code if last_answer else None
            self._outcome(plan, "not placed", code, "attempts used up", answer=last_answer)
        else:
            return False
        return True

    async def _settle(
        self,
        plan: FirePlan,
        since: datetime | None,
        window_end_ns: int,
        reason: str,
        attempt: int,
        pending: WireConnection | None,
    ) -> Settled:
        """Until it is known whether the order exists: SEND when the broker positively shows none (it may be sent);
        ENDED when it ended here (found: accepted; never told: unknown, unless `on_unknown` is resend); or the
        late answer itself when one arrives on `pending` (the connection the request went out on) meanwhile."""
        client = self.client(self._accounts[plan.account])
        spacing_s = self.settings.lookup_spacing_ms / 1000
        result = Lookup(Presence.UNKNOWN)
        for asked in range(self.settings.lookup_attempts):
            if asked:
                if self.clock.monotonic_ns() + int(spacing_s * NS) >= window_end_ns:
                    break
                late = await self._late_answer(plan, attempt, pending, spacing_s)
                if late is not None:
                    return late
            result = await self._ask_broker(client, plan.isin, plan.side, since, None, reason)
            late = await self._late_answer(plan, attempt, pending, 0)
            if late is not None:
                return late  # the answer itself is surer than a list read while the request was still out
            if result.presence is not Presence.UNKNOWN:
                break
        if result.presence is Presence.FOUND:
            self._outcome(plan, "accepted", 0, f"found at the broker after a {reason}", lookup=result)
            return ENDED
        if result.presence is Presence.UNKNOWN:
            if self.settings.on_unknown == "resend":
                log.warning(
                    "executor.resend_on_unknown",
                    account=plan.account,
                    isin=plan.isin,
                    consequence="executor.on_unknown is resend: a duplicate may be booked",
                )
                return SEND
            self._outcome(
                plan,
                "unknown",
                None,
                f"{reason}, and the broker's order lists could not be read ({result.reason or 'no answer'})",
            )
            return ENDED
        plan.unsure_since = None
        return SEND

    async def _late_answer(
        self, plan: FirePlan, attempt: int, pending: WireConnection | None, wait_s: float
    ) -> Answer | None:
        """An answer that came after its timeout on `pending`, waiting at most `wait_s` for it (None: none came)."""
        if pending is None or not (pending.in_flight or pending.has_response()):
            if wait_s > 0:
                await wait_until_monotonic(self.clock.monotonic_ns() + int(wait_s * NS), self.clock)
            return None
        if wait_s <= 0 and not pending.has_response():
            return None
        try:
            response = await pending.next_response(wait_s)
        except WireError:
            return None
        answer = self._answer_of(plan, attempt, response, late=True)
        if answer.verdict is Verdict.UNKNOWN:
            return None
        return answer

    def _sent_since(self, plan: FirePlan) -> datetime:
        """The earliest broker time this order could have been booked at (its planned first send)."""
        return self._on_both_clocks(plan, plan.send_at_ns)[1]

    def _utc_second(self, plan: FirePlan, monotonic_ns: int) -> int:
        """The whole UTC second the plan's broker reads at a local monotonic instant (what a signature signs)."""
        clock = self.clocks.get(plan.broker)
        broker_ns = self.reference.wall_of(monotonic_ns) + (int(clock.estimate.offset_s * NS) if clock else 0)
        return broker_ns // NS

    def _on_both_clocks(self, plan: FirePlan, monotonic_ns: int) -> tuple[int, datetime]:
        """A local monotonic instant as our wall clock (ns) and as the plan's broker reads it (offset applied)."""
        clock = self.clocks.get(plan.broker)
        wall_ns = self.reference.wall_of(monotonic_ns)
        broker_ns = wall_ns + (int(clock.estimate.offset_s * NS) if clock else 0)
        return wall_ns, datetime.fromtimestamp(broker_ns / NS, tz=self.tz)

    async def _read_answer(self, plan: FirePlan, attempt: int, window_end_ns: int) -> tuple[Answer | None, bool]:
        """The answer, or None when there is none to go by; the flag says the request may still be answered late
        on its connection (a timeout, not a closed connection or an unreadable answer)."""
        timeout = min(self.settings.answer_timeout_s, max((window_end_ns - self.clock.monotonic_ns()) / NS, 0.05))
        try:
            response = await plan.conn.next_response(timeout)  # type: ignore[union-attr]
        except WireError as exc:
            return self._answer_lost(plan, attempt, exc)
        answer = self._answer_of(plan, attempt, response)
        return (None if answer.verdict is Verdict.UNKNOWN else answer), False

    def _answer_lost(self, plan: FirePlan, attempt: int, exc: WireError) -> tuple[None, bool]:
        """Journaled; the flag says the request may still be answered late (a timeout, not a closed connection)."""
        self.journal.record(
            "error",
            **plan.journal_fields(),
            attempt=attempt,
            monotonic_ns=self.clock.monotonic_ns(),
            reason=f"answer lost: {exc}",
        )
        return None, isinstance(exc, WireTimeout)

    def _answer_of(self, plan: FirePlan, attempt: int, response: WireResponse, late: bool = False) -> Answer:
        answer = plan.codec.classify(response.status, response.body)  # type: ignore[union-attr]
        self.journal.record(
            "answer",
            **plan.journal_fields(),
            attempt=attempt,
            monotonic_ns=response.last_byte_ns,
            first_byte_ns=response.first_byte_ns,
            wall_ns=self.reference.wall_of(response.last_byte_ns),
            status=response.status,
            code=answer.code,
            accepted=answer.verdict is Verdict.ACCEPTED,
            verdict=answer.verdict.value,
            message=answer.message or None,
            serial_number=answer.serial_number,
            tracking_number=answer.tracking_number,
            body=response.body,
            late=late or None,
        )
        return answer

    async def _resend(self, plan: FirePlan) -> int | WireError:
        conn = plan.conn
        try:
            if conn is None:
                raise WireError("no connection")
            if not conn.is_alive() or conn.in_flight:
                await conn.reconnect()
            if plan.signed is not None:
                plan.sign_for(self._utc_second(plan, self.clock.monotonic_ns()))
            return conn.send_nowait(plan.request)
        except WireError as exc:
            return exc

    def _journal_attempt(self, plan: FirePlan, attempt: int, sent: int | WireError) -> None:
        """A send that left (with its instants) or a write that failed (nothing reached the broker)."""
        if isinstance(sent, WireError):
            self.journal.record(
                "error",
                **plan.journal_fields(),
                attempt=attempt,
                monotonic_ns=self.clock.monotonic_ns(),
                reason=str(sent),
            )
            return
        wall_ns, broker_time = self._on_both_clocks(plan, sent)
        self.journal.record(
            "send",
            **plan.journal_fields(),
            attempt=attempt,
            monotonic_ns=sent,
            wall_ns=wall_ns,
            planned_ns=plan.send_at_ns,
            vs_open_ms=round((sent - plan.open_monotonic_ns) / 1e6, 3),
            broker_time=broker_time.isoformat(),
        )

    def _outcome(
        self,
        plan: FirePlan,
        state: OutcomeState,
        code: int | None,
        reason: str,
        answer: Answer | None = None,
        lookup: Lookup | None = None,
    ) -> None:
        if state == "accepted":
            self._done.add(plan.key)
        self._record_outcome_fields(
            plan.account, plan.broker, plan.isin, plan.side, state, code, reason, lookup, answer
        )

    def _record_outcome_fields(
        self,
        account: str,
        broker: str,
        isin: str,
        side: str,
        state: OutcomeState,
        code: int | None,
        reason: str,
        lookup: Lookup | None = None,
        answer: Answer | None = None,
    ) -> None:
        """The order's final line, on disk soon (not waiting): a restart must find it."""
        serial = (answer.serial_number if answer else None) or (lookup.serial_number if lookup else None)
        tracking = (answer.tracking_number if answer else None) or (lookup.tracking_number if lookup else None)
        self.journal.record(
            "outcome",
            account=account,
            broker=broker,
            isin=isin,
            side=side,
            state=state,
            accepted=state == "accepted",
            code=code,
            reason=reason,
            message=answer.message if answer and state != "accepted" else None,
            serial_number=serial,
            tracking_number=tracking,
        )
        self.journal.flush_soon()
        (self._log.info if state == "accepted" else self._log.warning)(
            "executor.outcome", account=account, isin=isin, side=side, state=state, code=code, reason=reason
        )

    async def aclose(self) -> None:
        self.realtime.leave()  # a window cut short (an error, a cancel) still gives the policy and memory back
        for plan in self.plans:
            if plan.conn is not None:
                plan.conn.close()
        await self.journal.close()

    # ---- the whole open ----------------------------------------------------------------------------

    async def run_open(self, accounts: list[AccountSettings], open_at: datetime) -> list[ReportRow]:
        """The whole open, written once: arm, the final check shortly before the open, fire, close; then what
        each order became. `fire` and the demo run it; the service runs its steps at their scheduled times."""
        try:
            await self.arm(accounts, open_at)
            await self.run_after_arm()
        finally:
            await self.aclose()
        return self.outcome()

    def outcome(self) -> list[ReportRow]:
        """This executor's orders as its journal tells them: one row per account, ISIN and side."""
        return [r for r in summarize(self.journal.records()) if r.account in self._accounts]

    async def run_after_arm(self, before_fire: Callable[[], None] | None = None) -> None:
        """The final check, cut short if it would run into the first send, then the fire; at real-time priority
        from the final check to the end of the first-send loop (where `fire` leaves it). `before_fire` is called
        between the two, however the check ended (the open race opens its packet capture there)."""
        if self.plans:
            first_send = min(p.send_at_ns for p in self.plans)
            if first_send <= self.clock.monotonic_ns():  # armed after the open (a restart): fresh reads, then fire
                with self.realtime:
                    try:
                        async with asyncio.timeout(self.settings.answer_timeout_s):
                            await self.final_check()
                    except TimeoutError:
                        log.error("executor.final_check_late", consequence="firing the plans as they stand")
                        await self._drop_unsendable()
                    self._respace_from(self.clock.monotonic_ns())
                    if before_fire is not None:
                        before_fire()
                    await self.fire()
                return
            await wait_until_monotonic(first_send - int(self.settings.final_check_s * NS), self.clock)
            with self.realtime:
                budget_s = max(first_send - FINAL_CHECK_MARGIN_NS - self.clock.monotonic_ns(), 0) / NS
                try:
                    async with asyncio.timeout(budget_s):
                        await self.final_check()
                except TimeoutError:
                    log.error("executor.final_check_late", consequence="firing the plans as they stand")
                    await self._drop_unsendable()
                if before_fire is not None:
                    before_fire()
                await self.fire()
                return
        await self.fire()


class _Followers:
    """Every order's follow-up in the window, waited for as one (as a gather of a task per order was): an order
    waiting for its first answer is held by `watch` (its connection's callback, one shared timer); only one that
    needs more (a resend, a lost answer, a restart's lookup) runs as a task. The first error ends the wait."""

    def __init__(self, watch: AnswerWatch) -> None:
        self.watch = watch
        self.context: contextvars.Context | None = None
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._done: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    def start(self, follow: Coroutine[Any, Any, None], context: contextvars.Context | None = None) -> None:
        """A follower task (in a copy of `context`, else of the caller's context, as `ensure_future` does)."""
        task = asyncio.get_running_loop().create_task(follow, context=context.copy() if context else None)
        self._open += 1
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def hold(self) -> None:
        self._open += 1

    def end(self) -> None:
        self._open -= 1
        if self._open == 0 and self._done is not None and not self._done.done():
            self._done.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self.fail(asyncio.CancelledError())
        elif (exc := task.exception()) is not None:
            self.fail(exc)
        else:
            self.end()

    async def wait(self) -> None:
        """Until every order ended; a cancel ends the followers too, and nothing is waited for after it."""
        try:
            if self._error is not None:
                raise self._error
            if self._open:
                self._done = asyncio.get_running_loop().create_future()
                await self._done
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():  # fire itself was cancelled, not one follower
                for task in self._tasks:
                    task.cancel()
            raise
        finally:
            self.watch.close()


@contextmanager
def _no_gc_pause() -> Iterator[None]:
    """No garbage-collection pause between the wait and the last first send: collect and freeze before,
    leave the collector off until every group has been written (a few ms, even at 1000 accounts)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def _order_request(codec: Codec, token: str, plan: FirePlan) -> bytes | SignedRequest:
    """The plan's bytes from its codec: the draft's batch when its platform made one (`prepared=` is passed only
    then, so codecs without drafts need not take it), else the whole order."""
    if plan.prepared is not None:
        return codec.order_request(  # type: ignore[call-arg]
            token, plan.isin, plan.side, plan.price, plan.volume, prepared=plan.prepared
        )
    return codec.order_request(token, plan.isin, plan.side, plan.price, plan.volume)


def _groups(plans: list[FirePlan], tolerance_ns: int = 200_000) -> list[list[FirePlan]]:
    """Plans whose send instants lie within `tolerance_ns` of the group's first go out in one tight loop."""
    groups: list[list[FirePlan]] = []
    for plan in plans:
        if groups and plan.send_at_ns - groups[-1][0].send_at_ns <= tolerance_ns:
            groups[-1].append(plan)
        else:
            groups.append([plan])
    return groups


def _since(row: ReportRow, tz: Any) -> datetime | None:
    """The earliest broker instant an earlier process planned to send this order at (None: unknown)."""
    if row.planned_broker_time:
        try:
            return datetime.fromisoformat(row.planned_broker_time)
        except ValueError:
            pass
    if row.planned_wall_ns is not None:
        return datetime.fromtimestamp(row.planned_wall_ns / NS, tz=tz)
    return None


def _clock_summary(clock: BrokerClock) -> dict[str, Any]:
    return {
        "offset_ms": round(clock.estimate.offset_s * 1000, 2),
        "uncertainty_ms": round(clock.estimate.uncertainty_s * 1000, 2),
        "rtt_ms": round(clock.rtt_ns / 1e6, 2),
        "source": clock.estimate.source,
    }
