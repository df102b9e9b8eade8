"""The orders a warm cache holds: each account's token and order parameters, read through `daemon.cache`.

The raw reference and the Locust harness send what the daemon would send, from what its warmup stored,
so no contender logs in or sizes an order during the race.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.cache import Cache
from daemon.client import OrderParams
from daemon.clock import SystemClock
from daemon.config import BrokerEndpoints, Config
from daemon.platforms import platform_for
from daemon.platforms.ephoenix import NEW_ORDER_PATH
from daemon.platforms.ephoenix._codec import new_order_body


@dataclass(frozen=True)
class PreparedOrder:
    account: str
    username: str
    trading_url: str
    token: str
    isin: str
    side: str
    price: int
    volume: int
    endpoints: BrokerEndpoints | None = None

    @property
    def url(self) -> str:
        return self.trading_url + NEW_ORDER_PATH

    def payload(self) -> dict[str, object]:
        """The NewOrder body, as the Ephoenix codec encodes it."""
        return new_order_body(self.isin, self.side, self.price, self.volume)

    def request_bytes(self, utc_second: int | None = None) -> bytes:
        """The order as its platform's codec builds it; a signed one (Exir) for `utc_second`."""
        made = self._codec().order_request(self.token, self.isin, self.side, self.price, self.volume)
        return made if isinstance(made, bytes) else made.at(_second(utc_second))

    def probe_bytes(self, utc_second: int | None = None) -> bytes:
        """The platform's cheap authenticated call (a connection's warming request), signed like the order."""
        made = self._codec().probe_request(self.token)
        return made if isinstance(made, bytes) else made.at(_second(utc_second))

    def _codec(self):  # type: ignore[no-untyped-def]
        if self.endpoints is None:
            raise ValueError(f"account {self.account}: no broker endpoints to build its requests with")
        return platform_for(self.endpoints.platform).codec(self.endpoints)


def _second(utc_second: int | None) -> int:
    if utc_second is None:
        raise ValueError("a signed request needs the UTC second it is sent in")
    return utc_second


class ColdCache(RuntimeError):
    """Some account has no valid token or order parameters in the cache."""


async def prepared_orders(config: Config) -> list[PreparedOrder]:
    """Each enabled account's first order from the cache; ColdCache names the accounts that are not warm."""
    out: list[PreparedOrder] = []
    cold: list[str] = []
    async with Cache.from_config(config, SystemClock()) as cache:
        for account in config.accounts:
            if not account.enabled:
                continue
            order = account.orders[0]
            token = await cache.get_token(account.username, account.broker)
            params = await cache.get_order_params(account.username, account.broker, order.isin)
            if not token or not params:
                cold.append(account.name)
                continue
            ready = OrderParams.from_cache(params)
            out.append(
                PreparedOrder(
                    account.name,
                    account.username,
                    config.broker(account.broker).trading_url,
                    token["token"],
                    order.isin,
                    order.side,
                    ready.price,
                    ready.volume,
                    config.broker(account.broker),
                )
            )
    if cold:
        raise ColdCache(
            f"{len(cold)} account(s) are not warm in {config.cache.dir} (first: {cold[0]}); "
            "run the daemon's warmup (python -m daemon warmup) first."
        )
    return out
