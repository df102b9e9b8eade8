"""The tracker's beats against stand-in clients and a real journal: one `fill` record per change, resumed from the
journal by a new process, read failures counted and logged once per streak, a low budget skipped, and at the close
what was never read recorded unknown and told. Plus the pure parts: matching a row and reading what it became."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon import metrics
from daemon.clock import FakeClock
from daemon.config import validate_config
from daemon.errors import BrokerUnavailable, ConfigError
from daemon.firing import Journal, find_order, read_journal, summarize
from daemon.platforms import BrokerOrder, RequestBudget
from daemon.tracking import NOT_LISTED, Tracker, find_ours, read_fill

DAY = date(2026, 12, 1)
TZ = validate_config({}).tz
START = datetime(2026, 12, 1, 5, 15, 30, tzinfo=UTC)  # 08:45:30 Tehran
ISIN = "IRO1FOLD0001"


def order(serial: int, executed: int = 0, volume: int = 100, isin: str = ISIN, **more: Any) -> BrokerOrder:
    row = {"isin": isin, "side": 1, "serialNumber": serial, "volume": volume, "executedVolume": executed}
    return BrokerOrder(
        isin=isin, side="buy", serial=serial, tracking=None, created=None, volume=volume, executed=executed,
        price=5580, row=row, **more,
    )  # fmt: skip


class Lists:
    """An account's client as the tracker sees it: `answers` are given out in turn (the last one stays)."""

    def __init__(self, name: str, *answers: list[BrokerOrder] | Exception, budget: RequestBudget | None = None):
        self.account = SimpleNamespace(name=name)
        self.broker = "gs"
        self.codec = SimpleNamespace(find_order=find_order)
        self.requests = budget
        self.answers = list(answers)
        self.calls = 0

    async def today_orders(self, day: date) -> list[BrokerOrder]:
        assert day == DAY
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Told:
    def __init__(self) -> None:
        self.fills: list[list[Any]] = []
        self.unknown: list[list[Any]] = []

    def fill_summary(self, day: date, rows: list[Any]) -> None:
        self.fills.append(list(rows))

    def unknown_fills(self, day: date, rows: list[Any]) -> None:
        self.unknown.append(list(rows))

    async def delivered(self, event: str) -> bool:
        return self.reached


class Heard(Told):
    reached = True  # every message reaches the user


async def accepted(state_dir: Path, account: str, serial: int, isin: str = ISIN) -> None:
    """What the executor leaves in the journal for an accepted order."""
    journal = Journal(state_dir, DAY)
    for kind, more in (
        ("intent", {"price": 5580, "volume": 100, "planned_wall_ns": int(START.timestamp() * 1e9) - 30_000_000_000}),
        ("send", {"attempt": 1}),
        ("answer", {"accepted": True, "code": 0, "serial_number": serial}),
    ):
        journal.record(kind, account=account, broker="gs", isin=isin, side="buy", **more)
    assert await journal.flush(durable=True)


def tracker(state_dir: Path, clients: list[Lists], notify: Heard | None = None, clock: FakeClock | None = None):
    return Tracker(state_dir, DAY, TZ, clock or FakeClock(START), lambda: clients, notify=notify, budget_floor=10)


def fills(state_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_journal(state_dir, DAY) if r["kind"] == "fill"]


async def test_each_change_is_one_fill_record_and_the_report_rows_show_it(tmp_path):
    await accepted(tmp_path, "ali", 1001)
    ali = Lists("ali", [order(1001)], [order(1001)], [order(1001, 40)], [order(1001, 40)], [order(1001, 100)])
    heard = Heard()
    t = tracker(tmp_path, [ali], heard)
    assert [await t.beat() for _ in range(4)] == [False, False, False, False]
    assert [(f["fill_state"], f["executed"]) for f in fills(tmp_path)] == [("queued", 0), ("partly filled", 40)]
    assert heard.fills == []
    assert await t.beat() is True  # filled: nothing left to follow
    assert await t.beat() is True and ali.calls == 5  # and nothing is read again
    records = fills(tmp_path)
    assert [(f["fill_state"], f["executed"]) for f in records] == [
        ("queued", 0),
        ("partly filled", 40),
        ("filled", 100),
    ]
    last = records[-1]
    assert (last["serial_number"], last["volume"], last["fill_value"], last["average_price"]) == (
        1001,
        100,
        558000.0,
        None,
    )
    assert last["fill_at"] == "2026-12-01T08:45:30+03:30"
    row = summarize(read_journal(tmp_path, DAY))[0]
    assert (row.state, row.fill_state, row.executed, row.fill_value) == ("accepted", "filled", 100, 558000.0)
    assert [[(r.account, r.executed) for r in rows] for rows in heard.fills] == [[("ali", 100)]]


async def test_a_new_process_resumes_from_the_journal_without_repeating_a_record(tmp_path):
    await accepted(tmp_path, "ali", 1001)
    await tracker(tmp_path, [Lists("ali", [order(1001, 40)])]).beat()
    again = Lists("ali", [order(1001, 40)], [order(1001, 70)])
    restarted = tracker(tmp_path, [again])
    assert await restarted.beat() is False
    assert [f["executed"] for f in fills(tmp_path)] == [40]  # the same reading: no new record
    await restarted.beat()
    assert [f["executed"] for f in fills(tmp_path)] == [40, 70]


