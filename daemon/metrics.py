"""Prometheus metrics, served at `--metrics HOST:PORT` (path `/metrics`) on the daemon's own event loop.

The cache, the client, warmup and the executor call the module-level hooks below. Until `serve` (or
`enable`) makes a `Metrics` current they return after one `is None` check, so a process without
`--metrics` pays nothing worth measuring, and nothing here runs inside the fire loop itself: the last
fire's figures are read from the journal once the window has closed.

Values that depend on "now" (a token's seconds to expiry) and on the store (cache entries) are computed
when Prometheus scrapes, from the injected clock and the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import GaugeMetricFamily, Metric

from daemon.clock import Clock
from daemon.errors import UserError
from daemon.logs import get_logger

if TYPE_CHECKING:
    from daemon.cache import Cache

log = get_logger("metrics")
PREFIX = "opening_bell_"


class Metrics:
    """Every series in one private registry (so two instances, as in tests, never clash)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cache_hits = Counter(
            PREFIX + "cache_hits", "Cache lookups answered from the cache, by type.", ["type"], registry=r
        )
        self.cache_misses = Counter(
            PREFIX + "cache_misses", "Cache lookups that found nothing valid, by type.", ["type"], registry=r
        )
        self.cache_entries = Gauge(
            PREFIX + "cache_entries",
            "Entries stored in the cache, by type (expired ones the store still holds included).",
            ["type"],
            registry=r,
        )
        self.clock_offset = Gauge(
            PREFIX + "clock_offset_seconds",
            "The broker's clock minus ours, measured at the last arm.",
            ["broker"],
            registry=r,
        )
        self.clock_uncertainty = Gauge(
            PREFIX + "clock_uncertainty_seconds",
            "How far the measured clock offset may be off.",
            ["broker"],
            registry=r,
        )
        self.first_send = Gauge(
            PREFIX + "fire_first_send_seconds",
            "Last fire: the order's first send relative to the open (negative: before it).",
            ["account", "isin"],
            registry=r,
        )
        self.first_answer = Gauge(
            PREFIX + "fire_answer_seconds",
            "Last fire: the first answer to the order relative to the open.",
            ["account", "isin"],
            registry=r,
        )
        self.orders = Counter(
            PREFIX + "orders",
            "Orders sent in the last window, by how they ended (accepted, rejected, not_placed, unknown) and the broker's code.",
            ["result", "code"],
            registry=r,
        )
        self.fill_shares = Gauge(
            PREFIX + "fill_shares",
            "Today's order: shares traded so far, as the tracker last read the broker's lists.",
            ["account", "isin"],
            registry=r,
        )
        self.fill_rial = Gauge(
            PREFIX + "fill_rial",
            "Today's order: rial traded so far (shares x average price).",
            ["account", "isin"],
            registry=r,
        )
        self.tracker_errors = Counter(
            PREFIX + "tracker_errors",
            "Reads of a broker's order lists by the tracker that failed (each retried on its next beat).",
            ["account", "broker"],
            registry=r,
        )
        self.warmup = Gauge(PREFIX + "warmup_duration_seconds", "How long the last warmup took.", registry=r)
        self.leases = Gauge(
            PREFIX + "group_leases_held", "Accounts this process holds the lease of (group operation).", registry=r
        )
        self._token_expiry: dict[str, datetime] = {}
        self._cache: Cache | None = None
        r.register(_TokenExpiry(self))

    def token_expiry(self, account: str, expires_at: datetime) -> None:
        self._token_expiry[account] = expires_at

    def watch_cache(self, cache: Cache) -> None:
        """The cache whose entries a scrape counts (the runner's; a reloaded config brings a new one)."""
        self._cache = cache

    async def refresh(self) -> None:
        """Figures read from the store at scrape time."""
        if self._cache is None:
            return
        try:
            counts = await self._cache.entry_counts()
        except OSError as exc:
            log.warning("metrics.cache_unreadable", reason=exc.strerror or type(exc).__name__)
            return
        for name, count in counts.items():
            self.cache_entries.labels(name).set(count)

    def fire_done(self, rows: Iterable[Any]) -> None:
        """The report rows of the window just closed (`daemon.firing._report.ReportRow`)."""
        for row in rows:
            if row.first_send_ms is not None:
                self.first_send.labels(row.account, row.isin).set(row.first_send_ms / 1000)
            if row.first_answer_ms is not None:
                self.first_answer.labels(row.account, row.isin).set(row.first_answer_ms / 1000)
            if row.attempts:
                result = row.state.replace(" ", "_")  # accepted, rejected, not_placed, unknown
                self.orders.labels(result, "0" if row.accepted else str(row.code)).inc()


