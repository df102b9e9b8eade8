"""A cookie session carried in a token (Exir, Online+): the jar's cookies as (name, value, path) triples, back into
a jar in a new process, and as the hot path's Cookie header. Triples, not a name->value map, because both
platforms set two cookies of one name on nested paths, and the server reads the one a jar would send."""

from __future__ import annotations

from http.cookies import Morsel
from typing import Any

import aiohttp
from yarl import URL

Cookies = tuple[tuple[str, str, str], ...]


def host_morsels(jar: aiohttp.CookieJar, host: str) -> list[Morsel[str]]:
    """The jar's cookies for `host` (its own and its domain's), every path: duplicate names kept."""
    return [m for m in jar if not m["domain"] or m["domain"] == host or host.endswith("." + m["domain"].lstrip("."))]


def triples(morsels: list[Morsel[str]]) -> Cookies:
    """Cookies as a token packs them: (name, value, path), a missing path read as `/`."""
    return tuple((m.key, m.value, m["path"] or "/") for m in morsels)


def put_cookie(jar: aiohttp.CookieJar, name: str, value: str, path: str, base: URL) -> None:
    """One cookie into the jar as if `base` had set it on `path`."""
    morsel: Morsel[str] = Morsel()
    morsel.set(name, value, value)
    morsel["path"] = path
    jar.update_cookies({name: morsel}, base)


def read_triples(packed: Any) -> Cookies | None:
    """A token's packed cookie list back as triples; None when it is not a list of three strings each."""
    if not isinstance(packed, list) or not all(
        isinstance(c, list) and len(c) == 3 and all(isinstance(x, str) for x in c) for c in packed
    ):
        return None
    return tuple((c[0], c[1], c[2]) for c in packed)


def cookie_header(cookies: Cookies, request_path: str) -> str:
    """The Cookie header for `request_path` (the URL's full path): the cookies whose path is a prefix of it, one
    per name, the most specific path's, as aiohttp's jar sends them on the slow path."""
    chosen: dict[str, tuple[int, str]] = {}
    for name, value, path in cookies:
        if path_matches(request_path, path) and len(path) >= chosen.get(name, (-1, ""))[0]:
            chosen[name] = (len(path), value)
    return "; ".join(f"{name}={value}" for name, (_, value) in chosen.items())


def path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 5.1.4 path-match."""
    if request_path == cookie_path or not cookie_path:
        return True
    return request_path.startswith(cookie_path) and (cookie_path.endswith("/") or request_path[len(cookie_path)] == "/")
