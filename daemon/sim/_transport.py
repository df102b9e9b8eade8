"""A listening site that notes when each request's first bytes arrive, before aiohttp parses anything.

At the open a thousand requests can land in one read of the event loop; stamped later, in a middleware,
they would look spread out by however long the simulator took to handle the ones before them. So a thin
protocol in front of aiohttp's own stamps the first `data_received` of each request on the connection.
The stamp is taken by the request's middleware and forgotten when its answer is sent, so body bytes of
the same request never count as the next request's arrival. (A pipelined request that arrives while
the previous one is still being handled gets no stamp and falls back to the middleware's clock reading.)
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from daemon.sim._clock import SimClock

Stamp = tuple[int, int]  # (wall ns, monotonic ns) of the host clock


class ArrivalBook:
    """First-byte stamps per connection, keyed by aiohttp's protocol object (request.protocol)."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._stamps: dict[int, Stamp | None] = {}

    def mark(self, protocol: object) -> None:
        key = id(protocol)
        if self._stamps.get(key) is None:
            self._stamps[key] = (self._clock.time_ns(), self._clock.monotonic_ns())

    def take(self, protocol: object) -> Stamp:
        """This request's arrival stamp, or now when there is none."""
        stamp = self._stamps.get(id(protocol))
        if stamp is None:
            return self._clock.time_ns(), self._clock.monotonic_ns()
        self._stamps[id(protocol)] = None
        return stamp

    def reset(self, protocol: object) -> None:
        if id(protocol) in self._stamps:
            self._stamps[id(protocol)] = None

    def forget(self, protocol: object) -> None:
        self._stamps.pop(id(protocol), None)


class _StampingProtocol(asyncio.Protocol):
    """Passes every event through to aiohttp's protocol, stamping the first bytes of a request."""

    __slots__ = ("_inner", "_book")

    def __init__(self, inner: asyncio.Protocol, book: ArrivalBook) -> None:
        self._inner = inner
        self._book = book

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._book.mark(self._inner)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._book.forget(self._inner)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class StampingTCPSite(web.BaseSite):
    """aiohttp's TCPSite, with the stamping protocol in front and a backlog sized for a burst at the open."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, book: ArrivalBook, backlog: int = 4096) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._book = book
        self.bound_port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.bound_port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        book = self._book
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _StampingProtocol(server(), book),
            self._host,
            self._port,
            backlog=self._backlog,
        )
        if self._server.sockets:
            self.bound_port = self._server.sockets[0].getsockname()[1]
