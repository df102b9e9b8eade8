"""One YAML file, validated up front; environment variables override any field.

A bad config must end in one sentence naming the field and the problem, so every pydantic
error is turned into a `ConfigError` here and nowhere else.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PositiveFloat,
    PositiveInt,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from daemon.days import WEEKDAYS, parse_day
from daemon.errors import ConfigError
from daemon.logs import register_secret

DEFAULT_CONFIG_PATH = Path("config.yaml")
CONFIG_PATH_ENV = "OPENING_BELL_CONFIG"
ENV_PREFIX = "OPENING_BELL__"
MAX_CONFIG_BYTES = 1_000_000
"""A config is a few kilobytes even with hundreds of accounts; anything past 1 MB is refused before it is parsed."""

KNOWN_BROKERS = ("gs", "shahr", "bbi", "karamad", "tejarat", "ebb", "hbc", "rabin", "ayandeh", "farabi", "ideal", "ib")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_ISIN = re.compile(r"^IR[A-Z0-9]{10}$")


class _Strict(BaseModel):
    # No NaN or infinity anywhere: every float here is a duration, a fee or a share.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _error_at(model: str, loc: tuple[str | int, ...], reason: str, value: Any) -> ValidationError:
    """A validation error placed at `loc` below the model, so the sentence names the very item (orders[1])."""
    error = PydanticCustomError("value_error", "{reason}", {"reason": reason})  # the reason is data, never a template
    return ValidationError.from_exception_data(model, [InitErrorDetails(type=error, loc=loc, input=value)])


def _no_nul(value: Path) -> Path:
    if "\0" in str(value):
        raise ValueError("a path cannot contain a NUL character")
    return value


ConfiguredDay = Annotated[date, BeforeValidator(parse_day)]
FsPath = Annotated[Path, AfterValidator(_no_nul)]
DAY_S = 86_400.0
Seconds = Annotated[float, Field(gt=0, le=DAY_S)]
"""A positive duration of at most a day: anything longer is a typo, and would overflow date arithmetic."""


class ScheduleSettings(_Strict):
    warmup: time = time(8, 20)
    open: time = time(8, 45)
    arm_before_s: Seconds = 60.0
    window_s: Seconds = 30.0
    refresh_s: Seconds = 20.0
    close: time | None = None
    trading_days: list[Weekday] = Field(default_factory=lambda: ["sat", "sun", "mon", "tue", "wed"], min_length=1)
    holidays: list[ConfiguredDay] = Field(default_factory=list)
    holidays_file: FsPath | None = None
    official_holidays: bool = True
    open_days: list[ConfiguredDay] = Field(default_factory=list)

    @field_validator("warmup", "open", "close", mode="before")
    @classmethod
    def _yaml_sexagesimal(cls, value: Any) -> Any:
        """YAML 1.1 reads an unquoted 08:45:00 as the number 31500; take it as seconds after midnight.

        (`load_config` keeps such values strings; this is for data parsed elsewhere.) A one-digit hour
        gets its zero: pydantic wants 08:20, people write 8:20.
        """
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 86400:
            micro = round(value * 1_000_000)
            return time(micro // 3_600_000_000, micro // 60_000_000 % 60, micro // 1_000_000 % 60, micro % 1_000_000)
        if isinstance(value, str) and re.match(r"^\d:", value.strip()):
            return "0" + value.strip()
        return value

    @field_validator("warmup", "open", "close")
    @classmethod
    def _local_time(cls, value: time | None) -> time | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("give a plain time of day like 08:45:00; the zone is the top-level timezone setting")
        return value

    @model_validator(mode="after")
    def _order_of_the_day(self) -> ScheduleSettings:
        if self.warmup >= self.open:
            raise ValueError("warmup must come before open")
        day = date(2000, 1, 3)  # any day with room on both sides (date.min has none before it)
        start = datetime.combine(day, self.warmup)
        open_at = datetime.combine(day, self.open)
        if open_at - timedelta(seconds=self.arm_before_s) <= start:
            raise ValueError(
                f"arm_before_s: arming {self.arm_before_s:g} s before the open would come before warmup; shorten it"
            )
        if (open_at + timedelta(seconds=self.window_s)).date() != day:
            raise ValueError(
                f"window_s: a window of {self.window_s:g} s after the open would run past midnight; shorten it"
            )
        if self.close is not None and datetime.combine(day, self.close) <= open_at + timedelta(seconds=self.window_s):
            raise ValueError(
                f"close: {self.close.isoformat()} is not after the fire window's end; give the market's close "
                "(12:30 in Tehran), later than open plus window_s"
            )
        for day in self.open_days:
            if WEEKDAYS[day.weekday()] not in self.trading_days:
                raise ValueError(
                    f"open_days: {day} is a {day:%A}, which is not in trading_days; open_days only reopens official holidays"
                )
            if day in self.holidays:
                raise ValueError(f"open_days: {day} is also in holidays; keep it in one of the two lists")
        return self


class TrackingSettings(_Strict):
    """Following the accepted orders through the broker's lists after the window (README "Order tracking")."""

    enabled: bool = True
    every_s: float = Field(default=30.0, ge=1, le=3600)
    until: time = time(9, 0)
    then_every_s: float = Field(default=300.0, ge=1, le=3600)

    @field_validator("until", mode="before")
    @classmethod
    def _yaml_time(cls, value: Any) -> Any:
        return ScheduleSettings._yaml_sexagesimal(value)

    @field_validator("until")
    @classmethod
    def _plain_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("give a plain time of day like 09:00; the zone is the top-level timezone setting")
        return value


