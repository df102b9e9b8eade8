"""Structured logs: JSON lines for journald, a console view on a TTY, and secrets removed from every event.

Secrets are removed twice over: by key name (password, token, authorization, captcha answers) and by
value, for every string registered with `register_secret` (passwords at config load, tokens at login),
so a secret that slips into a message or an exception text is still caught.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import orjson
import structlog

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"^(.*_)?(password|passwd|token|authorization|secret|captcha_answer|captcha_value|api_key|fernet_key)$", re.I
)
_MIN_SECRET_LEN = 4
_secrets: set[str] = set()
_longest_first: tuple[str, ...] = ()  # kept sorted on registration, not on every scrub (one per journal line)


def register_secret(value: str | None) -> None:
    """Make `value` disappear from every later log event, wherever it appears."""
    global _longest_first
    if value and len(value) >= _MIN_SECRET_LEN and value not in _secrets:
        _secrets.add(value)
        _longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def known_secrets() -> frozenset[str]:
    return frozenset(_secrets)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced; for messages that leave the process (errors, output)."""
    for secret in _longest_first:
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
        structlog.processors.JSONRenderer(serializer=_json_dumps) if json else structlog.dev.ConsoleRenderer(colors=False)
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


def secrets_in(text: str, secrets: Iterable[str]) -> list[str]:
    """Which of `secrets` appear in `text`; for tests that scan captured output."""
    return [s for s in secrets if s and s in text]


def redact(value: Any) -> Any:
    """`value` with secret-named fields and known secrets replaced by `***`; for data shown to people."""
    return _redact(value)
