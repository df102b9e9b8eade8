"""Pre-built requests, the response reader, and WireConnection against real loopback servers."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
from pathlib import Path

import httptools
import pytest
import trustme
from aiohttp import web

from daemon.clock import FakeClock, SystemClock
from daemon.errors import UserError
from daemon.net import (
    Origin,
    ResponseReader,
    WireClosedError,
    WireConnectError,
    WireConnection,
    WireError,
    WireProtocolError,
    WireResponse,
    WireTimeout,
    WireTLSError,
    build_request,
    fire_all,
    tls_context,
)
from tests.loopback import read_request, serve_app, serve_raw

TOKEN = "eyJhbGciOiJIUzI1NiJ9.secret-token-value"
AUTH = {"authorization": f"Bearer {TOKEN}"}


class _ParsedRequest:
    def __init__(self, raw: bytes) -> None:
        self.headers: dict[str, str] = {}
        self.url = b""
        self.body = b""
        self.complete = False
        parser = httptools.HttpRequestParser(self)
        parser.feed_data(raw)
        self.method = parser.get_method().decode()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


# ---------------------------------------------------------------- build_request


def test_post_request_is_complete_http11_with_path_prefix() -> None:
    body = b'{"isin":"IRO1FOLD0001","side":1}'
    raw = build_request("post", "http://127.0.0.1:8800/gs/trading/api/v2/orders/NewOrder", AUTH, body)
    req = _ParsedRequest(raw)
    assert req.complete and raw.startswith(b"POST /gs/trading/api/v2/orders/NewOrder HTTP/1.1\r\n")
    assert req.method == "POST"
    assert req.headers["host"] == "127.0.0.1:8800"
    assert req.headers["content-length"] == str(len(body))
    assert req.headers["content-type"] == "application/json"
    assert req.headers["connection"] == "keep-alive"
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.body == body


def test_get_request_keeps_query_and_omits_body_headers_and_default_port() -> None:
    raw = build_request("GET", "https://api-gs.ephoenix.ir/api/v2/orders/GetOpenOrders?type=1", AUTH)
    req = _ParsedRequest(raw)
    assert req.url == b"/api/v2/orders/GetOpenOrders?type=1"
    assert req.headers["host"] == "api-gs.ephoenix.ir"
    assert "content-length" not in req.headers and "content-type" not in req.headers


def test_given_headers_override_defaults_case_insensitively() -> None:
    raw = build_request("POST", "http://h:81/x", {"content-type": "application/json; charset=utf-8"}, b"{}")
    assert raw.count(b"ontent-") == 2  # one Content-Type, one Content-Length
    assert _ParsedRequest(raw).headers["content-type"] == "application/json; charset=utf-8"


def test_header_injection_is_refused_without_echoing_the_value() -> None:
    with pytest.raises(ValueError) as info:
        build_request("GET", "http://h/x", {"authorization": f"Bearer {TOKEN}\r\nX-Evil: 1"})
    assert "authorization" in str(info.value) and TOKEN not in str(info.value)


@pytest.mark.parametrize("url", ["ftp://h/x", "/relative/path", "http:///nohost"])
def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        build_request("GET", url, {})


def test_origin_of_urls() -> None:
    assert Origin.from_url("https://api-gs.ephoenix.ir/api") == Origin("https", "api-gs.ephoenix.ir", 443)
    assert str(Origin.from_url("http://127.0.0.1:8800/gs")) == "http://127.0.0.1:8800"
    assert Origin.from_url("http://[::1]:81/").host_header == "[::1]:81"


# ---------------------------------------------------------------- ResponseReader


def _reader() -> tuple[ResponseReader, list[WireResponse]]:
    got: list[WireResponse] = []
    return ResponseReader(got.append), got


RESPONSE = (
    b"HTTP/1.1 200 OK\r\nDate: Sat, 21 Nov 2026 05:15:00 GMT\r\nContent-Type: application/json\r\n"
    b'Content-Length: 27\r\n\r\n{"isSuccess": true, "id":1}'
)


def test_reader_stamps_first_and_last_byte_when_fed_byte_by_byte() -> None:
    reader, got = _reader()
    for i, byte in enumerate(RESPONSE):
        reader.feed(bytes([byte]), 1_000 + i)
    (resp,) = got
    assert (resp.status, resp.first_byte_ns, resp.last_byte_ns) == (200, 1_000, 1_000 + len(RESPONSE) - 1)
    assert resp.date == "Sat, 21 Nov 2026 05:15:00 GMT"
    assert resp.json() == {"isSuccess": True, "id": 1}
    assert resp.keep_alive


def test_reader_splits_two_responses_in_one_chunk_and_reads_chunked_bodies() -> None:
    chunked = (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
        b'5\r\n{"err\r\n6\r\norCode\r\n0\r\n\r\n'
    )
    reader, got = _reader()
    reader.feed(RESPONSE + chunked, 7)
    assert [r.status for r in got] == [200, 400]
    assert got[1].body == b'{"errorCode'
    assert got[1].headers["set-cookie"] == "a=1, b=2"


def test_reader_skips_interim_responses_and_decodes_gzip() -> None:
    body = gzip.compress(b'{"ok": 1}')
    reader, got = _reader()
    reader.feed(b"HTTP/1.1 100 Continue\r\n\r\n", 1)
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body, 2)
    (resp,) = got
    assert resp.json() == {"ok": 1}


def test_reader_completes_a_body_that_runs_until_close() -> None:
    reader, got = _reader()
    reader.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial", 1)
    reader.feed(b" and the rest", 2)
    assert got == []
    assert reader.eof() is False
    assert got[0].body == b"partial and the rest" and not got[0].keep_alive and got[0].last_byte_ns == 2


def test_reader_reports_a_response_cut_short() -> None:
    reader, got = _reader()
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345", 1)
    assert reader.eof() is True and got == []


def test_reader_rejects_garbage() -> None:
    reader, _ = _reader()
    with pytest.raises(WireProtocolError):
        reader.feed(b"SSH-2.0-OpenSSH_9.6\r\n", 1)


# ---------------------------------------------------------------- WireConnection, plain HTTP


def _date_app(peers: list[object]) -> web.Application:
    async def order(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response(
            {
                "path": request.path,
                "auth": request.headers.get("authorization") == f"Bearer {TOKEN}",
                "body": await request.json() if request.can_read_body else None,
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", order)
    return app


async def test_send_and_receive_on_one_kept_alive_connection() -> None:
    clock = SystemClock()
    peers: list[object] = []
    async with serve_app(_date_app(peers)) as base:
        url = f"{base}/gs/trading/api/v2/orders/NewOrder"
        request = build_request("POST", url, AUTH, b'{"volume": 10}')
        conn = await WireConnection.open(url, clock)
        try:
            for _ in range(3):
                sent_ns = conn.send_nowait(request)
                assert conn.in_flight == 1
                resp = await conn.next_response(timeout=5)
                assert resp.status == 200 and resp.date
                assert resp.json() == {
                    "path": "/gs/trading/api/v2/orders/NewOrder",
                    "auth": True,
                    "body": {"volume": 10},
                }
                assert sent_ns <= resp.first_byte_ns <= resp.last_byte_ns
                assert conn.in_flight == 0 and conn.is_alive()
            port = conn.local_port
        finally:
            conn.close()
    assert len(peers) == 3 and len(set(peers)) == 1, "all three requests used the one pre-opened connection"
    assert peers[0][1] == port, "local_port is this end's port, as the server sees it"  # type: ignore[index]
    assert conn.connects == 1 and conn.local_port is None


async def test_fire_all_writes_every_live_connection_and_reports_the_dead_one(clock: FakeClock) -> None:
    peers: list[object] = []
    async with serve_app(_date_app(peers)) as base:
        conns = [await WireConnection.open(base, clock) for _ in range(3)]
        conns[1].close()
        requests = [build_request("POST", f"{base}/orders/{i}", AUTH, b"{}") for i in range(3)]
        results = fire_all(zip(conns, requests))
        assert results[0] == results[2] == clock.monotonic_ns()
        assert isinstance(results[1], WireClosedError) and TOKEN not in str(results[1])
        answers = [await c.next_response(5) for c in (conns[0], conns[2])]
        assert [a.json()["path"] for a in answers] == ["/orders/0", "/orders/2"]
        for c in conns:
            c.close()


async def test_send_on_a_never_opened_connection_is_a_closed_error(clock: FakeClock) -> None:
    conn = WireConnection("http://127.0.0.1:9/x", clock)
    assert not conn.is_alive()
    with pytest.raises(WireClosedError):
        conn.send_nowait(b"GET / HTTP/1.1\r\n\r\n")


async def test_connection_refused_is_a_connect_error(clock: FakeClock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(WireConnectError, match="refused"):
        await WireConnection.open(f"http://127.0.0.1:{port}/x", clock)


async def test_server_closing_without_an_answer_wakes_the_reader(clock: FakeClock) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async with serve_raw(hang_up) as base:
        conn = await WireConnection.open(base, clock)
        conn.send_nowait(build_request("POST", f"{base}/o", AUTH, b"{}"))
        with pytest.raises(WireClosedError, match="closed the connection") as info:
            await conn.next_response(5)
        assert TOKEN not in str(info.value) and not conn.is_alive()


async def test_server_reset_is_a_closed_error(clock: FakeClock) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with serve_raw(reset) as base:
        conn = await WireConnection.open(base, clock)
        conn.send_nowait(build_request("GET", f"{base}/", AUTH))
        with pytest.raises(WireClosedError):
            await conn.next_response(5)


def _answer(reply: bytes):
    """A raw handler: read one request, write `reply` (maybe nothing), then wait until the client goes away."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await reader.read()

    return handler


