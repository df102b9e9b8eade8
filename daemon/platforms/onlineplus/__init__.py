"""Tadbir Online+ (OnlinePlus), the platform brokers such as Hafez and Dnovin run under their own domains: session,
codec, parsing, paths (../shared/onlineplus-api.md). "Exir minus the signer": a cookie session behind an F5 front
door, no Bearer, no signature; prices and order-size caps from RLC (`daemon.platforms.rlc`)."""

from __future__ import annotations

from daemon.platforms.onlineplus._codec import (
    DAY_VALIDITY,
    SIDES,
    USER_AGENT,
    OnlinePlusCodec,
    classify,
    find_order,
    interpret,
    order_body,
    order_request,
    probe_request,
)
from daemon.platforms.onlineplus._endpoints import LOGIN_PAGE_PATH, ORDER_PATH, ORDERS_PATH, REMAIN_PATH
from daemon.platforms.onlineplus._parse import (
    FALLBACK_FEE,
    SESSION_LIFETIME_S,
    OnlinePlusToken,
    Tenant,
    TokenUnreadable,
    accepts_answer,
    api_base_from_page,
    blocked_reason,
    broker_order,
    is_domain,
    jalali,
    login_lifetime_s,
    order_time,
    parse_buying_power,
    parse_captcha,
    parse_holding,
    tenant_of,
)
from daemon.platforms.onlineplus._session import ALL_ORDERS_STATE, AUTH_COOKIE, EXECUTED_STATE, OnlinePlusSession

__all__ = [
    "ALL_ORDERS_STATE",
    "AUTH_COOKIE",
    "DAY_VALIDITY",
    "EXECUTED_STATE",
    "FALLBACK_FEE",
    "LOGIN_PAGE_PATH",
    "ORDERS_PATH",
    "ORDER_PATH",
    "PLATFORM",
    "REMAIN_PATH",
    "SESSION_LIFETIME_S",
    "SIDES",
    "USER_AGENT",
    "OnlinePlusCodec",
    "OnlinePlusSession",
    "OnlinePlusToken",
    "Tenant",
    "TokenUnreadable",
    "accepts_answer",
    "api_base_from_page",
    "blocked_reason",
    "broker_order",
    "classify",
    "find_order",
    "interpret",
    "is_domain",
    "jalali",
    "login_lifetime_s",
    "order_body",
    "order_request",
    "order_time",
    "parse_buying_power",
    "parse_captcha",
    "parse_holding",
    "probe_request",
    "tenant_of",
]


def _platform():  # type: ignore[no-untyped-def]
    from daemon.platforms import Platform

    return Platform("onlineplus", OnlinePlusSession, OnlinePlusCodec)


PLATFORM = _platform()
