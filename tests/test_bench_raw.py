"""The raw reference benchmark's core still runs end to end (figures are printed by the script, not asserted)."""

from __future__ import annotations

from bench._raw import RecordingServer, loop_overhead_ns, measure, pct


async def test_raw_and_wire_rounds_reach_the_recording_server() -> None:
    with RecordingServer(max_seconds=60) as server:
        results = await measure(accounts=5, rounds=2, modes=["raw", "wire"], server=server)
    assert [f.label for f in results] == ["raw", "wire"]
    for figures in results:
        assert len(figures.rounds) == 2
        for r in figures.rounds:
            assert len(r.sent_ns) == len(r.arrivals_ns) == 5  # every request reached the server once
            assert r.planned_ns <= r.woke_ns <= r.sent_ns[0] <= r.sent_ns[-1]
        assert set(figures.summary()) >= {"dispatch_ms_p50", "first_send_error_us_p99", "arrival_ms_max"}


def test_loop_overhead_is_measured_for_both_loops() -> None:
    figures = loop_overhead_ns(50)
    assert figures["raw_ns_per_account"] > 0 and figures["fire_all_ns_per_account"] > 0


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 11))
    assert (pct(values, 50), pct(values, 99), pct(values, 0)) == (5, 10, 1)
