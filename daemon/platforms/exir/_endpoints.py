"""Exir's paths, each in one place (exir-api.md); every one is relative to the tenant root (`brokers.<code>.url`),
which is also the form that is signed (exir-api.md, "In a simulator that serves tenants under a path prefix")."""

from __future__ import annotations

BOOTSTRAP_PATH = "/exir"  # sets cookiesession1; the body is ignored
CAPTCHA_PATH = "/captcha"  # a JPEG of five digits; the header client_login_id
LOGIN_PATH = "/api/v2/login"
STOCK_INFO_PATH = "/api/v1/user/stockInfo"  # purchaseUpperBound: buying power, and the cheap probe
WAGES_PATH = "/api/v2/wages/instrument/{isin}"  # fee rates
HOLDINGS_PATH = "/api/v1/user/portfoReport"
ORDER_PATH = "/api/v1/order"
ORDERBOOK_PATH = "/api/v1/user/orderbookReport?size={size}&startDate={start}&mmtpTypeId=null&endDate={end}"
