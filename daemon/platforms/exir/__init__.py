"""Exir (Rayan HamAfza), the platform of `{tenant}.exirbroker.com` brokers: session, codec, signature, parsing,
paths (../shared/exir-api.md). Prices and order-size caps come from RLC (`daemon.platforms.rlc`)."""

from __future__ import annotations

from daemon.platforms.exir._codec import (
    SIDES,
    ExirCodec,
    Signed,
    classify,
    find_order,
    interpret,
    order_body,
    order_request,
    probe_request,
)
from daemon.platforms.exir._endpoints import ORDER_PATH, ORDERBOOK_PATH, STOCK_INFO_PATH
from daemon.platforms.exir._parse import (
    FALLBACK_FEE,
    ExirToken,
    TokenUnreadable,
    accepts_answer,
    broker_code,
    broker_order,
    entry_time,
    jalali,
    parse_buying_power,
    parse_fees,
    parse_holding,
)
from daemon.platforms.exir._session import ExirSession
from daemon.platforms.exir._signature import PathSigner, SeedError, Signer, x_app_n

__all__ = [
    "FALLBACK_FEE",
    "ORDERBOOK_PATH",
    "ORDER_PATH",
    "PLATFORM",
    "SIDES",
    "STOCK_INFO_PATH",
    "ExirCodec",
    "ExirSession",
    "ExirToken",
    "PathSigner",
    "SeedError",
    "Signed",
    "Signer",
    "TokenUnreadable",
    "accepts_answer",
    "broker_code",
    "broker_order",
    "classify",
    "entry_time",
    "find_order",
    "interpret",
    "jalali",
    "order_body",
    "order_request",
    "parse_buying_power",
    "parse_fees",
    "parse_holding",
    "probe_request",
    "x_app_n",
]


def _platform():  # type: ignore[no-untyped-def]
    from daemon.platforms import Platform

    return Platform("exir", ExirSession, ExirCodec, needs=("url",))


PLATFORM = _platform()