async def test_silence_is_a_timeout_that_leaves_the_request_in_flight(clock: FakeClock) -> None:
    async with serve_raw(_answer(b"")) as base:
        conn = await WireConnection.open(base, clock)
        conn.send_nowait(build_request("GET", f"{base}/", AUTH))
        with pytest.raises(WireTimeout) as info:
            await conn.next_response(0.05)
        assert isinstance(info.value, TimeoutError) and conn.in_flight == 1
        conn.close()


async def test_garbage_from_the_server_is_a_protocol_error(clock: FakeClock) -> None:
    async with serve_raw(_answer(b"NOT HTTP AT ALL\r\n\r\n")) as base:
        conn = await WireConnection.open(base, clock)
        conn.send_nowait(build_request("GET", f"{base}/", AUTH))
        with pytest.raises(WireProtocolError):
            await conn.next_response(5)
        assert not conn.is_alive()


async def test_close_wakes_a_pending_reader(clock: FakeClock) -> None:
    async with serve_raw(_answer(b"")) as base:
        conn = await WireConnection.open(base, clock)
        pending = asyncio.ensure_future(conn.next_response(5))
        await asyncio.sleep(0)  # let it start waiting
        conn.close()
        with pytest.raises(WireClosedError):
            await pending


def _one_shot_server(answer_first: bool):
    """A server that closes every connection after one request; the first connection maybe without answering."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        if answer_first or connections > 1:
            writer.write(b"HTTP/1.1 204 No Content\r\nDate: Sat, 21 Nov 2026 05:15:00 GMT\r\n\r\n")
            await writer.drain()
        writer.close()

    return handler


async def test_ping_reopens_a_connection_the_server_dropped(clock: FakeClock) -> None:
    async with serve_raw(_one_shot_server(answer_first=True)) as base:
        ping = build_request("GET", f"{base}/ping", AUTH)
        conn = await WireConnection.open(base, clock)
        conn.send_nowait(ping)
        assert (await conn.next_response(5)).status == 204
        with pytest.raises(WireClosedError):  # keep-alive dropped by the server
            await conn.next_response(5)
        assert not conn.is_alive()
        assert (await conn.ping(ping)).status == 204
        assert conn.connects == 2
        conn.close()


async def test_ping_retries_once_when_the_close_races_it(clock: FakeClock) -> None:
    async with serve_raw(_one_shot_server(answer_first=False)) as base:
        conn = await WireConnection.open(base, clock)
        assert conn.is_alive()
        assert (await conn.ping(build_request("GET", f"{base}/ping", AUTH))).status == 204
        assert conn.connects == 2
        conn.close()


async def test_connection_close_header_marks_the_connection_done(clock: FakeClock) -> None:
    async with serve_raw(_answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")) as base:
        conn = await WireConnection.open(base, clock)
        conn.send_nowait(build_request("GET", f"{base}/", AUTH))
        resp = await conn.next_response(5)
        assert not resp.keep_alive and not conn.is_alive()
        conn.close()


# ---------------------------------------------------------------- TLS


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


async def test_tls_with_the_ca_bundle_that_signed_the_server(ca: trustme.CA, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    peers: list[object] = []
    async with serve_app(_date_app(peers), _tls_server_context(ca, "127.0.0.1")) as base:
        conn = await WireConnection.open(f"{base}/api", SystemClock(), ca_file=bundle)
        conn.send_nowait(build_request("POST", f"{base}/api/v2/orders/NewOrder", AUTH, b'{"a": 1}'))
        resp = await conn.next_response(5)
        assert resp.json() == {"path": "/api/v2/orders/NewOrder", "auth": True, "body": {"a": 1}}
        conn.close()


async def test_tls_refuses_an_untrusted_certificate(ca: trustme.CA) -> None:
    async with serve_app(_date_app([]), _tls_server_context(ca, "127.0.0.1")) as base:
        with pytest.raises(WireTLSError, match="not trusted"):
            await WireConnection.open(base, SystemClock())  # system trust store: the test CA is unknown


async def test_tls_refuses_a_certificate_for_another_host(ca: trustme.CA, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    async with serve_app(_date_app([]), _tls_server_context(ca, "broker.example")) as base:
        with pytest.raises(WireTLSError):
            await WireConnection.open(base, SystemClock(), ca_file=bundle)


def test_tls_verification_cannot_be_switched_off() -> None:
    unverified = ssl._create_unverified_context()
    with pytest.raises(ValueError, match="verification must stay on"):
        WireConnection("https://127.0.0.1:1/", SystemClock(), ssl_context=unverified)


def test_unreadable_ca_bundle_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="CA bundle"):
        tls_context(tmp_path / "missing.pem")


def test_wire_errors_share_one_base() -> None:
    for cls in (WireConnectError, WireTLSError, WireClosedError, WireTimeout, WireProtocolError):
        assert issubclass(cls, WireError)
