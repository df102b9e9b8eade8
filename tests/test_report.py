"""The report's reading of the journal: one row per order across restarts, its state and why, and what a
restarted executor must do for it (`resume_action`)."""

from __future__ import annotations

import pytest

from daemon.firing import resume_action, summarize

ALI = {"account": "ali", "broker": "gs", "isin": "IRO1FOLD0001", "side": "buy"}
NOW = 1_000_000_000_000


def rec(kind, **fields):
    return {"kind": kind, **ALI, **fields}


def intent(planned_wall_ns=NOW - 1, open_monotonic_ns=5_000):
    return rec(
        "intent",
        price=5580,
        volume=100,
        planned_wall_ns=planned_wall_ns,
        open_monotonic_ns=open_monotonic_ns,
        planned_broker_time="2026-12-01T08:45:00+03:30",
    )


def send(attempt=1, vs_open_ms=0.5):
    return rec("send", attempt=attempt, vs_open_ms=vs_open_ms, monotonic_ns=5_000 + int(vs_open_ms * 1e6))


def answer(accepted=False, code=None, status=200, message=None, serial=None):
    return rec(
        "answer",
        accepted=accepted,
        code=code,
        status=status,
        message=message,
        monotonic_ns=9_000_000,
        serial_number=serial,
    )


def one(records):
    [row] = summarize(records)
    return row


def test_an_accepted_order():
    row = one(
        [
            intent(),
            send(),
            answer(True, 0, serial=1000001),
            rec("outcome", state="accepted", accepted=True, code=0, serial_number=None),
        ]
    )
    assert (row.state, row.result, row.attempts, row.serial_number) == ("accepted", "accepted", 1, 1000001)
    assert resume_action(row, NOW) == "done"


def test_a_rejection_names_its_code_and_message():
    row = one(
        [
            intent(),
            send(),
            answer(code=1011, message="مانده حساب کافی نیست"),
            rec("outcome", state="rejected", code=1011, reason="مانده حساب کافی نیست", message="مانده حساب کافی نیست"),
        ]
    )
    assert row.state == "rejected" and row.result == "rejected (1011: مانده حساب کافی نیست)"
    assert resume_action(row, NOW) == "done"


def test_a_503_is_named_and_an_unsettled_order_is_unknown():
    row = one([intent(), send(), answer(status=503)])
    assert row.state == "unknown"
    assert row.result == "unknown: check the broker (HTTP 503 without a broker code)"
    assert resume_action(row, NOW) == "ask_broker"


def test_sent_and_killed_before_any_answer_is_unknown_and_asked():
    row = one([intent(), send()])
    assert row.state == "unknown" and row.result.startswith("unknown: check the broker")
    assert resume_action(row, NOW) == "ask_broker"


def test_an_intent_whose_instant_passed_without_a_send_on_disk_is_maybe_sent():
    """Killed between the first send and the first flush: only the fsynced intent is on disk."""
    row = one([intent(planned_wall_ns=NOW - 1)])
    assert row.state == "not sent" and row.attempts == 0
    assert resume_action(row, NOW) == "ask_broker"
    assert resume_action(one([intent(planned_wall_ns=NOW + 10**9)]), NOW) == "plan"


def test_a_restart_merges_into_one_row_first_send_ever_attempts_in_all():
    records = [
        intent(),
        send(1, 0.4),
        rec("error", attempt=1, reason="answer lost: reset"),  # the first process
        rec("arm"),
        intent(planned_wall_ns=NOW + 5),
        rec("lookup", presence="absent"),  # the restart
        send(1, 2300.0),
        answer(True, 0, serial=7),
        rec("outcome", state="accepted", accepted=True, code=0),
    ]
    row = one(records)
    assert (row.state, row.attempts, row.first_send_ms, row.restarts) == ("accepted", 2, 0.4, 1)
    assert row.planned_wall_ns == NOW - 1  # the earliest intent: what a lookup matches from


def test_found_at_the_broker_after_a_restart_is_accepted():
    row = one(
        [
            intent(),
            send(),
            rec("lookup", presence="found", serial_number=9, tracking_number="t"),
            rec("outcome", state="accepted", accepted=True, code=0, reason="found at the broker after a restart"),
        ]
    )
    assert row.accepted and row.result == "accepted (found at the broker after a restart)" and row.serial_number == 9