class _TokenExpiry:
    """`opening_bell_token_expiry_seconds{account}`: seconds until each account's token must be renewed, at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            PREFIX + "token_expiry_seconds",
            "Seconds until the account's cached token ends (negative: ended).",
            labels=["account"],
        )
        now = self._metrics.clock.now()
        for account, expires_at in sorted(self._metrics._token_expiry.items()):
            family.add_metric([account], (expires_at - now).total_seconds())
        yield family

    def describe(self) -> list[Metric]:
        return []


_current: Metrics | None = None


def enable(clock: Clock) -> Metrics:
    """A fresh set of series, made current: the hooks record into it from now on."""
    global _current
    _current = Metrics(clock)
    return _current


def disable() -> None:
    global _current
    _current = None


def current() -> Metrics | None:
    return _current


# ---- hooks (no-ops while no Metrics is current) ----------------------------------------------------


def cache_lookup(type: str, hit: bool) -> None:
    if _current is not None:
        (_current.cache_hits if hit else _current.cache_misses).labels(type).inc()


def token_expiry(account: str, expires_at: datetime | str) -> None:
    """`expires_at` as a time or ISO text (as the cache hands it out; parsed only when metrics are on)."""
    if _current is not None:
        when = datetime.fromisoformat(expires_at) if isinstance(expires_at, str) else expires_at
        _current.token_expiry(account, when)


def broker_clock(broker: str, offset_s: float, uncertainty_s: float) -> None:
    if _current is not None:
        _current.clock_offset.labels(broker).set(offset_s)
        _current.clock_uncertainty.labels(broker).set(uncertainty_s)


def fire_done(rows: Callable[[], Iterable[Any]]) -> None:
    """`rows` is only called (the journal only read) when metrics are on."""
    if _current is not None:
        _current.fire_done(rows())


def fill_seen(account: str, isin: str, shares: int, rial: float) -> None:
    """What the tracker read of an order's fills (after the window, never inside it)."""
    if _current is not None:
        _current.fill_shares.labels(account, isin).set(shares)
        _current.fill_rial.labels(account, isin).set(rial)


def tracker_error(account: str, broker: str) -> None:
    if _current is not None:
        _current.tracker_errors.labels(account, broker).inc()


def warmup_done(seconds: float) -> None:
    if _current is not None:
        _current.warmup.set(seconds)


def leases_held(count: int) -> None:
    if _current is not None:
        _current.leases.set(count)


def watch_cache(cache: Cache) -> None:
    if _current is not None:
        _current.watch_cache(cache)


# ---- the endpoint ---------------------------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:9100` for IPv6); one sentence when it is not one."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"--metrics {text!r} is not HOST:PORT; give e.g. 127.0.0.1:9464.")
    return host, int(port)


class MetricsServer:
    """`/metrics` for the current `Metrics` on an aiohttp site; `port` is the bound one (0 picks a free port)."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        bake = make_aiohttp_handler(metrics.registry)

        async def handler(request: web.Request) -> web.StreamResponse:
            await metrics.refresh()
            return await bake(request)

        app = web.Application()
        app.router.add_get("/metrics", handler)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> MetricsServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise UserError(
                f"--metrics {self.host}:{self.port}: cannot listen there ({exc.strerror or exc}); pick another address."
            ) from None
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        log.info("metrics.serving", url=f"http://{self.host}:{self.port}/metrics")
        return self

    async def aclose(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> MetricsServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        disable()


def serve(address: str, clock: Clock) -> MetricsServer:
    """`async with serve("127.0.0.1:9464", clock):` enables the hooks and serves them until the block ends."""
    host, port = parse_address(address)
    return MetricsServer(enable(clock), host, port)
