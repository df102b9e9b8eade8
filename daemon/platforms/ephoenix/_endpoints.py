"""Ephoenix's paths, each in one place (see ../shared/ephoenix-api.md); bases come from BrokerEndpoints."""

from __future__ import annotations

CAPTCHA_PATH = "/api/Captcha/GetCaptcha"  # identity
LOGIN_PATH = "/api/v2/accounts/login"  # identity
BOOK_PATH = "/api/v2/tradingbook/GetLastTradingBook"  # trading: buying power, and the cheap probe
NEW_ORDER_PATH = "/api/v2/orders/NewOrder"  # trading
CALCULATE_PATH = "/api/v2/orders/CalculateOrderParam"  # trading
OPEN_ORDERS_PATH = "/api/v2/orders/GetOpenOrders?type=1"  # trading
ORDERS_PATH = "/api/v2/orders/GetOrders"  # trading
HOLDINGS_PATH = "/api/portfolio/getrealsecuritypositionbydate"  # backoffice
INSTRUMENTS_PATH = "/api/v2/instruments/full"  # market data
