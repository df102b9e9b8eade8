"""easytrader's paths and constants, each in one place (easytrader-api.md). Identity paths are relative to
`brokers.<code>.identity_url` (https://login.emofid.com), API paths to `url` (https://api-mts.orbis.easytrader.ir),
the callback and the Referer to `spa_url` (https://d.easytrader.ir)."""

from __future__ import annotations

DEFAULT_SPA_URL = "https://d.easytrader.ir"  # the SPA: redirect_uri's origin and the Referer [confirmed live]
DEFAULT_REQUESTS_PER_HOUR = 1500  # per account [reported; not measured]

# identity server (OAuth2 authorization code + PKCE) [confirmed live]
AUTHORIZE_PATH = "/connect/authorize/callback"
TOKEN_PATH = "/connect/token"
CALLBACK_PATH = "/auth-callback"  # on the SPA: the one registered redirect_uri
CLIENT_ID = "easy_pkce"
SCOPE = "easy2_api mts_api openid profile"
VERIFIER_LENGTH = 96  # the decompiled client's verifier length
LOGIN_HOPS = 3  # the login page, after at most two more 301/302 hops [from code only]

# trading API (Bearer) [confirmed live unless noted]
SAME_LOGIN_PATH = "/easy/api/account/same-login"
SERVER_TIME_PATH = "/easy/api/account/server-time/{local_ms}"
MONEY_PATH = "/core/api/money/"  # the trailing slash is part of it
PORTFOLIO_PATH = "/core/api/portfolio/true"
ORDERS_PATH = "/core/api/order"
DRAFT_PATH = "/easy/api/draft"
DRAFT_DELETE_PATH = "/easy/api/draft/{id}"  # not in the doc: the simulator's assumption, so deleting is best effort
BATCH_PATH = "/core/api/order/batchCreate"
ORDER_PATH = "/core/api/v2/order"  # one immediate order [from code only]

APP_BUILD_NO = "16872"  # the SPA build of the live spike (open question 7: may go stale)
SCREEN = (1536, 729)
ORDER_FROM = 34  # meaning unknown; constant in every live call
VALIDITY_DAY = 0
SIDES = {"buy": 0, "sell": 1}  # not the project's 1/2 [confirmed live for buy]