class CacheTTL(_Strict):
    tokens: Seconds = 3600
    market: Seconds = 300
    buying_power: Seconds = 60
    order_params: Seconds = 30
    holdings: Seconds = 60


TOKEN_KEY_CREDENTIAL = "token-key"


class CacheSettings(_Strict):
    backend: Literal["file", "redis"] = "file"
    dir: FsPath = Path(".cache")
    redis_url: str | None = Field(default=None, repr=False)
    ttl: CacheTTL = CacheTTL()
    token_key_env: str | None = Field(default=None, min_length=1)
    token_key_file: FsPath | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> CacheSettings:
        if self.token_key_env is not None and self.token_key_file is not None:
            raise ValueError("give one of token_key_env or token_key_file, not both")
        return self

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(rediss?|unix)://\S+$", value):
            raise ValueError("give a URL like redis://127.0.0.1:6379/0 (or rediss://, unix://)")
        return value

    @model_validator(mode="after")
    def _redis_needs_url(self) -> CacheSettings:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("backend redis needs cache.redis_url, e.g. redis://127.0.0.1:6379/0")
        return self

    def resolve_token_key(self, environ: dict[str, str] | None = None) -> tuple[str, str] | None:
        """The key that seals cached tokens and where it came from, read now; None when there is none.

        Sources: the variable `token_key_env` names, the file `token_key_file` (0600, like a config
        holding a password), else `$CREDENTIALS_DIRECTORY/token-key` when systemd's LoadCredential= made one.
        """
        environ = os.environ if environ is None else environ
        if self.token_key_env is not None:
            value = environ.get(self.token_key_env, "").strip()
            if not value:
                raise ConfigError(
                    f"cache.token_key_env names {self.token_key_env}, which is not set; export it or remove the setting."
                )
            return value, f"environment variable {self.token_key_env}"
        if self.token_key_file is not None:
            path = _expand_credentials(self.token_key_file)
            return _read_key_file(path, "cache.token_key_file"), f"cache.token_key_file {path}"
        credentials = environ.get("CREDENTIALS_DIRECTORY")
        if credentials and (path := Path(credentials) / TOKEN_KEY_CREDENTIAL).is_file():
            return _read_key_file(path, "the credential"), f"credential {path}"
        return None


def _read_key_file(path: Path, what: str) -> str:
    try:
        mode = path.stat().st_mode
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or "not a readable text file"
        raise ConfigError(f"{what} {path} cannot be read ({reason}).") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what} {path} is readable by group or others; run chmod 600 {path}.")
    if not value:
        raise ConfigError(f"{what} {path} is empty; write a key from `python -m daemon cache keygen` into it.")
    return value


class GroupSettings(_Strict):
    """Several `daemon run` processes sharing one Redis: each account is leased to one of them at a time."""

    enabled: bool = False
    lease_ttl_s: PositiveFloat = 15.0
    heartbeat_s: PositiveFloat = 5.0
    host_group: str | None = Field(default=None, min_length=1)
    member_name: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _heartbeat_renews_in_time(self) -> GroupSettings:
        if self.heartbeat_s * 2 > self.lease_ttl_s:
            raise ValueError("heartbeat_s must be at most half of lease_ttl_s, so a lease is renewed before it ends")
        return self