class Killed(Exception):
    """The process dies here."""


class DiesAtTheSummary(Heard):
    def fill_summary(self, day: date, rows: list[Any]) -> None:
        raise Killed


async def test_a_summary_lost_to_a_kill_is_sent_on_restart_and_a_sent_one_never_again(tmp_path):
    await accepted(tmp_path, "ali", 1001)
    with pytest.raises(Killed):  # the last change is on disk, the summary never went out
        await tracker(tmp_path, [Lists("ali", [order(1001, 100)])], DiesAtTheSummary()).beat()
    assert [f["fill_state"] for f in fills(tmp_path)] == ["filled"]
    heard = Heard()
    restarted = Lists("ali", [order(1001, 100)])
    assert await tracker(tmp_path, [restarted], heard).beat() is True
    assert [[(r.account, r.fill_state) for r in rows] for rows in heard.fills] == [[("ali", "filled")]]
    assert restarted.calls == 0  # nothing left to read: the summary came from the journal
    again = Heard()
    assert await tracker(tmp_path, [Lists("ali", [order(1001, 100)])], again).beat() is True
    assert again.fills == []  # told once; the `tracked` record is in no report row
    assert [r.fill_state for r in summarize(read_journal(tmp_path, DAY))] == ["filled"]


async def test_a_summary_that_never_reached_the_user_is_sent_again_by_a_restart(tmp_path):
    await accepted(tmp_path, "ali", 1001)
    unreached = Told()
    unreached.reached = False  # every destination refused it: no `tracked` record
    await tracker(tmp_path, [Lists("ali", [order(1001, 100)])], unreached).beat()
    assert len(unreached.fills) == 1
    heard = Heard()
    await tracker(tmp_path, [Lists("ali", [order(1001, 100)])], heard).beat()
    assert len(heard.fills) == 1


async def test_a_summary_told_for_some_accounts_is_still_owed_for_the_others(tmp_path):
    await accepted(tmp_path, "ali", 1001)
    await accepted(tmp_path, "bahar", 2002)
    await tracker(tmp_path, [Lists("ali", [order(1001, 100)])], Heard()).beat()  # one process held ali: told
    with pytest.raises(Killed):  # another held bahar and died before telling
        await tracker(tmp_path, [Lists("bahar", [order(2002, 100)])], DiesAtTheSummary()).beat()
    both = [Lists("ali", [order(1001, 100)]), Lists("bahar", [order(2002, 100)])]
    heard, again = Heard(), Heard()
    await tracker(tmp_path, both, heard).beat()
    await tracker(tmp_path, both, again).beat()
    assert [sorted(r.account for r in rows) for rows in heard.fills] == [["bahar"]] and again.fills == []  # ali: told


async def test_a_cancelled_order_ends_with_what_had_traded_and_the_average_the_broker_gives(tmp_path):
    await accepted(tmp_path, "ali", 1001)
    t = tracker(tmp_path, [Lists("ali", [order(1001, 30, average_price=5570.5, cancelled=True)])])
    assert await t.beat() is True
    (record,) = fills(tmp_path)
    assert (record["fill_state"], record["executed"], record["average_price"]) == ("cancelled", 30, 5570.5)
    assert record["fill_value"] == 167115.0


async def test_read_failures_are_counted_logged_once_per_streak_and_retried(tmp_path):
    await accepted(tmp_path, "ali", 1001)
    failing = BrokerUnavailable("GetOrders answered HTTP 503")
    ali = Lists("ali", failing, failing, failing, [order(1001, 10)], failing, [order(1001, 10)])
    series = metrics.enable(FakeClock(START))
    try:
        t = tracker(tmp_path, [ali])
        with capture_logs() as logs:
            for _ in range(6):
                assert await t.beat() is False
        errors = series.registry.get_sample_value(
            "opening_bell_tracker_errors_total", {"account": "ali", "broker": "gs"}
        )
        shares = series.registry.get_sample_value("opening_bell_fill_shares", {"account": "ali", "isin": ISIN})
    finally:
        metrics.disable()
    assert errors == 4 and shares == 10
    assert [e["event"] for e in logs if e["event"].startswith("tracking.read")] == [
        "tracking.read_failed",  # the first streak of three: once
        "tracking.read_recovered",
        "tracking.read_failed",
        "tracking.read_recovered",
    ]
    assert ali.calls == 6 and [f["executed"] for f in fills(tmp_path)] == [10]


async def test_an_account_whose_request_budget_is_low_is_not_read_that_beat(tmp_path):
    await accepted(tmp_path, "mofid", 2002)
    clock = FakeClock(START)
    budget = RequestBudget(clock, cap=100, reserve=50)
    for _ in range(45):  # 5 left before the reserve: under the floor of 10
        budget.charge("read")
    capped = Lists("mofid", [order(2002, 5)], budget=budget)
    with capture_logs() as logs:
        t = tracker(tmp_path, [capped], clock=clock)
        assert await t.beat() is False
    assert capped.calls == 0 and fills(tmp_path) == []
    assert [e["event"] for e in logs] == ["tracking.skipped"]
    clock.advance(3601)  # the hour has passed: the budget is back
    assert await t.beat() is False and capped.calls == 1


