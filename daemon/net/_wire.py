"""Pre-built HTTP/1.1 requests written to connections opened in advance, and their answers parsed.

At the open the daemon only writes bytes: DNS, TCP and the TLS handshake happen when a connection is
opened (minutes before), and each request's bytes (headers, token, JSON body) are built when the plan
is frozen. `send_nowait` is one synchronous `transport.write`; `fire_all` is the one tight loop the
executor runs at the instant (measured 1.5-2x faster than waking one task per account).

Responses are parsed by httptools (llhttp), never by string matching, and carry the monotonic times
at which their first and last bytes arrived. One request is in flight per connection (no pipelining).
Request bytes hold a bearer token, so they never appear in an exception or a log line.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

from daemon.clock import Clock
from daemon.errors import UserError
from daemon.logs import get_logger

log = get_logger("wire")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_BODY_STATUSES = (204, 304)


class WireError(Exception):
    """A connection or response failure; messages name the origin, never the request bytes."""


class WireConnectError(WireError):
    """The connection could not be opened: refused, unreachable, name not resolved, timed out."""


class WireTLSError(WireConnectError):
    """The TLS handshake failed, typically because the server's certificate is not trusted."""


class WireClosedError(WireError):
    """The connection is closed (by the server, a reset, or `close()`) or was never opened."""


class WireTimeout(WireError, TimeoutError):
    """No complete response arrived within the timeout; the request may still be in flight."""


class WireProtocolError(WireError):
    """The server sent bytes that are not a valid HTTP/1.x response."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a connection goes: scheme, host and port of a URL (its path does not matter here)."""

    scheme: str
    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> Origin:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
        return cls(scheme, parts.hostname, parts.port or _DEFAULT_PORTS[scheme])

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}"


def build_request(method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes | None = None) -> bytes:
    """The complete bytes of one HTTP/1.1 request, ready to be written as they are.

    Adds Host, Connection: keep-alive, Accept-Encoding: identity, and for a body Content-Type:
    application/json and Content-Length; `headers` (e.g. `authorization: Bearer ...`) override these
    by name, case-insensitively. A CR or LF in a header is refused, naming the header but not its value.
    """
    method = method.upper()
    if not method.isalpha():
        raise ValueError(f"{method!r} is not an HTTP method")
    origin = Origin.from_url(url)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    merged: dict[str, tuple[str, str]] = {}

    def put(name: str, value: str) -> None:
        merged[name.lower()] = (name, value)

    put("Host", origin.host_header)
    put("Connection", "keep-alive")
    put("Accept-Encoding", "identity")
    if body is not None:
        put("Content-Type", "application/json")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        put("Content-Length", str(len(body or b"")))
    for name, value in (headers or {}).items():
        put(name, value)
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in merged.values():
        if not name or any(c in name for c in "\r\n: ") or "\r" in value or "\n" in value:
            raise ValueError(f"header {name.strip()!r} holds a line break or an invalid name")
        lines.append(f"{name}: {value}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(
            "a header or the URL holds characters that HTTP/1.1 cannot carry; percent-encode them"
        ) from None
    return head + (body or b"")


@dataclass(frozen=True, slots=True)
class WireResponse:
    """One complete response; `first_byte_ns`/`last_byte_ns` are monotonic arrival times."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    first_byte_ns: int
    last_byte_ns: int
    keep_alive: bool

    @property
    def date(self) -> str | None:
        """The raw `Date` header: the server's clock to the second."""
        return self.headers.get("date")

    def json(self) -> Any:
        return orjson.loads(self.body)


class ResponseReader:
    """Turns the bytes of a connection into WireResponses with arrival times (no I/O of its own).

    `feed(data, now_ns)` is called with each chunk and the monotonic time it arrived; `eof()` when the
    peer closed, which completes a response whose body runs until the close (no length, not chunked).
    """

    def __init__(self, on_response: Callable[[WireResponse], None]) -> None:
        self._on_response = on_response
        self._parser = httptools.HttpResponseParser(self)
        self._now_ns = 0
        self._reset_message()

    def _reset_message(self) -> None:
        self._started = False
        self._headers_done = False
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._first_ns = 0

    @property
    def mid_message(self) -> bool:
        return self._started

    def feed(self, data: bytes, now_ns: int) -> None:
        self._now_ns = now_ns
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise WireProtocolError(f"malformed HTTP response ({type(exc).__name__})") from None

    def eof(self) -> bool:
        """Complete a read-until-close response; returns True if a partial response is left unfinished."""
        if not self._started:
            return False
        framed = "content-length" in self._headers or "transfer-encoding" in self._headers
        if self._headers_done and not framed:
            self._complete(keep_alive=False)
            return False
        return True

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._started = True
        self._first_ns = self._now_ns

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, chunk: bytes) -> None:
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        self._complete(keep_alive=self._parser.should_keep_alive())

    def _complete(self, keep_alive: bool) -> None:
        status = self._parser.get_status_code()
        headers, body, first_ns = self._headers, b"".join(self._body), self._first_ns
        self._reset_message()
        if 100 <= status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints); the real one follows
        body = _decode_body(body, headers.get("content-encoding", ""))
        self._on_response(WireResponse(status, headers, body, first_ns, self._now_ns, keep_alive))