class BrokerSettings(_Strict):
    platform: str = "ephoenix"
    """The broker's online-trading platform (daemon.platforms); IbTrader is Ephoenix on its own hosts."""
    identity_url: str | None = None
    trading_url: str | None = None
    backoffice_url: str | None = None
    market_data_url: str | None = None
    url: str | None = None
    """One base for a platform that serves everything from one host (Exir: https://{tenant}.exirbroker.com)."""
    rlc_url: str | None = None
    """The RLC market-data service, for platforms priced from it (Exir); its public host when not given."""
    domain: str | None = None
    """Online+: the tenant's bare domain (`hafezbroker.ir`; `{code}broker.ir` when not given), for its web root
    `https://online.{domain}` when `url` is not given and the API base `https://api.{domain}` when the login page
    names none."""
    api_url: str | None = None
    """Online+: an API base that wins over the one the login page names."""
    fee: float | None = Field(default=None, ge=0, lt=0.1)
    """Online+: the buy and sell fee rate sizing assumes (the platform has no fee endpoint); 0.005 when not given."""

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        from daemon.platforms.onlineplus import is_domain

        if value is not None and not is_domain(value):
            raise ValueError(f"{value!r} is not a bare domain like hafezbroker.ir (no https://, no path)")
        return value.lower() if value else value

    spa_url: str | None = None
    """The broker's web app origin, for a platform whose API wants it as Referer and redirect_uri (easytrader)."""
    requests_per_hour: PositiveInt | None = None
    """The broker's cap on one account's requests an hour (easytrader: 1500 when not given); None: no known cap."""

    @field_validator(
        "identity_url", "trading_url", "backoffice_url", "market_data_url", "url", "rlc_url", "api_url", "spa_url"
    )
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _platform_needs(self) -> BrokerSettings:
        from daemon.platforms import platform_for

        missing = [name for name in platform_for(self.platform).needs if getattr(self, name, None) is None]
        if missing:
            raise ValueError(f"platform {self.platform!r} needs {' and '.join(missing)} (the broker's base URL)")
        return self

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str) -> str:
        from daemon.platforms import names  # the registry: a platform registered by a test or a plugin counts

        if value not in names():
            raise ValueError(f"{value!r} is not a known broker platform; use one of {', '.join(names())}")
        return value


class BrokerEndpoints(BaseModel):
    """A broker's resolved base URLs: configured ones, else the Ephoenix pattern."""

    model_config = ConfigDict(frozen=True)
    code: str
    identity_url: str
    trading_url: str
    backoffice_url: str
    market_data_url: str
    platform: str = "ephoenix"
    url: str | None = None
    rlc_url: str | None = None
    domain: str | None = None
    api_url: str | None = None
    fee: float | None = None
    spa_url: str | None = None
    requests_per_hour: int | None = None


class CaptchaSettings(_Strict):
    solver: Literal["ocr", "command", "http", "manual"] = "ocr"
    command: list[str] | None = None
    url: str | None = None
    viewer: list[str] | None = None
    timeout_s: Seconds = 10.0
    max_attempts: PositiveInt = Field(default=5, le=1000)
    spacing_s: float = Field(default=1.0, ge=0, le=DAY_S)
    cooldown_s: float = Field(default=420.0, ge=0, le=DAY_S)
    throttle_waits: int = Field(default=2, ge=0, le=1000)
    worker_idle_s: float = Field(default=30.0, ge=0, le=DAY_S)

    @model_validator(mode="after")
    def _solver_needs(self) -> CaptchaSettings:
        if self.solver == "command" and not self.command:
            raise ValueError("solver 'command' needs captcha.command, the program and its arguments as a list")
        if self.solver == "http" and not self.url:
            raise ValueError("solver 'http' needs captcha.url, the OCR service's address")
        return self