async def test_at_the_close_an_order_never_read_or_found_is_unknown_with_why_and_told(tmp_path):
    for name, serial in (("ali", 1001), ("sara", 1002), ("reza", 1003)):
        await accepted(tmp_path, name, serial)
    ali = Lists("ali", [order(1001, 40)])  # read: stays partly filled at the close
    sara = Lists("sara", BrokerUnavailable("GetOrders timed out"))  # never readable
    reza = Lists("reza", [order(9999, isin="IRO1IKCO0001")])  # not listed
    heard = Heard()
    t = tracker(tmp_path, [ali, sara, reza], heard)
    assert await t.beat() is False
    assert await t.beat(final=True) is True
    last = {r.account: r for r in summarize(read_journal(tmp_path, DAY))}
    assert (last["ali"].fill_state, last["ali"].executed) == ("partly filled", 40)
    assert last["sara"].fill_state == "unknown"
    assert last["sara"].fill_reason == "its orders could not be read (GetOrders timed out)"
    assert (last["reza"].fill_state, last["reza"].fill_reason) == ("unknown", NOT_LISTED)
    assert [[r.account for r in rows] for rows in heard.unknown] == [["sara", "reza"]]
    assert [[r.account for r in rows] for rows in heard.fills] == [["ali", "sara", "reza"]]
    assert await t.beat(final=True) is True and len(heard.fills) == 1  # told once


async def test_only_the_accounts_this_process_works_are_read(tmp_path):
    await accepted(tmp_path, "ali", 1001)
    await accepted(tmp_path, "sara", 1002)  # another group member's now
    ali = Lists("ali", [order(1001, 100)])
    assert await tracker(tmp_path, [ali]).beat() is True
    assert {f["account"] for f in fills(tmp_path)} == {"ali"}


async def test_an_order_not_accepted_is_never_followed(tmp_path):
    journal = Journal(tmp_path, DAY)
    journal.record("skip", account="ali", broker="gs", isin=ISIN, side="buy", reason="not ready")
    await journal.flush(durable=True)
    ali = Lists("ali", [order(1001)])
    assert await tracker(tmp_path, [ali]).beat() is True and ali.calls == 0


# ---- the pure parts -----------------------------------------------------------------------------------------------


def report_row(**fields: Any):
    return summarize([{"kind": "answer", "account": "ali", "isin": ISIN, "side": "buy", "accepted": True, **fields}])[0]


def test_a_row_is_ours_by_serial_then_tracking_number_then_the_codec_s_match():
    mine, other = order(1001), order(1002)
    assert find_ours([other, mine], report_row(serial_number=1001), find_order, TZ) is mine
    tracked = BrokerOrder(isin=ISIN, side="buy", serial=None, tracking="T-7", created=None, row={"isin": "x"})
    assert find_ours([other, tracked], report_row(tracking_number="T-7"), find_order, TZ) is tracked
    assert find_ours([other], report_row(), find_order, TZ) is other  # no ids: same ISIN and side (the codec)
    assert find_ours([], report_row(serial_number=1001), find_order, TZ) is None


@pytest.mark.parametrize(
    ("executed", "volume", "cancelled", "state"),
    [(0, 100, False, "queued"), (1, 100, False, "partly filled"), (100, 100, False, "filled"), (100, 90, False, "filled"),
     (0, 100, True, "cancelled"), (40, 100, True, "cancelled")],
)  # fmt: skip
def test_what_an_order_became(executed, volume, cancelled, state):
    reading = read_fill(order(1, executed, volume, cancelled=cancelled), 100)
    assert (reading.state, reading.executed) == (state, executed)


def test_a_plain_row_is_read_too_and_a_value_needs_a_price():
    assert read_fill({"executedVolume": "30", "volume": 100, "price": 1000}, None).fill_value == 30000.0
    assert read_fill({"executedVolume": 30}, 100).fill_value is None
    assert read_fill({"executedVolume": True}, 100).state == "queued"  # a bool is not a quantity


def test_tracking_settings_are_checked_in_one_sentence():
    for data, text in (
        ({"tracking": {"every_s": 0}}, "tracking.every_s: Input should be greater than or equal to 1"),
        ({"tracking": {"until": "25:00"}}, "tracking.until"),
        ({"tracking": {"then_every_s": 7200}}, "tracking.then_every_s: Input should be less than or equal to 3600"),
        ({"schedule": {"close": "08:45:20"}}, "schedule: close: 08:45:20 is not after the fire window's end"),
    ):
        with pytest.raises(ConfigError, match=text) as caught:
            validate_config(data)
        assert "\n" not in str(caught.value)
    assert validate_config({"schedule": {"close": "13:00"}, "tracking": {"until": "9:15"}}).tracking.until.minute == 15
