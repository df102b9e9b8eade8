"""`python -m daemon report` after the open: each order's fill beside its answer, the day's summary, `--json`,
`--days N` over trading days, read from journals written through the daemon's own `Journal`."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import orjson
import pytest
import yaml

from daemon.cli import main
from daemon.firing import Journal

OPEN_NS = 7_000_000_000
TUESDAY, MONDAY, SUNDAY, SATURDAY, WEDNESDAY = (date(2026, 12, 1), date(2026, 11, 30), date(2026, 11, 29),
                                               date(2026, 11, 28), date(2026, 11, 25))  # fmt: skip


def write_journal(state_dir: Path, day: date, orders: list[dict]) -> None:
    """A day's journal as the executor and the tracker write it: the window, then per order its intent, send,
    answer and outcome (or its skip), then the tracker's fill records."""
    journal = Journal(state_dir, day)
    journal.record("window", open_monotonic_ns=OPEN_NS, offset_ms=-3.2, uncertainty_ms=0.8, offset_source="http")
    for order in orders:
        who = {"account": order["account"], "broker": "gs", "isin": order.get("isin", "IRO1FOLD0001"), "side": "buy"}
        if order.get("skip"):
            journal.record("skip", **who, reason=order["skip"])
            continue
        volume = order.get("volume", 100)
        journal.record("intent", **who, price=5580, volume=volume, planned_wall_ns=1, open_monotonic_ns=OPEN_NS)
        send_ms, answer_ms = order.get("send_ms", 0.5), order.get("answer_ms", 9.0)
        journal.record("send", **who, attempt=1, vs_open_ms=send_ms, monotonic_ns=OPEN_NS + int(send_ms * 1e6))
        code = order.get("code", 0)
        journal.record(
            "answer",
            **who,
            accepted=code == 0,
            code=code,
            status=200,
            message=None if code == 0 else "insufficient buying power",
            serial_number=1000 + len(order["account"]) if code == 0 else None,
            monotonic_ns=OPEN_NS + int(answer_ms * 1e6),
        )
        journal.record("outcome", **who, state="accepted" if code == 0 else "rejected", code=code)
        for fill in order.get("fills", ()):
            state, executed, price = fill
            fields = {"reason": "HTTP 503"} if state == "unknown" else {}
            if state != "unknown":
                fields.update(
                    executed=executed, average_price=price, fill_value=None if price is None else executed * price
                )
            journal.record(
                "fill", **who, volume=volume, fill_state=state, fill_at="2026-12-01T09:00:00+03:30", **fields
            )
    asyncio.run(journal.flush())


MORNING = [
    {"account": "ali", "fills": [("queued", 0, None), ("partly filled", 40, 5580.0), ("filled", 100, 5580.0)]},
    {"account": "sara", "fills": [("queued", 0, None), ("partly filled", 40, 5590.0)]},
    {"account": "reza", "fills": [("queued", 0, None)]},
    {"account": "mina", "fills": [("partly filled", 30, 5580.0), ("cancelled", 30, 5580.0)]},
    {"account": "omid", "fills": [("partly filled", 10, 5580.0), ("unknown", None, None)]},
    {"account": "leila"},  # accepted, not followed
    {"account": "kian", "code": 1011},
    {"account": "nima", "skip": "not ready: wrong password"},
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"cache": {"dir": str(tmp_path / "cache")}, "state_dir": str(tmp_path / "state")}))
    return path


def report(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out: str) -> dict[str, list[str]]:
    """The table's rows by account, split on the runs of two spaces the table puts between cells."""
    lines = out.splitlines()
    header = lines[0]
    starts = [i for i in range(len(header)) if header[i] != " " and (i == 0 or header[i - 2 : i] == "  ")]
    rows = {}
    for line in lines[2:]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]
        rows[cells[0]] = cells
    return rows


