"""Unknown is not absent: a lost answer is settled at the broker (open and today's orders) before any resend,
and a restart asks the broker about every order an earlier process may have sent. In-process against the
simulator; tests/test_crash_restart.py proves the same with real SIGKILLs."""

from __future__ import annotations

import os
from datetime import date, timedelta

import pytest

from daemon.executor import Executor
from daemon.firing import Journal, read_journal, summarize
from daemon.simulator import Simulator
from daemon.testing import SimulatorSolver, daemon_clock
from daemon.wiring import Wiring
from tests.simhelp import sim_config
from tests.test_executor_faults import fire_once

pytestmark = [pytest.mark.sim(accounts=6, brokers=("gs", "shahr"), loop_time=True, seed=1205), pytest.mark.looptime]


def booked(sim: Simulator) -> dict[str, int]:
    counts: dict[str, int] = {}
    for order in sim.orders():
        counts[order.username] = counts.get(order.username, 0) + 1
    return counts


async def restart_inside_the_window(sim: Simulator, config, accounts, day: date) -> None:
    """A second process on the same state directory, armed after the open (a restart inside the window)."""
    config2 = sim_config(
        sim,
        state_dir=config.state_dir.as_posix(),
        schedule={"window_s": 6},
        executor={"clock_source": "none", "final_check_s": 0.3, "answer_timeout_s": 1.0},
    )
    async with Wiring(config2, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        ex2 = Executor.from_wiring(services, Journal(config2.state_dir, day), day=day)
        await ex2.run_open(accounts, sim.now().astimezone(config.tz) - timedelta(seconds=1))


async def test_a_lost_answer_and_unreadable_order_lists_never_resend_and_end_unknown(sim, tmp_path):
    """The probe's case: `new_order:drop,after` with the order lists at 503. Before, every account was booked 4
    times and the report said "0 of 5 accepted"; now one booking each, reported unknown."""
    sim.add_fault("new_order:drop,after")
    sim.add_fault("open_orders:status=503")
    sim.add_fault("orders:status=503")
    ex, config, accounts = await fire_once(sim, tmp_path, accounts=3, lookup_attempts=3, lookup_spacing_ms=100)
    assert booked(sim) == {a.username: 1 for a in accounts}
    assert len(sim.request_log.records(route="new_order")) == 3  # never sent twice
    rows = summarize(read_journal(config.state_dir, ex.day))
    assert [r.state for r in rows] == ["unknown"] * 3
    assert all(r.result.startswith("unknown: check the broker (lost answer") for r in rows)
    # bounded and spaced: 3 asks per order, both lists each time
    assert len(sim.request_log.records(route="open_orders")) == 9
    assert len(sim.request_log.records(route="orders")) == 9


async def test_a_filled_order_is_found_in_todays_orders_though_no_longer_open(sim, tmp_path):
    sim.add_fault("new_order:drop,after")
    sim.add_fault("open_orders:status=503")  # only today's orders can say
    ex, config, accounts = await fire_once(sim, tmp_path, accounts=2)
    rows = summarize(read_journal(config.state_dir, ex.day))
    assert all(r.accepted and r.result == "accepted (found at the broker after a lost answer)" for r in rows)
    assert all(r.serial_number for r in rows)
    assert len(sim.request_log.records(route="new_order")) == 2


async def test_an_order_the_broker_positively_lacks_is_sent_again_once_it_says_so(sim, tmp_path):
    """The order is lost before the broker books it, and the lists fail at random (seeded): the executor keeps
    asking, and resends only after both lists were read without the order."""
    sim.add_fault("new_order:drop,rate=0.5")  # dropped unprocessed: nothing booked
    sim.add_fault("orders:status=503,rate=0.5")
    ex, config, accounts = await fire_once(sim, tmp_path, accounts=4, max_attempts=8, lookup_spacing_ms=50)
    assert booked(sim) == {a.username: 1 for a in accounts}
    records = read_journal(config.state_dir, ex.day)
    lookups = [r["presence"] for r in records if r["kind"] == "lookup"]
    assert "unknown" in lookups and "absent" in lookups  # the seeded draws exercise both
    assert all(r.accepted for r in summarize(records))


async def test_on_unknown_resend_is_the_users_choice_and_may_book_twice(sim, tmp_path):
    sim.add_fault("new_order:drop,after")
    sim.add_fault("open_orders:status=503")
    sim.add_fault("orders:status=503")
    ex, config, accounts = await fire_once(
        sim, tmp_path, accounts=1, lookup_attempts=1, max_attempts=2, on_unknown="resend"
    )
    assert len(sim.request_log.records(route="new_order")) == 2


async def test_a_restart_finds_what_the_first_process_left_unknown_and_sends_nothing(sim, tmp_path):
    sim.add_fault("new_order:drop,after")
    sim.add_fault("open_orders:status=503")
    sim.add_fault("orders:status=503")
    ex, config, accounts = await fire_once(sim, tmp_path, accounts=2, lookup_attempts=1)
    assert [r.state for r in summarize(read_journal(config.state_dir, ex.day))] == ["unknown", "unknown"]
    sim.clear_faults()
    sends_before = len(sim.request_log.records(route="new_order"))
    # the same day, inside the window: a second process takes it up
    await restart_inside_the_window(sim, config, accounts, ex.day)
    assert len(sim.request_log.records(route="new_order")) == sends_before
    rows = summarize(read_journal(config.state_dir, ex.day))
    assert all(r.accepted and r.result == "accepted (found at the broker after a restart)" for r in rows)
    assert booked(sim) == {a.username: 1 for a in accounts}


async def test_a_restart_sends_what_the_broker_positively_lacks_exactly_once(sim, tmp_path):
    """The first process's order never reached the broker (dropped unprocessed) and the lists could not be read:
    unknown. The restart finds both lists readable and the order absent, so it sends it, once."""
    sim.add_fault("new_order:drop")
    sim.add_fault("orders:status=503")
    ex, config, accounts = await fire_once(sim, tmp_path, accounts=2, lookup_attempts=1)
    assert not sim.orders()
    sim.clear_faults()
    await restart_inside_the_window(sim, config, accounts, ex.day)
    assert booked(sim) == {a.username: 1 for a in accounts}
    rows = summarize(read_journal(config.state_dir, ex.day))
    assert all(r.accepted and r.restarts == 1 and r.attempts == 2 for r in rows)


async def test_intents_are_on_disk_before_the_first_send(sim, tmp_path, monkeypatch):
    """The moment the first NewOrder reaches the broker, the journal file already holds every intent."""
    seen: list[list[str]] = []
    state = tmp_path / "state"
    add = sim.request_log.add

    def spying_add(record):
        if record.route == "new_order" and not seen:
            [journal] = (state / "journal").glob("*.jsonl")
            seen.append([r["kind"] for r in read_journal(state, date.fromisoformat(journal.stem))])
        add(record)

    monkeypatch.setattr(sim.request_log, "add", spying_add)
    await fire_once(sim, tmp_path, accounts=3)
    assert seen and seen[0].count("intent") == 3


async def test_a_journal_that_fails_in_the_window_is_retried_and_named_in_the_summary(sim, tmp_path, capsys):
    """The journal file turns into a directory after the arm (every write now fails): the orders still go,
    every record is kept in memory, and the summary and exit code say the journal is incomplete."""
    from daemon.cli.fire import print_summary

    def break_journal() -> None:
        [path] = (tmp_path / "state" / "journal").glob("*.jsonl")
        path.rename(path.with_suffix(".moved"))
        path.mkdir()

    ex, config, accounts = await fire_once(sim, tmp_path, accounts=2, between=break_journal)
    assert len(sim.orders()) == 2
    assert ex.journal.write_failures >= 2 and ex.journal.unwritten > 0
    code = print_summary(ex.outcome(), ex.journal, as_json=False)
    out = capsys.readouterr().out
    assert code == 1
    assert "2 accepted of 2 orders." in out  # what this process recorded is all there
    assert "journal: the journal" in out and "could not be written" in out


async def test_a_second_process_cannot_fire_from_the_same_journal_while_the_first_holds_it(sim, tmp_path):
    """Two firing processes on one state directory could each send what the other sent: the second is refused
    in one sentence naming the holder, and may arm once the first has closed (or died: the kernel drops its lock)."""
    from daemon.firing import JournalBusy

    config = sim_config(sim, state_dir=str(tmp_path / "state"), executor={"clock_source": "none"})
    day = sim.now().astimezone(config.tz).date()
    open_at = sim.now().astimezone(config.tz) + timedelta(seconds=30)
    async with Wiring(config, daemon_clock(sim)) as services:
        first = Executor.from_wiring(services, Journal(config.state_dir, day), day=day)
        await first.arm(config.accounts[:1], open_at)
        second = Executor.from_wiring(services, Journal(config.state_dir, day), day=day)
        with pytest.raises(JournalBusy, match=rf"^process {os.getpid()} is firing today's open from state_dir "):
            await second.arm(config.accounts[:1], open_at)
        await first.aclose()
        await second.arm(config.accounts[:1], open_at)
        await second.aclose()
    assert not sim.request_log.records(route="new_order")
