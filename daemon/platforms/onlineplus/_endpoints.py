"""Online+'s paths, each in one place (onlineplus-api.md). The login page is on the web root (`https://online.{d}`);
everything else is relative to the API base that page names (`https://api.{d}` on both known tenants)."""

from __future__ import annotations

LOGIN_PAGE_PATH = "/Account/Login"  # HTML with `var ApiBaseURl = '...'` and F5's first cookie
CAPTCHA_PATH = "/Web/V1/Authenticate/GetCaptchaImage/Captcha"  # {"Data": {"Captcha": base64 PNG, "CaptchaKey"}}
LOGIN_PATH = "/Web/V2/Authenticate/Login"  # V2 here, V1 everywhere else
REMAIN_PATH = "/Web/V1/Accounting/Remain"  # Data.PurchasingPower: buying power, and the cheap probe
HOLDINGS_PATH = (
    "/Web/V1/RealtimePortfolio/Get/RealtimePortfolio?GetJustHasRemain=true&EndDate=undefined"
    "&BasedOnLastPositivePeriod=true&ActiveSymbolsStartDate=&ActiveSymbolsEndDate="
)  # the SPA's query exactly (`EndDate=undefined` is literal text)
ORDER_PATH = "/Web/V1/Order/Post"
ORDERS_PATH = "/Web/V1/Order/GetOrderList/Customer/GetOrderList"