class RetrySettings(_Strict):
    """The retry policy for broker calls before the open (never in the fire window)."""

    attempts: PositiveInt = Field(default=4, le=1000)
    backoff_s: float = Field(default=0.5, ge=0, le=3600)
    max_backoff_s: float = Field(default=5.0, ge=0, le=3600)
    deadline_s: Seconds = 30.0

    @model_validator(mode="after")
    def _backoff_order(self) -> RetrySettings:
        if self.max_backoff_s < self.backoff_s:
            raise ValueError("max_backoff_s must be at least backoff_s")
        return self


class ClientSettings(_Strict):
    timeout_s: Seconds = 10.0
    token_margin_s: float = Field(default=120.0, ge=0, le=DAY_S)
    ca_bundle: FsPath | None = None
    cross_check: bool = True
    retry: RetrySettings = RetrySettings()


class ExecutorSettings(_Strict):
    lead_ms: Literal["auto"] | float = "auto"
    spacing_ms: float = Field(default=300.0, ge=0, le=60_000)
    spacing_margin_ms: float = Field(default=20.0, ge=0, le=10_000)
    spacing_scope: Literal["account", "account_isin"] = "account"
    max_attempts: PositiveInt = Field(default=5, le=1000)
    answer_timeout_s: Seconds = 3.0
    final_check_s: Seconds = 5.0
    clock_source: Literal["auto", "server-time", "date", "timestamp", "ntp", "none"] = "auto"
    """auto: the broker's own clock endpoint where its platform has one (easytrader's server-time), else date."""
    ntp_server: str | None = None
    connect_timeout_s: Seconds = 5.0
    # When an order's answer is lost (or a restart finds an order that may have been sent), the broker's open
    # orders and today's orders are asked up to lookup_attempts times, lookup_spacing_ms apart, within the
    # window. Only a positive "no such order" allows a resend; on_unknown: resend sends anyway when the
    # broker never says (a duplicate may then be booked), the default wait reports "unknown: check the broker".
    lookup_attempts: PositiveInt = Field(default=10, le=1000)
    lookup_spacing_ms: float = Field(default=500.0, ge=0, le=60_000)
    on_unknown: Literal["wait", "resend"] = "wait"
    # From just before the final check to the end of the first-send loop the event loop's thread runs SCHED_FIFO at
    # realtime_priority with its memory locked (README "Real-time priority"). auto: when permitted; on: not getting
    # it is logged as an error (the open goes on); off: never tried.
    realtime: Literal["auto", "on", "off"] = "auto"
    realtime_priority: int = Field(default=20, ge=1, le=99)

    @field_validator("lead_ms")
    @classmethod
    def _lead(cls, value: Any) -> Any:
        if value != "auto" and not 0 <= float(value) <= 5000:
            raise ValueError("lead_ms is auto or a number of milliseconds from 0 to 5000")
        return value

    @model_validator(mode="after")
    def _ntp_needs_server(self) -> ExecutorSettings:
        if self.clock_source == "ntp" and not self.ntp_server:
            raise ValueError("clock_source ntp needs executor.ntp_server")
        return self


class FeeSettings(_Strict):
    buy: float = Field(default=0.003712, ge=0, lt=1)
    sell: float = Field(default=0.0088, ge=0, lt=1)


class OrderSettings(_Strict):
    isin: str
    side: Literal["buy", "sell"] = "buy"
    price: Literal["max", "min"] | PositiveInt = "max"
    volume: Literal["auto"] | PositiveInt = "auto"
    share: float | None = Field(default=None, gt=0, le=1)

    @field_validator("isin")
    @classmethod
    def _isin(cls, value: str) -> str:
        if not _ISIN.match(value):
            raise ValueError(f"{value!r} is not an ISIN like IRO1FOLD0001")
        return value


NOTIFY_EVENTS = (
    "fire_summary",
    "fill_summary",
    "warmup_failed",
    "token_renewal_failed",
    "service_stopped_in_window",
    "unknown_order",
)
"""What `notify.on` may name (README "Notifications")."""
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class NotifyUrlSource(_Strict):
    """A notification URL kept out of the config: in an environment variable or a private file."""

    url_env: str | None = Field(default=None, min_length=1)
    url_file: FsPath | None = None

    @model_validator(mode="after")
    def _one_source(self) -> NotifyUrlSource:
        if (self.url_env is None) == (self.url_file is None):
            raise ValueError("give exactly one of url_env or url_file")
        return self