def _decode_body(body: bytes, encoding: str) -> bytes:
    """Undo gzip/deflate, which a server may apply despite `Accept-Encoding: identity`."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error:
        raise WireProtocolError(f"response body is not valid {encoding}") from None
    return body


def tls_context(ca_file: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A verifying TLS context: the system's trust store, plus `ca_file` when given (it adds trust, never
    removes a check). Verification cannot be turned off."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UserError(
                f"The CA bundle {os.fspath(ca_file)!r} cannot be read ({type(exc).__name__}); fix the path."
            ) from None
    return context


def _checked_context(ctx: ssl.SSLContext) -> ssl.SSLContext:
    if ctx.verify_mode != ssl.CERT_REQUIRED or not ctx.check_hostname:
        raise ValueError(
            "TLS certificate and host name verification must stay on; build the context with tls_context()"
        )
    return ctx


class _Protocol(asyncio.Protocol):
    """Feeds arriving bytes to a ResponseReader, stamped with the injected clock's monotonic time."""

    def __init__(self, conn: WireConnection) -> None:
        self._conn = conn
        self._mono = conn._mono
        self._reader = ResponseReader(self._on_response)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._reader.feed(data, self._mono())
        except WireProtocolError as exc:
            self._conn._fail(self, WireProtocolError(f"{exc} from {self._conn.origin}"))
            if self.transport is not None:
                self.transport.abort()

    def _on_response(self, response: WireResponse) -> None:
        self._conn._deliver(self, response)

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            partial = self._reader.eof()
        except WireProtocolError:
            partial = True
        origin = self._conn.origin
        if isinstance(exc, ConnectionResetError):
            error = WireClosedError(f"connection to {origin} was reset")
        elif exc is not None:
            error = WireClosedError(f"connection to {origin} failed ({type(exc).__name__})")
        elif partial:
            error = WireClosedError(f"{origin} closed the connection in the middle of a response")
        else:
            error = WireClosedError(f"{origin} closed the connection")
        self._conn._fail(self, error)


