"""The tracker's cadence as pure arithmetic: which beats a day has, which comes next after a slow one, and the
bound on reads per account that follows from them. No clock, no I/O."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.tracking import Cadence

TEHRAN = ZoneInfo("Asia/Tehran")
DAY = date(2026, 12, 1)


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(DAY, time(hour, minute, second), tzinfo=TEHRAN)


def default() -> Cadence:
    return Cadence.of_day(DAY, TEHRAN, at(8, 45, 30), at(12, 30), 30, time(9, 0), 300)


def test_the_default_morning_reads_every_30_s_to_nine_then_every_5_minutes_and_at_the_close():
    beats = list(default().beats())
    assert beats[:3] == [at(8, 45, 30), at(8, 46), at(8, 46, 30)]
    fast = [b for b in beats if b < at(9)]
    assert len(fast) == 29 and fast[-1] == at(8, 59, 30)
    slow = [b for b in beats if b >= at(9)]
    assert slow[:2] == [at(9), at(9, 5)] and slow[-2:] == [at(12, 25), at(12, 30)]
    assert len(beats) == 29 + 42 + 1  # 09:00 ... 12:25 every 5 minutes, then the close
    assert default().bound(at(8, 45, 30), at(12, 30)) == len(beats)


def test_a_slow_beat_skips_the_ones_it_ran_over_and_the_close_is_the_last():
    cadence = default()
    assert cadence.next_after(at(8, 45, 30)) == at(8, 46)
    assert cadence.next_after(at(8, 46, 45)) == at(8, 47)  # the 08:46:30 beat was run over
    assert cadence.next_after(at(8, 59, 45)) == at(9)  # into the slow part
    assert cadence.next_after(at(9, 1)) == at(9, 5)
    assert cadence.next_after(at(12, 27)) == at(12, 30)
    assert cadence.next_after(at(12, 30)) is None
    assert cadence.next_after(at(7)) == at(8, 45, 30)


def test_a_tracker_started_mid_morning_reads_at_its_next_beat_or_at_once_on_one():
    cadence = default()
    assert cadence.first_from(at(8, 40)) == at(8, 45, 30)
    assert cadence.first_from(at(10, 0)) == at(10, 0)  # on a beat
    assert cadence.first_from(at(10, 1)) == at(10, 5)
    assert cadence.first_from(at(12, 30)) == at(12, 30)
    assert cadence.first_from(at(12, 31)) is None


def test_an_until_outside_the_tracking_hours_is_clamped():
    early = Cadence.of_day(DAY, TEHRAN, at(8, 45, 30), at(12, 30), 30, time(8, 0), 600)
    assert list(early.beats())[:2] == [at(8, 45, 30), at(8, 55, 30)]  # no fast part: slow from the window's end
    late = Cadence.of_day(DAY, TEHRAN, at(8, 45, 30), at(9, 0), 60, time(13, 0), 600)
    assert list(late.beats())[-2:] == [at(8, 59, 30), at(9, 0)]


def test_a_cadence_refuses_what_could_not_end():
    with pytest.raises(ValueError):
        Cadence(at(9), timedelta(0), at(9), timedelta(seconds=5), at(10))
    with pytest.raises(ValueError):
        Cadence(at(10), timedelta(seconds=5), at(10), timedelta(seconds=5), at(9))


@given(
    every=st.integers(1, 900),
    then_every=st.integers(1, 3600),
    until_min=st.integers(0, 300),
    now_s=st.integers(-600, 5 * 3600),
)
def test_next_after_is_always_a_beat_later_than_now_and_none_is_skipped_but_run_over_ones(
    every: int, then_every: int, until_min: int, now_s: int
):
    start, close = at(8, 45, 30), at(12, 30)
    cadence = Cadence.of_day(
        DAY, TEHRAN, start, close, every, (at(8, 45) + timedelta(minutes=until_min)).time(), then_every
    )
    beats = list(cadence.beats())
    assert beats == sorted(set(beats)) and beats[-1] == close
    now = start + timedelta(seconds=now_s)
    following = cadence.next_after(now)
    later = [b for b in beats if b > now]
    assert following == (later[0] if later else None)