def _url_kind(value: Any) -> str:
    return "function-source" if isinstance(value, dict | NotifyUrlSource) else "function-url"


# a URL, or where to read one; the tags start "function-" so that an error names notify.urls[i] and not the tag
NotifyUrl = Annotated[
    Annotated[Annotated[str, Field(min_length=1)], Tag("function-url")]
    | Annotated[NotifyUrlSource, Tag("function-source")],
    Discriminator(_url_kind),
]


class NotifySettings(_Strict):
    """Messages to the user through apprise URLs; secrets come from `${VAR}`, url_env or url_file."""

    urls: list[NotifyUrl] = Field(default_factory=list, repr=False)
    on: list[str] = Field(default_factory=lambda: list(NOTIFY_EVENTS))
    persian_digits: bool = False
    attempts: int = Field(default=3, ge=1, le=10)
    retry_delay_s: PositiveFloat = 10.0
    queue_size: int = Field(default=100, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        """YAML 1.1 reads a bare `on:` key as the boolean true: it is this setting's name, not a switch."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("on")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in NOTIFY_EVENTS:
                raise ValueError(f"{name!r} is not an event; choose from {', '.join(NOTIFY_EVENTS)}")
        return value

    @property
    def has_literal_urls(self) -> bool:
        """A URL written whole in the config (no `${VAR}` in it) may hold a token: the file must be private."""
        return any(isinstance(u, str) and not _ENV_REF.search(u) for u in self.urls)

    def resolve_urls(self, environ: dict[str, str] | None = None) -> list[str]:
        """Every URL with its secrets read now; each secret (and each whole URL) is kept out of the logs."""
        environ = os.environ if environ is None else environ
        resolved = []
        for index, given in enumerate(self.urls):
            where = f"notify.urls[{index}]"
            if isinstance(given, NotifyUrlSource):
                url = _notify_url_from(given, where, environ)
                _register_url_parts(url)
            else:
                url = _ENV_REF.sub(lambda m, w=where: _env_value(m.group(1), w, environ), given)
            register_secret(url)
            resolved.append(url)
        return resolved


def _register_url_parts(url: str) -> None:
    """A whole URL from a secret source hides its tokens anywhere (a bot token is the host of `tgram://`), so its
    long pieces are secrets too; names with a dot (hosts, addresses) and short words stay readable in logs."""
    rest = url.split("://", 1)[-1]
    for piece in re.split(r"[/:@?&=#]", rest):
        if len(piece) >= 10 and "." not in piece:
            register_secret(piece)


def _env_value(name: str, where: str, environ: dict[str, str]) -> str:
    value = environ.get(name, "")
    if not value:
        raise ConfigError(f"{where} uses environment variable {name}, which is not set; export it or change the URL.")
    register_secret(value)
    return value


def _notify_url_from(source: NotifyUrlSource, where: str, environ: dict[str, str]) -> str:
    if source.url_env is not None:
        return _env_value(source.url_env, where, environ).strip()
    path = _expand_credentials(source.url_file)  # type: ignore[arg-type]
    try:
        mode = path.stat().st_mode
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or "not a readable text file"
        raise ConfigError(f"{where}: url_file {path} cannot be read ({reason}).") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{where}: url_file {path} is readable by group or others; run chmod 600 {path}.")
    if not value:
        raise ConfigError(f"{where}: url_file {path} is empty; write the notification URL in it.")
    return value


class AccountSettings(_Strict):
    name: str = Field(min_length=1)
    broker: str = Field(min_length=1)
    username: str = Field(min_length=1)
    password_env: str | None = None
    password_file: FsPath | None = None
    password: str | None = Field(default=None, repr=False)
    priority: int = 0
    enabled: bool = True
    host_group: str | None = Field(default=None, min_length=1)
    orders: list[OrderSettings] = Field(min_length=1)

    @field_validator("username", "name", "broker", mode="before")
    @classmethod
    def _text_not_number(cls, value: Any) -> Any:
        """YAML reads an unquoted 0012345678 as the number 12345678: the leading zeros are already lost."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(
                f'write it in quotes ("0{value}" style): YAML read it as the number {value}, dropping leading zeros'
            )
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> AccountSettings:
        given = [n for n in ("password_env", "password_file", "password") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of password_env, password_file or password")
        shares = [o.share for o in self.orders if o.share is not None]
        if sum(shares) > 1.0 + 1e-9:
            raise ValueError("the orders' shares add up to more than 1")
        return self

    @model_validator(mode="after")
    def _one_order_per_isin_and_side(self) -> AccountSettings:
        """A restart finds an order again by account, ISIN and side (journal, open orders): a twin would pass for it."""
        first: dict[tuple[str, str], int] = {}
        for index, order in enumerate(self.orders):
            seen = first.setdefault((order.isin, order.side), index)
            if seen != index:
                raise _error_at(
                    "AccountSettings",
                    ("orders", index),
                    (
                        f"has the same isin and side as orders[{seen}] ({order.isin}, {order.side}); "
                        "an account places one order per symbol and side, so remove one or merge them"
                    ),
                    order.model_dump(),
                )
        return self

    def resolve_password(self) -> str:
        """The account's password, read now from its source (never stored in the config object)."""
        value = self._read_password()
        register_secret(value)
        return value

    def password_problem(self) -> str | None:
        """Why the password cannot be read now, as one sentence naming what to fix; None when it can.

        The start checks this so a missing password is heard of at warmup, not when a cached token
        ends at 08:44; what is read is dropped at once (logins still read it when they need it).
        """
        try:
            self._read_password()
        except ConfigError as exc:
            return str(exc)
        return None

    def _read_password(self) -> str:
        if self.password is not None:
            if not self.password:
                raise ConfigError(
                    f"account {self.name!r}: password is empty; write it in, or use password_env or password_file."
                )
            return self.password
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"account {self.name!r}: environment variable {self.password_env} is not set; export it or change password_env."
                )
            if not value:
                raise ConfigError(
                    f"account {self.name!r}: environment variable {self.password_env} is empty; "
                    "export the password in it or change password_env."
                )
            return value
        path = _expand_credentials(self.password_file)  # type: ignore[arg-type]
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"account {self.name!r}: password_file {path} cannot be read ({exc.strerror}); "
                "create it readable by this user or change password_file."
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"account {self.name!r}: password_file {path} is not UTF-8 text; write only the password in it."
            ) from None
        if not value:
            raise ConfigError(f"account {self.name!r}: password_file {path} is empty; write the password in it.")
        return value


