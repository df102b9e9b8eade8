"""Errors a user can cause and fix; the CLI turns them into one sentence and exit code 2."""


class UserError(Exception):
    """Something the user can fix (config, arguments, files); its message is one sentence that says what."""

    exit_code = 2


class ConfigError(UserError):
    """The configuration file or its environment overrides are invalid."""


class BrokerError(Exception):
    """A broker answered badly or not at all. Messages name the account and what happened, never a secret."""


class AuthError(BrokerError):
    """Wrong username or password (never retried: retries lock accounts), or a token refused after a fresh login."""


class CaptchaError(BrokerError):
    """Every captcha attempt of a login was wrong or unsolvable."""


class RateLimited(BrokerError):
    """The broker throttles this host (HTTP 429 or an image-less captcha); wait `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OrderRejected(BrokerError):
    """The broker refused an order with an error code; `message` is the broker's own text (often Persian)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"order rejected with code {code}: {message}")
        self.code = code
        self.message = message


class BrokerUnavailable(BrokerError):
    """No usable answer: connection refused or reset, timeout, 5xx, an HTML page or malformed JSON."""
