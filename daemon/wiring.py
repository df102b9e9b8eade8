"""The wiring: the long-lived shared pieces (cache, HTTP pool, captcha solver, per-host limiter) and one client
per account, built once from the config and closed together (the systemd loop is `daemon.service._loop.ServiceLoop`)."""

from __future__ import annotations

from daemon.account import CaptchaSolver, HostRateLimiter, make_solver
from daemon.cache import Cache
from daemon.client import BrokerClient, HttpPool, LoginLock, NoLoginLock
from daemon.clock import Clock
from daemon.config import AccountSettings, Config
from daemon.logs import get_logger

log = get_logger("wiring")


class Wiring:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        solver: CaptchaSolver | None = None,
        cache: Cache | None = None,
        login_lock: LoginLock | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.cache = cache or Cache.from_config(config, clock)
        # A shared store (Redis) brings its own lock, so processes sharing it never log one account in twice.
        shared = getattr(self.cache.backend, "login_lock", None)
        self.login_lock: LoginLock = login_lock or (shared() if shared is not None else NoLoginLock())
        self.http = HttpPool(config.client.timeout_s, str(config.client.ca_bundle) if config.client.ca_bundle else None)
        self.solver = solver or make_solver(config.captcha, clock=clock)
        self.limiter = HostRateLimiter(config.captcha.spacing_s, clock)
        self._clients: dict[str, BrokerClient] = {}

    def client(self, account: AccountSettings) -> BrokerClient:
        """The account's client, on its broker's platform (`brokers.<code>.platform`)."""
        if account.name not in self._clients:
            self._clients[account.name] = BrokerClient(
                account,
                self.config.broker(account.broker),
                self.config,
                self.cache,
                self.http,
                self.solver,
                self.limiter,
                self.clock,
                shared_lock=self.login_lock,
            )
        return self._clients[account.name]

    def clients(self, accounts: list[AccountSettings]) -> list[BrokerClient]:
        return [self.client(account) for account in accounts]

    def log_requests(self, accounts: list[AccountSettings], event: str) -> None:
        """A line per capped account (easytrader's hourly requests): what it has spent and what is left."""
        for account in accounts:
            client = self.client(account)
            if client.requests is not None:
                log.info(event, account=account.name, broker=client.broker, **client.requests.summary())

    async def rest_solver(self) -> None:
        """No login is pending (the warmup or the arm is done): a solver holding a process (OCR) lets it go now."""
        rest = getattr(self.solver, "rest", None)
        if rest is not None:
            await rest()

    async def aclose(self) -> None:
        await self.http.close()
        closer = getattr(self.solver, "aclose", None)
        if closer is not None:
            await closer()
        await self.cache.aclose()

    async def __aenter__(self) -> Wiring:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
