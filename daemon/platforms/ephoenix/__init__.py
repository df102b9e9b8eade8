"""Ephoenix, the platform of most brokers (and of IbTrader on its own hosts): session, codec, parsing, paths."""

from __future__ import annotations

from daemon.platforms._models import BrokerOrder
from daemon.platforms.ephoenix._codec import (
    MATCH_SLACK_S,
    SIDE_CODES,
    EphoenixCodec,
    bearer,
    classify,
    created_at,
    find_order,
    interpret,
    new_order_request,
    probe_request,
)
from daemon.platforms.ephoenix._endpoints import BOOK_PATH, NEW_ORDER_PATH
from daemon.platforms.ephoenix._parse import (
    broker_order,
    broker_time,
    normalise_order,
    parse_holdings,
    parse_instrument,
)
from daemon.platforms.ephoenix._session import EphoenixSession

__all__ = [
    "MATCH_SLACK_S",
    "created_at",
    "BOOK_PATH",
    "NEW_ORDER_PATH",
    "PLATFORM",
    "SIDE_CODES",
    "BrokerOrder",
    "EphoenixCodec",
    "EphoenixSession",
    "bearer",
    "broker_order",
    "broker_time",
    "classify",
    "find_order",
    "interpret",
    "new_order_request",
    "normalise_order",
    "parse_holdings",
    "parse_instrument",
    "probe_request",
]


def _platform():  # type: ignore[no-untyped-def]
    from daemon.platforms import Platform

    return Platform("ephoenix", EphoenixSession, EphoenixCodec)


PLATFORM = _platform()