def test_each_order_shows_what_it_became_and_the_day_sums_it_up(config, capsys):
    write_journal(config.parent / "state", TUESDAY, MORNING)
    code, out, err = report(capsys, "--config", str(config), "--date", "2026-12-01")
    assert code == 0, err
    rows = table_rows(out)
    fills = {account: cells[-3:] for account, cells in rows.items()}
    assert fills == {
        "ali": ["filled", "100 of 100", "558,000"],
        "sara": ["partly filled", "40 of 100", "223,600"],
        "reza": ["queued", "0 of 100", "-"],
        "mina": ["cancelled", "30 of 100", "167,400"],
        "omid": ["unknown (HTTP 503)", "10 of 100", "55,800"],  # what was seen before the broker stopped answering
        "leila": ["not followed", "-", "-"],
        "kian": ["-", "-", "-"],
        "nima": ["-", "-", "-"],
    }
    assert rows["kian"][9] == "rejected (1011: insufficient buying power)"
    assert rows["ali"][6] == "0.5" and rows["ali"][8] == "0"  # first send vs open (ms), the answer's code
    assert "6 of 8 orders accepted on 2026-12-01, 1 rejected, 1 not sent.\n" in out
    assert (
        "filled: 180 shares, 1,004,800 rial; 1 queued, 1 partly filled, 1 filled, 1 cancelled, 1 unknown, "
        "1 not followed.\n" in out
    )
    assert "clock offset -3.2 ms (+- 0.8 ms, http)." in out


def test_json_has_every_order_the_summary_and_the_window(config, capsys):
    write_journal(config.parent / "state", TUESDAY, MORNING)
    code, out, err = report(capsys, "--config", str(config), "--date", "2026-12-01", "--json")
    assert code == 0, err
    data = orjson.loads(out)
    assert data["date"] == "2026-12-01" and data["window"]["offset_ms"] == -3.2
    orders = {o["account"]: o for o in data["orders"]}
    assert (orders["sara"]["fill"], orders["sara"]["executed"], orders["sara"]["fill_value"]) == (
        "partly filled",
        40,
        223600.0,
    )
    assert orders["ali"]["first_send_ms"] == 0.5 and orders["ali"]["first_answer_ms"] == 9.0
    assert (orders["leila"]["fill"], orders["leila"]["fill_state"]) == ("not followed", None)
    assert (orders["kian"]["fill"], orders["kian"]["state"]) == (None, "rejected")
    assert orders["omid"]["fill_reason"] == "HTTP 503"
    assert data["summary"] == {
        "orders": 8,
        "accepted": 6,
        "states": {"accepted": 6, "rejected": 1, "not sent": 1},
        "shares_filled": 180,
        "rial_filled": 1004800.0,
        "value_unknown": 0,
        "fill_states": {
            "queued": 1,
            "partly filled": 1,
            "filled": 1,
            "cancelled": 1,
            "unknown": 1,
            "not followed": 1,
        },
    }


def test_shares_without_a_price_are_counted_and_their_value_said_unknown(config, capsys):
    write_journal(config.parent / "state", TUESDAY, [{"account": "ali", "fills": [("partly filled", 25, None)]}])
    code, out, err = report(capsys, "--config", str(config), "--date", "2026-12-01")
    assert code == 0, err
    assert table_rows(out)["ali"][-3:] == ["partly filled", "25 of 100", "-"]
    assert "filled: 25 shares, 0 rial (1 of unknown value); 1 partly filled.\n" in out


def test_days_reads_the_trading_days_up_to_the_date_and_names_the_ones_without_a_journal(config, capsys):
    state = config.parent / "state"
    write_journal(state, WEDNESDAY, [{"account": "ali", "send_ms": 1.5, "fills": [("filled", 100, 5580.0)]}])
    write_journal(state, SUNDAY, [{"account": "ali", "send_ms": 0.5}, {"account": "sara", "code": 1011}])
    write_journal(
        state,
        TUESDAY,
        [{"account": "ali", "send_ms": 0.25, "fills": [("partly filled", 40, 5580.0)]}, {"account": "sara"}],
    )
    write_journal(state, date(2026, 11, 27), [{"account": "ali"}])  # a Friday: not a trading day, never read
    code, out, err = report(capsys, "--config", str(config), "--date", "2026-12-01", "--days", "5")
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("==")] == [
        "== 2026-11-25 (Wednesday) ==",
        "== 2026-11-29 (Sunday) ==",
        "== 2026-12-01 (Tuesday) ==",
        "== total: the 5 trading days from 2026-11-25 to 2026-12-01, 3 with a journal ==",
    ]
    assert "no journal (skipped): 2026-11-28 (Sat), 2026-11-30 (Mon).\n" in out
    assert "1 of 2 orders accepted on 2026-11-29, 1 rejected.\n" in out
    total = table_rows(out[out.index("== total") :].split("\n", 1)[1])
    assert total == {
        "ali": ["ali", "3", "3", "3", "140", "781,200", "0.5"],
        "sara": ["sara", "2", "2", "1", "0", "0", "0.5"],
    }
    assert out.endswith(
        "4 of 5 orders accepted over 3 days, 1 rejected.\n"
        "filled: 140 shares, 781,200 rial; 1 partly filled, 1 filled, 2 not followed.\n"
    )


