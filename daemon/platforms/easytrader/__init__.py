"""easytrader (Mofid's Orbis platform): the OAuth2 code + PKCE session with its BotDetect captcha and same-login,
drafts made at the arm and one batchCreate at the open, server-time as the broker's clock, and every request
charged to the account's hourly budget (../shared/easytrader-api.md). Prices and caps come from RLC."""

from __future__ import annotations

from daemon.platforms.easytrader._codec import (
    MARKET_CLOSED,
    USER_AGENT,
    EasytraderCodec,
    api_headers,
    batch_body,
    batch_request,
    classify,
    draft_body,
    find_order,
    interpret,
    oms_codes,
    order_body,
    order_request,
    probe_request,
)
from daemon.platforms.easytrader._endpoints import DEFAULT_REQUESTS_PER_HOUR, DEFAULT_SPA_URL
from daemon.platforms.easytrader._oauth import Pkce, authorize_url, code_from, token_form
from daemon.platforms.easytrader._parse import (
    FALLBACK_FEE,
    EasytraderToken,
    LoginPage,
    ServerTime,
    TokenUnreadable,
    broker_order,
    created_time,
    login_failure,
    orders_of_day,
    parse_holding,
    parse_money,
    parse_server_time,
    read_login_page,
    server_offset_ms,
    token_answer,
)
from daemon.platforms.easytrader._session import EasytraderSession

__all__ = [
    "DEFAULT_REQUESTS_PER_HOUR",
    "DEFAULT_SPA_URL",
    "FALLBACK_FEE",
    "MARKET_CLOSED",
    "PLATFORM",
    "USER_AGENT",
    "EasytraderCodec",
    "EasytraderSession",
    "EasytraderToken",
    "LoginPage",
    "Pkce",
    "ServerTime",
    "TokenUnreadable",
    "api_headers",
    "authorize_url",
    "batch_body",
    "batch_request",
    "broker_order",
    "classify",
    "code_from",
    "created_time",
    "draft_body",
    "find_order",
    "interpret",
    "login_failure",
    "oms_codes",
    "order_body",
    "order_request",
    "orders_of_day",
    "parse_holding",
    "parse_money",
    "parse_server_time",
    "probe_request",
    "read_login_page",
    "server_offset_ms",
    "token_answer",
    "token_form",
]


def _platform():  # type: ignore[no-untyped-def]
    from daemon.platforms import Platform

    return Platform("easytrader", EasytraderSession, EasytraderCodec, needs=("url", "identity_url"))


PLATFORM = _platform()