def _expand_credentials(path: Path) -> Path:
    """Let password_file say `$CREDENTIALS_DIRECTORY/name`, as systemd's LoadCredential= provides."""
    return Path(os.path.expandvars(str(path))).expanduser()


class Config(_Strict):
    timezone: str = "Asia/Tehran"
    state_dir: FsPath = Path(".state")
    schedule: ScheduleSettings = ScheduleSettings()
    cache: CacheSettings = CacheSettings()
    group: GroupSettings = GroupSettings()
    market_data_url: str = "https://marketdatagw.ephoenix.ir"
    brokers: dict[str, BrokerSettings] = Field(default_factory=dict)
    captcha: CaptchaSettings = CaptchaSettings()
    client: ClientSettings = ClientSettings()
    executor: ExecutorSettings = ExecutorSettings()
    fees: FeeSettings = FeeSettings()
    notify: NotifySettings = NotifySettings()
    tracking: TrackingSettings = TrackingSettings()
    accounts: list[AccountSettings] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"{value!r} is not a time zone name like Asia/Tehran") from None
        return value

    @model_validator(mode="after")
    def _group_needs_redis(self) -> Config:
        if self.group.enabled and self.cache.backend != "redis":
            raise ValueError(
                "group.enabled needs cache.backend redis: the group's processes share leases and the cache in Redis"
            )
        return self

    @model_validator(mode="after")
    def _accounts_consistent(self) -> Config:
        seen: set[str] = set()
        logins: dict[tuple[str, str], int] = {}
        for index, account in enumerate(self.accounts):
            if account.name in seen:
                raise ValueError(f"account name {account.name!r} is used twice; names must be unique")
            seen.add(account.name)
            # One login is one broker account: two entries would fire its orders twice and fight over its token.
            login = logins.setdefault((account.broker, account.username.strip().casefold()), index)
            if login != index:
                raise _error_at(
                    "Config",
                    ("accounts", index),
                    (
                        f"has the same broker and username as accounts[{login}] ({self.accounts[login].name!r}: "
                        f"{account.broker}, {_shown(account.username)}); one broker login is one account, "
                        "so remove one or merge their orders"
                    ),
                    account.name,
                )
            if account.broker not in self.brokers and account.broker not in KNOWN_BROKERS:
                raise ValueError(
                    f"account {account.name!r} uses broker {account.broker!r}, which is neither a known Ephoenix broker "
                    "nor listed under brokers"
                )
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def broker(self, code: str) -> BrokerEndpoints:
        given = self.brokers.get(code, BrokerSettings())
        return BrokerEndpoints(
            code=code,
            identity_url=given.identity_url or given.url or f"https://identity-{code}.ephoenix.ir",
            trading_url=given.trading_url or given.url or f"https://api-{code}.ephoenix.ir",
            backoffice_url=given.backoffice_url or given.url or f"https://backofficeexternal-{code}.ephoenix.ir",
            market_data_url=given.market_data_url or self.market_data_url.rstrip("/"),
            platform=given.platform,
            url=given.url,
            rlc_url=given.rlc_url,
            domain=given.domain,
            api_url=given.api_url,
            fee=given.fee,
            spa_url=given.spa_url,
            requests_per_hour=given.requests_per_hour,
        )

    def select_accounts(self, names: list[str] | None = None) -> list[AccountSettings]:
        """Enabled accounts, or exactly the named ones; an unknown name is an error, not an empty run."""
        if not names:
            return [a for a in self.accounts if a.enabled]
        by_name = {a.name: a for a in self.accounts}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(f"no account named {', '.join(map(repr, unknown))} in the config; check --accounts.")
        return [by_name[n] for n in names]