def test_days_as_json_has_each_day_the_skipped_ones_and_the_total(config, capsys):
    state = config.parent / "state"
    write_journal(state, SUNDAY, [{"account": "ali", "fills": [("filled", 100, 5580.0)]}])
    code, out, err = report(capsys, "--config", str(config), "--date", "2026-11-30", "--days", "2", "--json")
    assert code == 0, err
    data = orjson.loads(out)
    assert (data["from"], data["to"], data["trading_days"]) == (
        "2026-11-29",
        "2026-11-30",
        ["2026-11-29", "2026-11-30"],
    )
    (day,) = data["days"]
    assert day["date"] == "2026-11-29" and day["window"]["offset_source"] == "http"
    assert [o["fill"] for o in day["orders"]] == ["filled"] and day["summary"]["rial_filled"] == 558000.0
    assert data["skipped"] == [{"date": "2026-11-30", "reason": "no journal"}]
    assert data["total"]["days"] == 1 and data["total"]["shares_filled"] == 100
    assert data["total"]["accounts"] == [
        {
            "account": "ali",
            "days": 1,
            "orders": 1,
            "accepted": 1,
            "shares_filled": 100,
            "rial_filled": 558000.0,
            "median_first_send_ms": 0.5,
        }
    ]


def test_days_skips_configured_holidays_and_ends_on_the_last_trading_day_before_a_closed_date(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cache": {"dir": str(tmp_path / "c")},
                "state_dir": str(tmp_path / "s"),
                "schedule": {"holidays": ["2026-11-25"]},
            }
        )
    )
    write_journal(tmp_path / "s", date(2026, 11, 24), [{"account": "ali"}])
    code, out, err = report(capsys, "--config", str(config), "--date", "2026-11-27", "--days", "2", "--json")
    assert code == 0, err
    assert orjson.loads(out)["trading_days"] == ["2026-11-23", "2026-11-24"]  # Wed 25 closed, Thu 26 and Fri 27 too


@pytest.mark.parametrize("days", ["0", "367", "-1", "x", "", "1.5", "99999999999999999999", "3\n4"])
def test_a_bad_days_value_is_one_sentence_and_exit_2(config, capsys, days):
    code, out, err = report(capsys, "--config", str(config), "--days", days)
    assert code == 2 and out == ""
    assert (
        err.count("\n") == 1
        and err.startswith("error: --days ")
        and err.endswith("is not a number of trading days from 1 to 366.\n")
    )


def test_a_range_without_any_journal_is_one_sentence_and_exit_2(config, capsys):
    code, out, err = report(capsys, "--config", str(config), "--date", "2026-12-01", "--days", "3")
    assert code == 2 and out == ""
    assert err == (
        f"error: no journal for any of the 3 trading days from 2026-11-29 to 2026-12-01 in "
        f"{config.parent / 'state' / 'journal'}; check --date, --days and state_dir.\n"
    )


def test_a_journal_that_cannot_be_read_is_one_sentence(config, capsys):
    path = config.parent / "state" / "journal" / "2026-12-01.jsonl"
    path.mkdir(parents=True)  # a directory where the file should be
    code, out, err = report(capsys, "--config", str(config), "--date", "2026-12-01")
    assert code == 2 and out == ""
    assert err.startswith(f"error: the journal {path} cannot be read (") and err.endswith("permissions.\n")
