"""The tenant's clock as its answers' `Date` headers show it, for signing the slow path's reads.

X-App-N signs the current UTC second and the server refuses a stale one (how stale is unknown). At the open
the executor signs on the broker's measured clock; warmup and refreshes come before any measurement, so a
host clock a few seconds off would have every read refused. Each answer's `Date` (whole seconds) bounds the
server's time at the request's midpoint to [D, D + 1): its middle, D + 0.5, is within half a second of
the truth plus half the round trip. The offset is used only when it is a second or more, so a host on NTP
signs on its own clock exactly as before.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

NS = 1_000_000_000
TRUSTED_OFFSET_NS = NS
"""Below a second the host's own clock is at least as good as a Date header's whole seconds."""


class ServerClock:
    def __init__(self) -> None:
        self.offset_ns = 0

    def note(self, date_header: str | None, sent_ns: int, received_ns: int) -> None:
        """One answer's Date, with our wall clock when the request left and when its answer came."""
        if not date_header:
            return
        try:
            server_ns = int(parsedate_to_datetime(date_header).timestamp()) * NS + NS // 2
        except (TypeError, ValueError, OverflowError):
            return
        offset = server_ns - (sent_ns + received_ns) // 2
        self.offset_ns = offset if abs(offset) >= TRUSTED_OFFSET_NS else 0

    def second(self, host_ns: int) -> int:
        """The server's UTC second at our wall clock's `host_ns`."""
        return (host_ns + self.offset_ns) // NS