class ConfigLoader(yaml.SafeLoader):
    """YAML 1.1 without two surprises: `9:30` read as the number 570 (base 60) and `2026-03-21` read as a date.

    Both stay strings for pydantic to parse, so `warmup: 9:30` means 09:30 and a Jalali `1404-06-31`
    (not a Gregorian date) is not a crash in the YAML parser.
    """

    yaml_implicit_resolvers = {
        first: [
            (tag, regexp) for tag, regexp in resolvers if tag.rsplit(":", 1)[-1] not in ("int", "float", "timestamp")
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


ConfigLoader.add_implicit_resolver(  # PyYAML's int, less its base-60 form
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
ConfigLoader.add_implicit_resolver(  # PyYAML's float, less its base-60 form
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def resolve_config_path(
    explicit: str | os.PathLike[str] | None, environ: dict[str, str] | None = None
) -> tuple[Path, bool]:
    """The config path and whether the user named it (a named file must exist; the default may be absent)."""
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit), True
    if environ.get(CONFIG_PATH_ENV):
        return Path(environ[CONFIG_PATH_ENV]), True
    return DEFAULT_CONFIG_PATH, False


def load_config(
    explicit: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    require_file: bool = False,
) -> Config:
    environ = dict(os.environ if environ is None else environ)
    path, named = resolve_config_path(explicit, environ)
    raw: Any = {}
    if named or require_file or _exists(path):
        raw = _read_yaml(path)
    data = apply_env_overrides(raw, environ)
    config = validate_config(data, source=str(path), overrides=_env_overrides(environ))
    if config.notify.has_literal_urls:
        _refuse_readable_secrets(path, "a notify URL written whole (no ${VAR} in it)")
    if any(a.password is not None for a in config.accounts):
        _refuse_readable_secrets(path)
        for account in config.accounts:
            register_secret(account.password)
    return config


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long, or a NUL in it: not a file that is there
        return False


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)  # never more: /dev/zero or a wrong file must not be read whole
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {path} is over 1 MB, and a config is a few kilobytes; "
                "check that --config names the right file."
            )
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text would
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found; copy config.yaml.example to {path} or pass --config."
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror}).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text.") from None
    except ValueError:  # a NUL in the name
        raise ConfigError(f"config file name {str(path)!r} cannot be a file name; pass another --config.") from None
    try:
        data = yaml.load(text, Loader=ConfigLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix the syntax there.") from None
    except RecursionError:
        raise ConfigError(
            f"config file {path} nests its settings too deeply to be a config; fix its structure."
        ) from None
    except _YAML_VALUE_ERRORS:  # PyYAML's constructors: `!!int x`, `!!timestamp x`, a 5000-digit number
        raise ConfigError(
            f"config file {path} holds a value that does not read as its type "
            "(a !!tag that does not fit, or a number too long); fix that value."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings at the top level.")
    return data


def _refuse_readable_secrets(path: Path, what: str = "a literal password") -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"config file {path} holds {what} and is readable by group or others; run chmod 600 {path}.")


_YAML_VALUE_ERRORS = (Exception,)
"""PyYAML's constructors raise more than YAMLError on a tag that does not fit (`!!int` alone is an
IndexError, `!!timestamp x` an AttributeError, a 5000-digit number a ValueError): any of it is bad text."""


def _env_overrides(environ: dict[str, str]) -> list[tuple[str, list[str]]]:
    """Each OPENING_BELL__ variable, in the order applied, with the setting path it names (lowercase parts)."""
    return [
        (name, [p.lower() for p in name[len(ENV_PREFIX) :].split("__")])
        for name in sorted(environ)
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX)
    ]


