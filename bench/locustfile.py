"""The earlier tool's way to the open, kept as a yardstick: Locust spraying NewOrder from every account.

    OPENING_BELL_CONFIG=config.yaml locust -f bench/locustfile.py --headless -u 10 -r 10 -t 30s

One Locust user per account (user n takes the n-th enabled account of the config, wrapping around),
each sending its NewOrder back to back with no wait, no stop on success and no cap, as the earlier tool
did. What it sends comes from the daemon's warm cache (`daemon.cache.Cache` for the config named by
OPENING_BELL_CONFIG): the token and the order's price and volume, so nothing is fetched at the open.
The host defaults to the first account's trading URL from the config (the simulator's, when the config
points at it); each request goes to its own account's trading URL.

Set OPENING_BELL_LOCUST_SENDS=FILE to get, as JSON, each user's first send (wall-clock ns) and how many
requests it made: the open-race benchmark reads it. Requires the `bench` extra (locust).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from pathlib import Path

from locust import HttpUser, constant, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from bench._prepared import ColdCache, PreparedOrder, prepared_orders  # noqa: E402
from daemon.config import load_config  # noqa: E402
from daemon.errors import UserError  # noqa: E402

SENDS_ENV = "OPENING_BELL_LOCUST_SENDS"

# Read once when Locust imports this file: asyncio.run drives the cache's async API to completion before
# any user (greenlet) exists, so gevent and asyncio never run at the same time.
try:
    _CONFIG = load_config(require_file=True)
    _ORDERS: list[PreparedOrder] = asyncio.run(prepared_orders(_CONFIG))
except (UserError, ColdCache) as exc:
    raise SystemExit(f"error: {exc}") from None
if not _ORDERS:
    raise SystemExit("error: the config has no enabled account to send for.")
_NEXT = itertools.count()
_FIRST_SEND_NS: dict[str, int] = {}
_SENT: dict[str, int] = {}


class NewOrderSprayer(HttpUser):
    """One account's NewOrder, again and again, as fast as answers come back."""

    host = _ORDERS[0].trading_url
    wait_time = constant(0)

    def on_start(self) -> None:
        self.order = _ORDERS[next(_NEXT) % len(_ORDERS)]
        self.headers = {"authorization": f"Bearer {self.order.token}", "content-type": "application/json"}
        self.body = orjson.dumps(self.order.payload())

    @task
    def new_order(self) -> None:
        name = self.order.account
        _FIRST_SEND_NS.setdefault(name, time.time_ns())
        _SENT[name] = _SENT.get(name, 0) + 1
        with self.client.post(
            self.order.url, data=self.body, headers=self.headers, name="NewOrder", catch_response=True
        ) as response:
            try:
                code = response.json().get("errorCode")
            except (ValueError, AttributeError):
                code = None
            if response.status_code != 200 or code not in (0, None):
                response.failure(f"HTTP {response.status_code}, errorCode {code}")


@events.quitting.add_listener
def _write_sends(**_kwargs: object) -> None:
    path = os.environ.get(SENDS_ENV)
    if path:
        Path(path).write_bytes(orjson.dumps({"first_send_ns": _FIRST_SEND_NS, "sent": _SENT}))
