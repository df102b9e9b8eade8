"""`python -m daemon schedule`: the coming events in Tehran and local time, and the closed days between."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.cli import build_parser
from daemon.cli import schedule as cmd_schedule
from daemon.clock import FakeClock
from daemon.config import load_config
from daemon.days import TradingCalendar
from tests.processes import run_daemon

TEHRAN = ZoneInfo("Asia/Tehran")


def schedule(argv: list[str], now: datetime, local_tz: ZoneInfo, capsys: pytest.CaptureFixture[str]) -> str:
    args = build_parser().parse_args(["schedule", *argv])
    assert cmd_schedule.run(args, clock=FakeClock(now), local_tz=local_tz) == 0
    return capsys.readouterr().out


def wednesday_at_ten() -> datetime:
    return datetime.combine(date(2026, 11, 25), time(10), tzinfo=TEHRAN)


def test_table_shows_tehran_and_local_time_and_the_closed_days(capsys: pytest.CaptureFixture[str]) -> None:
    out = schedule(["--days", "2"], wednesday_at_ten(), ZoneInfo("Europe/Berlin"), capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["date", "jalali", "day", "event", "Asia/Tehran", "local"]
    assert lines[2].split() == ["2026-11-26", "1405-09-05", "Thu", "closed:", "Thursday", "-", "-"]
    assert lines[3].split()[3:5] == ["closed:", "Friday"]
    assert lines[4].split() == [
        "2026-11-28",
        "1405-09-07",
        "Sat",
        "warmup",
        "08:20:00",
        "2026-11-28",
        "05:50:00",
        "CET",
    ]
    assert [line.split()[3] for line in lines[4:]] == ["warmup", "arm", "open", "window_end"] * 2
    assert lines[-1].split()[:3] == ["2026-11-29", "1405-09-08", "Sun"]


def test_json_with_milliseconds_holidays_and_local_dst(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text('schedule:\n  open: "08:45:00.250"\n  holidays: ["1405-12-23"]\n', encoding="utf-8")
    on_eid = datetime.combine(date(2027, 3, 10), time(12), tzinfo=TEHRAN)
    out = schedule(["--days", "3", "--json", "--config", str(config)], on_eid, ZoneInfo("America/New_York"), capsys)
    data = json.loads(out)
    assert data["timezone"] == "Asia/Tehran"
    assert data["now"] == "2027-03-10T12:00:00.000+03:30"
    closed = {d["date"]: d["closed"] for d in data["days"] if d["closed"]}
    assert closed == {
        "2027-03-10": "holiday: Eid al-Fitr (estimated)",
        "2027-03-11": "Thursday",
        "2027-03-12": "Friday",
        "2027-03-14": "configured holiday",
    }
    trading = [d for d in data["days"] if not d["closed"]]
    assert [d["date"] for d in trading] == ["2027-03-13", "2027-03-15", "2027-03-16"]
    opens = [e for d in trading for e in d["events"] if e["kind"] == "open"]
    assert opens[0]["at"] == "2027-03-13T08:45:00.250+03:30"
    # New York moves its clocks on 14 March 2027: the same Tehran instant shows a new local offset.
    assert [e["local"] for e in opens] == [
        "2027-03-13T00:15:00.250-05:00",
        "2027-03-15T01:15:00.250-04:00",
        "2027-03-16T01:15:00.250-04:00",
    ]


def test_subprocess_uses_the_machines_zone_from_tz() -> None:
    result = run_daemon("schedule", "--json", "--days", "3", env={"TZ": "Asia/Tokyo"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    now = datetime.fromisoformat(data["now"])
    calendar = TradingCalendar(load_config(None, environ={}).schedule, TEHRAN)
    trading = [d for d in data["days"] if d["events"]]
    assert len(trading) == 3
    for day in data["days"]:
        assert (day["closed"] or None) == calendar.why_closed(date.fromisoformat(day["date"]))
        for event in day["events"]:
            at, local = datetime.fromisoformat(event["at"]), datetime.fromisoformat(event["local"])
            assert at > now and at == local
            assert (at.utcoffset(), local.utcoffset()) == (timedelta(hours=3, minutes=30), timedelta(hours=9))


def test_subprocess_table_names_the_local_zone() -> None:
    result = run_daemon("schedule", "--days", "1", env={"TZ": "UTC"})
    assert result.returncode == 0, result.stderr
    events = [line.split() for line in result.stdout.splitlines()[2:] if not line.split()[3].startswith("closed")]
    assert [row[3] for row in events][-4:] == ["warmup", "arm", "open", "window_end"]
    assert events[-4][4:] == ["08:20:00", events[-4][0], "04:50:00", "UTC"]


def test_bad_holidays_file_line_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    closures = tmp_path / "closures.txt"
    closures.write_text("# closures\n1405-09-03\nsoon\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(f"schedule:\n  holidays_file: {closures}\n", encoding="utf-8")
    result = run_daemon("schedule", "--config", str(config))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: schedule.holidays_file {closures}, line 3: 'soon' is not a date; write YYYY-MM-DD (Gregorian, 2026-03-21) or a Jalali date (1405-01-01).\n"
    )


@pytest.mark.parametrize("days", ["0", "two"])
def test_days_must_be_a_positive_number(days: str) -> None:
    result = run_daemon("schedule", "--days", days)
    assert result.returncode == 2
    assert f"wants a whole number of days from 1 to 366, not '{days}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_fixed_offset_local_zone_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    out = schedule(["--days", "1", "--json"], wednesday_at_ten(), timezone(timedelta(hours=-3)), capsys)  # type: ignore[arg-type]
    warmup = json.loads(out)["days"][-1]["events"][0]
    assert (warmup["at"], warmup["local"]) == ("2026-11-28T08:20:00.000+03:30", "2026-11-28T01:50:00.000-03:00")