def apply_env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """OPENING_BELL__CACHE__DIR=/x sets cache.dir; numeric parts index lists (ACCOUNTS__0__PASSWORD)."""
    result = copy.deepcopy(data)  # keeps YAML aliases shared (and cycles finite), where a naive copy would expand them
    for name, parts in _env_overrides(environ):
        if any(not p for p in parts):
            raise ConfigError(
                f"environment variable {_shown(name)} has an empty part between '__'; remove the doubled separator."
            )
        try:
            value = yaml.load(environ[name], Loader=ConfigLoader) if environ[name] else ""  # noqa: S506
        except (yaml.YAMLError, *_YAML_VALUE_ERRORS):
            value = environ[name]
        if parts[-1] in {"password", "username"}:
            value = environ[name]
        _set_path(result, parts, value, name)
    return result


def _shown(name: str) -> str:
    """A name as given when it is plain text, else quoted, so a message stays one line."""
    return name if name.isprintable() and " " not in name else repr(name)


def _set_path(node: Any, parts: list[str], value: Any, env_name: str) -> None:
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"environment variable {_shown(env_name)} names list item {part!r}, which the config does not have."
                )
            if last:
                node[int(part)] = value
                return
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"environment variable {_shown(env_name)} goes below a setting that is not a section.")
        if last:
            node[part] = value
            return
        node = node.setdefault(part, {})


def validate_config(data: Any, source: str = "config", overrides: list[tuple[str, list[str]]] | None = None) -> Config:
    """A Config, or a ConfigError naming where the bad value came from: `source`, or the variable that set it."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source, overrides or [])) from None


def describe_validation_error(exc: ValidationError, source: str, overrides: list[tuple[str, list[str]]]) -> str:
    """The first error as one sentence: where it came from, the field path, then what is wrong with it.

    A value an environment variable set (or lies inside) is blamed on that variable, not on the file,
    which does not hold it; an error about a section a variable changed names the file and the variables.
    """
    error = exc.errors(include_url=False)[0]
    loc = _loc_parts(error["loc"])
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    message = message.replace("Extra inputs are not permitted", "is not a known setting (check the spelling)")
    message = message.replace("Field required", "is required")
    extra = len(exc.errors()) - 1
    more = f" ({extra} more problem{'s' if extra > 1 else ''} after this one)" if extra else ""
    named = [str(p) for p in loc]
    setting = [(name, parts) for name, parts in overrides if named[: len(parts)] == parts]
    if setting:
        name, parts = max(setting, key=lambda found: len(found[1]))  # the most specific variable (..._ORDERS__0__ISIN)
        head, loc = _shown(name), loc[len(parts) :]
    else:
        within = [_shown(name) for name, parts in overrides if parts[: len(named)] == named]
        head = f"{source} with {', '.join(within)}" if within else source
    sentence = ": ".join(text for text in (head, _format_loc(loc), message) if text)
    return sentence.rstrip(".") + more + "."


def _loc_parts(loc: tuple[Any, ...]) -> list[Any]:
    """The setting path in a pydantic error location, less the validator steps pydantic puts in it."""
    return [
        part
        for part in loc
        if isinstance(part, int) or not str(part).startswith(("function-", "literal[", "int", "constrained-int"))
    ]


def _format_loc(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = _shown(str(part))
            out += f".{text}" if out else text
    return out
