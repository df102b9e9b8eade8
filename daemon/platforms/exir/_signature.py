"""Exir's `X-App-N` request signature (exir-api.md, "The X-App-N request signature" [confirmed live]).

X-App-N = f"{W * t * S}.{t * S}", where t is the second of the UTC day, S the sum of the code points of the
request target (path and query, relative to the tenant root), and W the 5-digit window of the seed's digits
D = nt[2:] at idx = |t mod (L - 5) - n0| (n0 = int(nt[:2]), L = len(D)).

Everything but t is known before the open, so `Signer` keeps n0, D and L and the window W for every residue
of t mod (L - 5), and `PathSigner` adds S: at send time only two multiplications and a formatting remain.
"""

from __future__ import annotations

DAY_S = 86_400


class SeedError(ValueError):
    """The login's `nt` cannot sign: not decimal digits, or too short (the algorithm needs len(nt) - 2 > 5)."""


def target_sum(target: str) -> int:
    """S: the sum of the code points of the request target exactly as sent (path plus `?` and query)."""
    return sum(map(ord, target))


def day_second(utc_second: int) -> int:
    """t: seconds since UTC midnight of a Unix-epoch second (Unix time has no leap seconds: a plain modulo)."""
    return utc_second % DAY_S


class Signer:
    """One login's seed, precomputed: the window W for each residue of t mod (L - 5)."""

    __slots__ = ("_period", "_windows", "n0")

    def __init__(self, nt: str) -> None:
        if not isinstance(nt, str) or not nt.isascii() or not nt.isdigit():
            raise SeedError("the login's nt is not a string of decimal digits")
        digits = nt[2:]
        period = len(digits) - 5
        if period <= 0:
            raise SeedError(f"the login's nt has {len(nt)} digits; signing needs at least 8")
        self.n0 = int(nt[:2])
        self._period = period
        windows = []
        for residue in range(period):
            idx = abs(residue - self.n0)
            window = digits[idx : idx + 5]  # a shorter tail near the end, as the reference does
            if not window:
                raise SeedError(f"the login's nt has {len(nt)} digits, too few for its n0 of {self.n0}")
            windows.append(int(window))
        self._windows = tuple(windows)

    def window(self, t: int) -> int:
        """W for second-of-day t."""
        return self._windows[t % self._period]

    def sign(self, target: str, utc_second: int) -> str:
        """The header value for `target` in the Unix-epoch second `utc_second`."""
        return self.for_target(target).value(utc_second)

    def for_target(self, target: str) -> PathSigner:
        return PathSigner(self, target_sum(target))


class PathSigner:
    """One seed and one request target: the header value of any second."""

    __slots__ = ("period", "s", "windows")

    def __init__(self, signer: Signer, s: int) -> None:
        self.windows = signer._windows  # W for each residue of t mod period
        self.period = signer._period
        self.s = s

    def value(self, utc_second: int) -> str:
        t = utc_second % DAY_S
        b = t * self.s
        return f"{self.windows[t % self.period] * b}.{b}"


def x_app_n(nt: str, target: str, utc_second: int) -> str:
    """The signature computed from scratch (the slow path, and the reference the tests hold the fast one to)."""
    return Signer(nt).sign(target, utc_second)
