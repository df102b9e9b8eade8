"""How `fire` finds its open: --at or schedule.open; a window still open resumes, a closed one is refused."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.cli.fire import open_instant
from daemon.config import validate_config
from daemon.errors import UserError

TEHRAN = ZoneInfo("Asia/Tehran")
CONFIG = validate_config({"schedule": {"open": "08:45:00", "window_s": 30}})


def at(hms: str) -> datetime:
    return datetime.combine(datetime(2026, 12, 1).date(), datetime.strptime(hms, "%H:%M:%S.%f").time(), tzinfo=TEHRAN)


@pytest.mark.parametrize("now", ["08:30:00.000", "08:44:59.950", "08:45:00.000", "08:45:29.999"])
def test_the_configured_open_is_kept_until_its_window_closes(now):
    assert open_instant(CONFIG, None, at(now)) == at("08:45:00.000")


def test_a_closed_window_is_refused_in_one_sentence():
    with pytest.raises(
        UserError, match=r"^the fire window of the open 08:45:00 Asia/Tehran has closed today; use --at"
    ):
        open_instant(CONFIG, None, at("08:45:30.000"))


def test_at_gives_another_instant_on_the_exchanges_clock():
    assert open_instant(CONFIG, "10:00:00.250", at("09:00:00.000")) == at("10:00:00.250")
    assert open_instant(CONFIG, "08:59:40.000", at("09:00:00.000")) == at("08:59:40.000")  # resumes its window
    with pytest.raises(UserError, match="is not a time like"):
        open_instant(CONFIG, "soon", at("09:00:00.000"))


def test_now_in_another_zone_is_read_in_the_exchanges():
    utc_now = at("08:45:10.000").astimezone(ZoneInfo("UTC"))
    assert open_instant(CONFIG, None, utc_now) == at("08:45:00.000")
    assert open_instant(CONFIG, None, utc_now - timedelta(hours=1)) == at("08:45:00.000")
