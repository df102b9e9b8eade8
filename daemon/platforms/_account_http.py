"""One account's HTTP on the shared pool, as every cookie-session platform (Exir, Online+, easytrader) needs it: its
own cookie jar, so two accounts of one broker never share a login, over the pool's connections, so the pool still
owns (and closes) every socket and no account opens a connection of its own."""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp
import orjson

from daemon.errors import BrokerUnavailable
from daemon.platforms._models import Throttled, finite


class HasSession(Protocol):
    @property
    def session(self) -> aiohttp.ClientSession: ...


class AccountHttp:
    """A session mixin: `jar` and `client`. `_open_http` in `__init__` first; `client` is made again when the pool
    behind it was replaced (or it was closed), on the same jar, so a login survives a new pool."""

    _http: HasSession
    jar: aiohttp.CookieJar

    def _open_http(self, http: HasSession, user_agent: str) -> None:
        self._http = http
        self._user_agent = user_agent
        self.jar = aiohttp.CookieJar(unsafe=True)  # unsafe: also cookies of an IP host (the simulator's)
        self._client: aiohttp.ClientSession | None = None
        self._client_pool: aiohttp.ClientSession | None = None

    @property
    def client(self) -> aiohttp.ClientSession:
        """This account's HTTP session: its own jar on the pool's connector (so the pool closes it)."""
        pool = self._http.session
        if self._client is None or self._client.closed or self._client_pool is not pool:
            self._client = aiohttp.ClientSession(
                connector=pool.connector,
                connector_owner=False,
                cookie_jar=self.jar,
                timeout=pool.timeout,
                trust_env=False,
                headers={"User-Agent": self._user_agent},
            )
            self._client_pool = pool
        return self._client


def raise_for_busy(response: aiohttp.ClientResponse, broker: str, what: str) -> None:
    """A throttled (429, its Retry-After kept) or failing (5xx) host as the errors the client's retry policy waits
    out; any other status is the caller's to read."""
    if response.status == 429:
        raise Throttled(finite(response.headers.get("Retry-After")), "HTTP 429")
    if response.status >= 500:
        raise BrokerUnavailable(f"broker {broker}: {what} answered HTTP {response.status}.")


def json_or_none(raw: bytes) -> Any:
    """An answer's JSON, or None when it is empty or not JSON (each caller decides what that means)."""
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
