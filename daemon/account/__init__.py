"""One account's broker access below the client (`daemon.client` is the face): the captcha solvers,
spacing per identity host, the retry policy, token lifetimes.
"""

from __future__ import annotations

from daemon.account._captcha import (
    OCR_EXTRA_MISSING,
    CaptchaSolver,
    CaptchaUnsolved,
    Terminal,
    UnknownImageFormat,
    ascii_digits,
    five_digit_answer,
    make_solver,
    sniff_image_format,
)
from daemon.account._ratelimit import (
    HostRateLimiter,
)
from daemon.account._retry import (
    RetryPolicy,
    no_retries,
)
from daemon.account._tokens import (
    token_valid_until,
)

__all__ = [
    "CaptchaSolver",
    "CaptchaUnsolved",
    "HostRateLimiter",
    "OCR_EXTRA_MISSING",
    "RetryPolicy",
    "Terminal",
    "UnknownImageFormat",
    "ascii_digits",
    "five_digit_answer",
    "make_solver",
    "no_retries",
    "sniff_image_format",
    "token_valid_until",
]
