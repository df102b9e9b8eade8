"""Structured logs: JSON lines for journald, a console view on a TTY, and secrets removed from every event.

Secrets are removed twice over: by key name (password, token, authorization, captcha answers) and by
value, for every string registered with `register_secret` (passwords at config load, tokens at login),
so a secret that slips into a message or an exception text is still caught. Tokens are registered in a
slot per account and broker, so the next token forgets the one it replaced: the registry holds the
secrets in use, not every token a long-running service has had.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Hashable, Iterable
from typing import Any, TextIO

import orjson
import structlog

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"^(.*_)?(password|passwd|token|authorization|secret|captcha_answer|captcha_value|api_key|fernet_key)$", re.I
)
_MIN_SECRET_LEN = 4
_lasting: set[str] = set()  # registered without a slot: passwords, keys; kept for the life of the process
_slots: dict[Hashable, str] = {}  # one value per slot: the token an account and broker use now
_lock = threading.Lock()  # registration may come from worker threads; scrubbing reads one tuple, lock-free
_longest_first: tuple[str, ...] = ()  # kept sorted on registration, not on every scrub (one per journal line)
_longest_first_set: set[str] = set()  # the same secrets, to tell a registration's new one
_FEW = 16  # up to this many secrets the plain loop is cheapest; beyond, only the secrets whose head is in the text
_index: tuple[dict[str, frozenset[str]], int, int, dict[str, str]] = ({}, 1, 1 << 30, {})
"""Replaced with every registration, read as one: the secrets by each of their first `stride` 4-character pieces,
the stride (the shortest secret's length less 3 when the index was last built whole), the shortest secret's
length now, and short texts already scrubbed against this registry (a log line's event, level, side and state
repeat on every order)."""
_SEEN_LEN, _SEEN_MAX = 64, 1024


def register_secret(value: str | None, *, slot: Hashable | None = None) -> None:
    """Make `value` disappear from every later log event, wherever it appears.

    Under a `slot` (see `token_slot`) the value replaces the slot's earlier one, which is forgotten unless it
    is registered elsewhere too: a token that was replaced has ended, and keeping every one would grow the
    registry (and the cost of each scrub) for the life of the service.
    """
    global _longest_first, _longest_first_set, _index
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        old = None
        if slot is None:
            if value in _lasting:
                return
            _lasting.add(value)
        else:
            if (old := _slots.get(slot)) == value:
                return
            _slots[slot] = value
        current = _lasting.union(_slots.values())
        ordered = tuple(sorted(sorted(current), key=len, reverse=True))  # longest first, then by value (_order)
        removed = {old} if old is not None and old not in current else set()
        added = set() if value in _longest_first_set else {value}
        _index = _reindexed(_index, ordered, added, removed)  # first: scrub reads _longest_first first
        _longest_first, _longest_first_set = ordered, current


def _order(secret: str) -> tuple[int, str]:
    """Longest first (a secret inside a longer one is replaced after it), then by value."""
    return -len(secret), secret


def _reindexed(
    index: tuple[dict[str, frozenset[str]], int, int, dict[str, str]],
    ordered: tuple[str, ...],
    added: set[str],
    removed: set[str],
) -> tuple[dict[str, frozenset[str]], int, int, dict[str, str]]:
    """The index for `ordered`, changed from the last one by the secrets added and removed (each piece's
    set is replaced, never changed: a scrub in another thread reads whole ones); built whole only when a secret
    shorter than the stride allows comes.

    Any occurrence of a secret covers `stride` consecutive text positions that start one of its 4-character
    pieces, its last `stride` ones (tokens share their first characters, a JWT's header), and one of those
    positions is a multiple of `stride`: so scrub looks up one piece of the text in every `stride`."""
    pieces, stride, _, _ = index
    shortest = len(ordered[-1]) if ordered else 1 << 30
    if not pieces or (ordered and shortest - _MIN_SECRET_LEN + 1 < stride):
        stride, pieces, removed, added = max(min(shortest, 1 << 10) - _MIN_SECRET_LEN + 1, 1), {}, set(), set(ordered)
    for secret, put in [*((s, False) for s in removed), *((s, True) for s in added)]:
        tail = len(secret) - _MIN_SECRET_LEN - stride + 1
        for at in range(tail, tail + stride):
            piece = secret[at : at + _MIN_SECRET_LEN]
            found = pieces.get(piece, frozenset())
            if put:
                pieces[piece] = found | {secret}
            elif left := found - {secret}:
                pieces[piece] = left
            else:
                pieces.pop(piece, None)
    return pieces, stride, shortest, {}


def token_slot(username: str, broker: str) -> tuple[str, str, str]:
    """The registry slot of an account's token at a broker: its next token (a login, another process's) replaces it."""
    return ("token", username, broker)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced; for messages that leave the process (errors, output).

    With a thousand accounts' tokens registered, testing each against every log value cost ~0.1 ms per value
    (most of the fire window's CPU at log level info): past a few secrets only those sharing a piece with the
    text at one position in every stride (`_reindexed`) are tried, longest first as before."""
    secrets, (pieces, stride, shortest, seen) = _longest_first, _index
    if len(secrets) <= _FEW:
        return _replaced(text, secrets)
    if len(text) < shortest:
        return text
    short = len(text) <= _SEEN_LEN
    if short and (done := seen.get(text)) is not None:
        return done
    size = _MIN_SECRET_LEN
    hits = pieces.keys() & {text[i : i + size] for i in range(0, len(text) - size + 1, stride)}
    found = {secret for piece in hits for secret in pieces.get(piece, ())}
    if len(found) * 4 > len(secrets):  # pieces many secrets share (a JWT's header): testing each in turn is cheaper
        result = _replaced(text, secrets)
    else:
        result = _replaced(text, sorted(found, key=_order)) if found else text
    if short:
        if len(seen) >= _SEEN_MAX:
            seen.clear()
        seen[text] = result
    return result


def _replaced(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact(value: Any, key: str | None = None) -> Any:
    if key is not None and isinstance(value, str) and value and _SECRET_KEY.match(key):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact(v) for v in value]
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return value


def redact_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: secrets out of keys, values and nested structures."""
    return {k: (_redact(v, k) if k != "event" else _redact(v)) for k, v in event_dict.items()}


def _json_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(level: str = "info", stream: TextIO | None = None, json: bool | None = None) -> None:
    """JSON lines when not on a TTY (journald), a console renderer on a TTY."""
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        from daemon.errors import UserError

        raise UserError(f"--log-level {level!r} is not a level; use debug, info, warning or error.")
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **context: Any) -> Any:
    log = structlog.get_logger(name) if name else structlog.get_logger()
    return log.bind(**context) if context else log


def redact(value: Any) -> Any:
    """`value` with secret-named fields and known secrets replaced by `***`; for data shown to people."""
    return _redact(value)