class WireConnection:
    """One connection to one origin, opened ahead of time; one request in flight at a time.

    Responses queue in arrival order and are taken with `next_response`, or handed to a callback
    (`when_answered`: the executor's followers, without a task each). After the server closes
    (keep-alive dropped) or resets, `is_alive()` turns False and `ping`/`reconnect` open a fresh
    connection on the same object, so the executor can keep its references. For many https
    connections build one `tls_context()` and pass it as `ssl_context` (loading a trust store per
    connection costs milliseconds each).
    """

    __slots__ = (
        "origin",
        "_clock",
        "_mono",
        "_ssl",
        "_connect_timeout",
        "_transport",
        "_protocol",
        "_responses",
        "_waiter",
        "_callback",
        "_error",
        "_in_flight",
        "connects",
    )

    def __init__(
        self,
        origin: Origin | str,
        clock: Clock,
        *,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.origin = origin if isinstance(origin, Origin) else Origin.from_url(origin)
        self._clock = clock
        self._mono = clock.monotonic_ns
        self._ssl: ssl.SSLContext | None = None
        if self.origin.tls:
            self._ssl = _checked_context(ssl_context) if ssl_context is not None else tls_context(ca_file)
        self._connect_timeout = connect_timeout
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._responses: deque[WireResponse] = deque()
        self._waiter: asyncio.Future[WireResponse] | None = None
        self._callback: Callable[[WireResponse | WireError], None] | None = None
        self._error: WireError | None = WireClosedError(f"connection to {self.origin} is not open")
        self._in_flight = 0
        self.connects = 0

    @classmethod
    async def open(cls, origin: Origin | str, clock: Clock, **kwargs: Any) -> WireConnection:
        """A connected WireConnection (keyword arguments as for the constructor)."""
        conn = cls(origin, clock, **kwargs)
        await conn.connect()
        return conn

    async def connect(self) -> None:
        """Resolve, connect and (for https) finish the TLS handshake now, off the hot path."""
        self.close()
        loop = asyncio.get_running_loop()
        origin = self.origin
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, protocol = await loop.create_connection(
                    lambda: _Protocol(self),
                    origin.host,
                    origin.port,
                    ssl=self._ssl,
                    server_hostname=origin.host if self._ssl else None,
                )
        except ssl.SSLCertVerificationError as exc:
            raise WireTLSError(f"the TLS certificate of {origin} is not trusted ({exc.verify_message})") from None
        except ssl.SSLError as exc:
            raise WireTLSError(f"the TLS handshake with {origin} failed ({exc.reason or type(exc).__name__})") from None
        except TimeoutError:
            raise WireConnectError(f"connecting to {origin} timed out after {self._connect_timeout} s") from None
        except ConnectionRefusedError:
            raise WireConnectError(f"connection to {origin} was refused") from None
        except socket.gaierror:
            raise WireConnectError(f"the host name of {origin} cannot be resolved") from None
        except OSError as exc:
            raise WireConnectError(f"cannot connect to {origin} ({exc.strerror or type(exc).__name__})") from None
        self._transport, self._protocol = transport, protocol  # type: ignore[assignment]
        self._responses.clear()
        self._error = None
        self._in_flight = 0
        self.connects += 1
        log.debug("wire_connected", origin=str(origin), connects=self.connects)

    async def reconnect(self) -> None:
        await self.connect()

    @property
    def local_port(self) -> int | None:
        """This end's TCP port while open (None when closed): what ties a packet capture, or a broker's connection
        log, to an account."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return None
        name = transport.get_extra_info("sockname")
        return name[1] if name else None

    def send_nowait(self, data: bytes) -> int:
        """Write `data` now (the hot path: no await, no copy); returns the monotonic ns just after."""
        transport = self._transport
        if transport is None or self._error is not None:
            raise WireClosedError(f"connection to {self.origin} is not open")
        transport.write(data)
        self._in_flight += 1
        return self._mono()

    async def next_response(self, timeout: float) -> WireResponse:
        """The next response in arrival order; WireClosedError if the connection ended first."""
        if self._responses:
            return self._responses.popleft()
        if self._error is not None:
            raise type(self._error)(str(self._error))
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return waiter.result()  # it arrived as the timeout fired
            raise WireTimeout(f"no response from {self.origin} within {timeout} s") from None
        finally:
            self._waiter = None

    def when_answered(self, callback: Callable[[WireResponse | WireError], None]) -> None:
        """Hand the next response, or the error that ends the connection first, to `callback` from the protocol's
        own callbacks: no task, future or timer per request (the caller keeps one deadline for many). At once
        when one is here already; `forget_answer` takes it back (a late response then queues for
        `next_response`)."""
        if self._responses:
            callback(self._responses.popleft())
        elif self._error is not None:
            callback(type(self._error)(str(self._error)))
        else:
            self._callback = callback

    def forget_answer(self) -> None:
        """No callback for the next response any more (the caller's deadline passed)."""
        self._callback = None

    def has_response(self) -> bool:
        """A response arrived that nobody has read yet."""
        return bool(self._responses)

    @property
    def in_flight(self) -> int:
        """Requests written whose response has not arrived yet."""
        return self._in_flight

    def is_alive(self) -> bool:
        """Open, not failed, and the server has not announced it will close."""
        transport = self._transport
        return transport is not None and self._error is None and not transport.is_closing()

    async def ping(self, request: bytes, timeout: float = 5.0) -> WireResponse:
        """Check the connection with a cheap request, reconnecting if it died.

        Use a GET: a HEAD's answer announces a body length but carries no body, which no response
        parser can know without being told the method.

        A dead, busy or half-closed connection is replaced first; a close that races the ping is
        retried once on a fresh connection. Meant for the minute before the open.
        """
        if not self.is_alive() or self._in_flight:
            await self.reconnect()
        try:
            self.send_nowait(request)
            response = await self.next_response(timeout)
        except (WireClosedError, WireTimeout):
            await self.reconnect()
            self.send_nowait(request)
            response = await self.next_response(timeout)
        if not response.keep_alive:
            await self.reconnect()
        return response

    def close(self) -> None:
        """Close now; a pending `next_response` gets WireClosedError."""
        transport, protocol = self._transport, self._protocol
        self._transport = self._protocol = None
        if protocol is not None:
            self._fail(protocol, WireClosedError(f"connection to {self.origin} was closed by us"))
        if transport is not None:
            transport.close()

    async def __aenter__(self) -> WireConnection:
        if not self.is_alive():
            await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # called by _Protocol
    def _deliver(self, protocol: _Protocol, response: WireResponse) -> None:
        if protocol is not self._protocol:
            return  # a replaced connection's late answer
        if self._in_flight:
            self._in_flight -= 1
        if not response.keep_alive:
            self._error = WireClosedError(f"{self.origin} announced it closes the connection")
        callback = self._callback
        if callback is not None:
            self._callback = None
            callback(response)
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        else:
            self._responses.append(response)

    def _fail(self, protocol: _Protocol, error: WireError) -> None:
        if protocol is not self._protocol and self._protocol is not None:
            return  # a replaced connection's late news
        if self._error is None:
            self._error = error
        callback = self._callback
        if callback is not None:
            self._callback = None
            callback(error)
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


def fire_all(pairs: Iterable[tuple[WireConnection, bytes]]) -> list[int | WireError]:
    """Write each pre-built request to its connection in one tight loop, in the given order.

    Returns, per pair, the monotonic ns just after its write, or the WireError that stopped it (a
    dead connection never stops the loop for the accounts after it).
    """
    sent: list[int | WireError] = []
    append = sent.append
    for conn, data in pairs:
        try:
            append(conn.send_nowait(data))
        except WireError as exc:
            append(exc)
    return sent
