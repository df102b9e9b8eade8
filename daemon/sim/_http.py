"""The simulator's one HTTP app: the shared middlewares (request log, known broker, faults, the skewed Date)
and the helpers every platform's handlers use. Routes come from the registered platforms.

A route's aiohttp name is `PLATFORM.ROUTE`; faults and the request log know it by ROUTE alone.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import orjson
from aiohttp import web

from daemon.sim._faults import Fault
from daemon.sim._log import RequestRecord
from daemon.sim._platform import platforms
from daemon.sim._state import SimState

STATE = web.AppKey("sim_state", SimState)
USERNAME = web.RequestKey("sim_username", str)
ERROR_CODE = web.RequestKey[int | str]("sim_error_code")  # a platform's code: a number, or a string (Online+)
FAULT = web.RequestKey("sim_fault", str)
NO_IMAGE = web.RequestKey("sim_no_image", bool)
DROPPED = web.RequestKey("sim_dropped", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HTML_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def add_route(app: web.Application, platform: str, method: str, path: str, handler: Handler, route: str) -> None:
    """One route of `platform`, named so that faults and the request log see `route`."""
    app.router.add_route(method, path, handler, name=f"{platform}.{route}")


def route_of(request: web.Request) -> tuple[str | None, str | None]:
    """(platform, route) of the matched route; (None, None) when nothing matched."""
    name = request.match_info.route.name
    if name is None:
        return None, None
    platform, _, route = name.partition(".")
    return platform, route


def state_of(request: web.Request) -> SimState:
    return request.app[STATE]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


async def read_json(request: web.Request) -> Any:
    """The body as JSON with exact Decimals for fractions; None when it is not JSON."""
    raw = await request.read()
    try:
        return json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None


# ---- middlewares: record, known broker, faults ------------------------------------------------------
@web.middleware
async def record_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: take the arrival stamp, and log the request however it ends."""
    st = state_of(request)
    wall_ns, mono_ns = st.arrivals.take(request.protocol)
    status: int | None = 500
    try:
        response = await handler(request)
        status = None if request.get(DROPPED) else response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        st.arrivals.reset(request.protocol)
        st.log.add(
            RequestRecord(
                time_ns=wall_ns,
                monotonic_ns=mono_ns,
                handled_monotonic_ns=st.clock.monotonic_ns(),
                method=request.method,
                path=request.path_qs,
                route=route_of(request)[1],
                broker=request.match_info.get("broker"),
                username=request.get(USERNAME),
                status=status,
                error_code=request.get(ERROR_CODE),
                fault=request.get(FAULT),
            )
        )


@web.middleware
async def known_broker(request: web.Request, handler: Handler) -> web.StreamResponse:
    """404 for a broker code nobody added, or one on another platform than the route's."""
    broker = request.match_info.get("broker")
    if broker is not None:
        known = state_of(request).brokers.get(broker)
        if known is None:
            return json_response({"isSuccess": False, "errorMessage": f"no simulated broker {broker!r}"}, status=404)
        platform = route_of(request)[0]
        if platform is not None and known.platform != platform:
            message = f"broker {broker!r} is simulated on {known.platform}, not {platform}"
            return json_response({"isSuccess": False, "errorMessage": message}, status=404)
    return await handler(request)


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Delay, then fail as the plan says: before the handler runs, or after it with `after`."""
    st = state_of(request)
    route = route_of(request)[1]
    delay_s, failure = st.faults.for_request(route, request.match_info.get("broker"))
    if delay_s:
        await st.sleep(delay_s)
    if failure is None:
        return await handler(request)
    request[FAULT] = failure.label
    if failure.kind == "no_image":
        request[NO_IMAGE] = True
        return await handler(request)
    answer: web.StreamResponse | None = None
    if failure.after or failure.kind in ("malformed", "truncated"):
        try:
            answer = await handler(request)
        except web.HTTPException as exc:
            answer = exc
    return _failed(request, failure, answer)


def _failed(request: web.Request, failure: Fault, answer: web.StreamResponse | None) -> web.StreamResponse:
    """The answer a failure puts in place of the real one (malformed and truncated spoil the real one)."""
    if failure.kind == "drop":
        request[DROPPED] = True
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=200)
    if failure.kind == "html":
        status = failure.status or 502
        reason = web.Response(status=status).reason
        return web.Response(
            status=status, text=_HTML_PAGE.format(status=status, reason=reason), content_type="text/html"
        )
    if failure.kind == "status":
        status = failure.status or 500
        reason = web.Response(status=status).reason
        body = {"type": "about:blank", "title": reason, "status": status}
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/problem+json")
    real = answer.body if isinstance(answer, web.Response) and isinstance(answer.body, bytes) else b"{}"
    status = answer.status if answer is not None else 200
    spoiled = real[: max(1, len(real) // 2)] if failure.kind == "truncated" else b")]}'\n" + real
    return web.Response(body=spoiled, status=status, content_type="application/json")


async def _skewed_date(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp would stamp the host's time; a broker's Date comes from its own (skewed) clock."""
    response.headers["Date"] = format_datetime(state_of(request).now(), usegmt=True)


def build_app(state: SimState) -> web.Application:
    """The app serving every registered platform's routes (so a broker added while running is served too)."""
    app = web.Application(middlewares=[record_request, known_broker, inject_faults])
    app[STATE] = state
    app.on_response_prepare.append(_skewed_date)
    for platform in platforms():
        platform.add_routes(app)
    return app