def test_retries_that_ran_out_are_not_placed_and_final():
    row = one(
        [
            intent(),
            send(1),
            answer(code=1017),
            send(2),
            answer(code=1018),
            rec("outcome", state="not placed", code=1018, reason="attempts used up"),
        ]
    )
    assert (row.state, row.result, row.code) == ("not placed", "not placed: attempts used up", 1018)
    assert resume_action(row, NOW) == "done"


def test_unknown_at_the_end_is_reported_as_unknown_never_as_accepted_or_used_up():
    row = one(
        [
            intent(),
            send(),
            rec("error", reason="answer lost: closed"),
            rec("lookup", presence="unknown"),
            rec("outcome", state="unknown", reason="lost answer, and the broker's order lists could not be read"),
        ]
    )
    assert row.state == "unknown" and not row.accepted
    assert row.result.startswith("unknown: check the broker (lost answer")
    assert resume_action(row, NOW) == "ask_broker"


def test_not_sent_says_why():
    row = one([rec("skip", reason="not ready: wrong password")])
    assert (row.state, row.result) == ("not sent", "not sent: not ready: wrong password")
    assert resume_action(row, NOW) == "plan"


@pytest.mark.parametrize(
    ("outcome", "state"),
    [
        ({"accepted": True, "code": 0, "reason": "accepted"}, "accepted"),
        ({"accepted": False, "code": 1011, "reason": "insufficient balance"}, "rejected"),
        ({"accepted": False, "code": None, "reason": "attempts used up"}, "unknown"),  # may hide a lost answer
    ],
)
def test_journals_written_before_states_are_read(outcome, state):
    records = [
        {"kind": "send", "account": "ali", "broker": "gs", "isin": "IRO1FOLD0001", "attempt": 1, "vs_open_ms": 1.0},
        {"kind": "outcome", "account": "ali", "broker": "gs", "isin": "IRO1FOLD0001", **outcome},
    ]
    row = one(records)
    assert (row.side, row.state) == ("buy", state)


def test_orders_of_one_account_on_one_isin_but_both_sides_are_two_rows():
    rows = summarize([intent(), {**intent(), "side": "sell"}])
    assert [(r.isin, r.side) for r in rows] == [("IRO1FOLD0001", "buy"), ("IRO1FOLD0001", "sell")]


def test_a_restart_that_cannot_plan_an_order_an_earlier_process_meant_to_send_leaves_it_unknown():
    row = one([intent(), rec("arm"), rec("skip", reason="not ready: wrong password")])
    assert row.state == "unknown"
    assert row.result == (
        "unknown: check the broker (an earlier process may have sent it; then not ready: wrong password)"
    )


def fill(state, executed, average_price=5580.0, **more):
    return rec(
        "fill",
        volume=100,
        executed=executed,
        average_price=average_price,
        fill_value=None if average_price is None else executed * average_price,
        fill_state=state,
        fill_at="2026-12-01T09:00:00+03:30",
        **more,
    )


ACCEPTED = [intent(), send(), answer(True, 0, serial=1000001)]


def test_an_order_not_followed_after_the_window_has_no_fill_state():
    row = one(ACCEPTED)
    assert (row.fill_state, row.executed, row.fill_value) == (None, None, None)


def test_the_last_fill_record_is_what_the_order_became():
    row = one([*ACCEPTED, fill("queued", 0), fill("partly filled", 40), fill("filled", 100)])
    assert (row.fill_state, row.executed, row.average_price, row.fill_value) == ("filled", 100, 5580.0, 558000.0)
    assert row.state == "accepted" and resume_action(row, NOW) == "done"  # tracking never reopens an order


def test_an_unknown_fill_keeps_what_was_seen_and_says_why():
    row = one([*ACCEPTED, fill("partly filled", 40), rec("fill", fill_state="unknown", reason="HTTP 503")])
    assert (row.fill_state, row.executed, row.fill_reason) == ("unknown", 40, "HTTP 503")


def test_a_fill_state_the_report_does_not_know_reads_as_unknown():
    assert one([*ACCEPTED, fill("exploded", 1)]).fill_state == "unknown"
