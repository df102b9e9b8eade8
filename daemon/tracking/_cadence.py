"""When the tracker reads the broker's lists, as pure arithmetic on aware datetimes (arq keeps its cron
arithmetic apart from its I/O the same way): nothing here reads a clock or the network.

The beats of a day: from the window's end every `every` while before `until`, then every `then_every` from
`until` while before the close, and the close itself, the last read. A slow beat skips the ones it ran over
(`next_after` gives the first beat after now), so the reads never bunch up and their count has a bound (`bound`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo


@dataclass(frozen=True)
class Cadence:
    start: datetime  # the window's end: the first beat
    every: timedelta
    until: datetime  # the fast beats end here (clamped between start and close)
    then_every: timedelta
    close: datetime  # the last beat

    def __post_init__(self) -> None:
        if self.every <= timedelta(0) or self.then_every <= timedelta(0):
            raise ValueError("a cadence needs positive steps")
        if self.close < self.start:
            raise ValueError("a cadence cannot close before it starts")

    @classmethod
    def of_day(
        cls,
        day: date,
        tz: tzinfo,
        start: datetime,
        close: datetime,
        every_s: float,
        until: time,
        then_every_s: float,
    ) -> Cadence:
        """The day's cadence from the settings (`tracking.every_s`, `until` as a time of day, `then_every_s`)."""
        fast_end = min(max(datetime.combine(day, until, tzinfo=tz), start), close)
        return cls(start, timedelta(seconds=every_s), fast_end, timedelta(seconds=then_every_s), close)

    def beats(self) -> Iterator[datetime]:
        """Every beat of the day, in order, the close last."""
        beat = self.start
        while beat < self.until:
            yield beat
            beat += self.every
        beat = self.until
        while beat < self.close:
            yield beat
            beat += self.then_every
        yield self.close

    def first_from(self, now: datetime) -> datetime | None:
        """The first beat at or after `now` (a tracker started mid-morning reads at its next beat, not at once
        unless one is due); None after the close."""
        if now <= self.start:
            return self.start
        return self.next_after(now - timedelta(microseconds=1))

    def next_after(self, now: datetime) -> datetime | None:
        """The first beat strictly after `now`: beats a slow read ran over are skipped; None after the close."""
        if now >= self.close:
            return None
        if now < self.start:
            return self.start
        if now < self.until:
            beat = self.start + self.every * ((now - self.start) // self.every + 1)
            if beat < self.until:
                return beat
            now = self.until - timedelta(microseconds=1)
        beat = self.until + self.then_every * ((now - self.until) // self.then_every + 1)
        return beat if beat < self.close else self.close

    def bound(self, since: datetime, until: datetime) -> int:
        """How many beats fall in [since, until]: the most reads per account a tracker makes between the two."""
        return sum(1 for beat in self.beats() if since <= beat <= until)
