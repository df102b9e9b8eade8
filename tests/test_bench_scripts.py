"""The benchmark scripts still run end to end at tiny sizes, so they never rot (figures are printed, not asserted).

Each runs as `python -m bench.<script>` in a child process, as a user would; the simulator is its own
process on 127.0.0.1. Locust is in the `bench` extra, not `test`: its contender runs only where installed.
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench._capture import CaptureUnavailable, Segment, WireCapture, first_sends, local_port, parse_segment
from bench._race import Outcome, locust_binary, ratios
from bench.open_race import ranges
from daemon.clock import SystemClock
from tests.processes import REPO_ROOT

pytest.importorskip("ddddocr")  # the warmups log in through the OCR solver
pytestmark = pytest.mark.slow


def run_bench(*args: str, timeout: float = 120) -> dict[str, Any]:
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", *args, "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def capture_permitted() -> bool:
    """A packet socket can be opened here (Linux with CAP_NET_RAW): the on-the-wire figures are measured."""
    try:
        WireCapture([9]).open().close()
    except CaptureUnavailable:
        return False
    return True


CAN_CAPTURE = capture_permitted()


def test_open_race_daemon_both_ways_and_raw_at_five_accounts(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = run_bench(
        "bench.open_race",
        "--accounts",
        "5",
        "--contenders",
        "daemon,raw",
        "--realtime",
        "on,off",
        "--raw-realtime",
        "on",
        "--arm-lead-s",
        "3",
        "--final-check-s",
        "1",
        "--workdir",
        str(tmp_path / "work"),
        "--out",
        str(out),
    )
    [run] = result["runs"]
    by = {o["contender"]: o for o in run["outcomes"]}
    assert set(by) == {"daemon rt=on", "daemon rt=off", "raw"}
    for outcome in by.values():
        assert (
            outcome["arrived"] == 5 and len(outcome["arrivals_ms"]) == 5
        )  # every account's order reached the simulator
        assert outcome["accepted"] == 5 and outcome["duplicates"] == 0 and outcome["rejected_1018"] == 0
        assert outcome["requests_per_account_max"] == 1
        assert outcome["dispatch_ms"] is not None and outcome["first_send_error_ms"] <= outcome["dispatch_ms"]
        assert min(outcome["arrivals_ms"]) >= 0  # nothing arrived before the open: no 1017
        if not CAN_CAPTURE:
            assert outcome["wired"] == 0 and outcome["wire_ms_max"] is None
            continue
        # on the wire: a kernel stamp for every account, each before its own arrival at the simulator
        pairs = outcome["wire_and_arrival_ms"]
        assert outcome["wired"] == 5 and len(pairs) == 5 and outcome["wire_lost"] == 0
        assert all(arrival is not None and wire <= arrival for wire, arrival in pairs), pairs
        assert outcome["wire_after_arrival"] == 0
        assert outcome["wire_first_ms"] == min(w for w, _ in pairs) <= outcome["wire_ms_p50"] <= outcome["wire_ms_max"]
        assert outcome["wire_ms_max"] <= outcome["arrival_ms_max"]
    assert "executor.realtime on" in by["daemon rt=on"]["note"]
    assert "executor.realtime off" in by["daemon rt=off"]["note"]
    assert "executor.realtime on" in by["raw"]["note"]
    assert by["daemon rt=on"]["phases_s"]["final_check"] > 0
    for daemon in ("daemon rt=on", "daemon rt=off"):
        assert {f"{daemon}/raw arrival max", f"{daemon}/raw dispatch", f"{daemon}/raw wire max"} <= set(run["ratios"])
        assert (run["ratios"][f"{daemon}/raw wire max"] is not None) is CAN_CAPTURE
    first = {row["contender"]: row for row in result["first_send"]}
    assert set(first) == set(by) and all(row["opens"] == 1 for row in first.values())
    late = by["daemon rt=on"]["phases_s"]["ready_ahead"] < 0
    assert first["daemon rt=on"]["late_starts"] == late and first["raw"]["late_starts"] == 0
    assert first["raw"]["first_send_error_ms_max"] == by["raw"]["first_send_error_ms"]
    assert json.loads((out / "open_race.json").read_text())["runs"][0]["accounts"] == 5


def test_raw_reference_prints_the_wire_beside_the_arrivals() -> None:
    result = run_bench("bench.raw_reference", "--accounts", "5", "--rounds", "3")
    rows = {row["mode"]: row for row in result["runs"]}
    assert set(rows) == {"raw", "wire"}
    for row in rows.values():
        assert row["arrival_ms_p50"] <= row["arrival_ms_max"]
        if not CAN_CAPTURE:
            assert row["wire_ms_max"] is None
            continue
        assert row["wire_missing"] == 0 and row["wire_after_arrival"] == 0  # every request stamped, before arriving
        assert 0 <= row["wire_first_us_p50"] and 0 <= row["wire_ms_p50"] <= row["wire_ms_max"] <= row["arrival_ms_max"]
    [ratios] = result["ratios"]
    assert ratios["wire/raw arrival max"] > 0 and (ratios["wire/raw on the wire max"] is not None) is CAN_CAPTURE


def test_ratios_compare_like_with_like_when_both_run_both_ways() -> None:
    def outcome(contender: str, wire_max: float) -> Outcome:
        return Outcome(contender, 2, arrivals_ms=[1.0, 2.0], wire_ms={"a": 0.5, "b": wire_max})

    both = ratios(
        [
            outcome("daemon rt=on", 1.0),
            outcome("daemon rt=off", 3.0),
            outcome("raw rt=on", 2.0),
            outcome("raw rt=off", 4.0),
        ]
    )
    assert both["daemon rt=on/raw rt=on wire max"] == 0.5 and both["daemon rt=off/raw rt=off wire max"] == 0.75
    assert not any("rt=on/raw rt=off" in key or "rt=off/raw rt=on" in key for key in both)
    one_raw = ratios([outcome("daemon rt=on", 1.0), outcome("daemon rt=off", 3.0), outcome("raw", 2.0)])
    assert one_raw["daemon rt=on/raw wire max"] == 0.5 and one_raw["daemon rt=off/raw wire max"] == 1.5
    assert ratios([outcome("daemon", 1.0), outcome("raw", 4.0)])["daemon/raw wire max"] == 0.25


def test_a_tcp_segment_is_read_from_its_headers() -> None:
    ip = bytes([0x45, 0, 0, 20 + 32 + 7]) + bytes(5) + bytes([6]) + bytes(10)  # IPv4, 20-byte header, TCP
    tcp = struct.pack("!HHI", 40000, 8080, 12345) + bytes(4) + bytes([8 << 4]) + bytes(19)  # 32-byte header
    assert parse_segment(ip + tcp, 7) == Segment(7, 40000, 8080, 12345, 7)
    empty = bytes([0x45, 0, 0, 52]) + ip[4:] + tcp  # headers only: an ACK, not a request
    assert parse_segment(empty, 7) is None
    assert parse_segment(bytes([0x45]) + ip[1:9] + bytes([17]) + ip[10:] + tcp, 7) is None  # UDP


def test_first_sends_keep_each_owners_earliest_segment() -> None:
    segments = [Segment(30, 1, 80, 0, 5), Segment(10, 2, 80, 0, 5), Segment(20, 1, 80, 0, 5), Segment(5, 9, 80, 0, 5)]
    assert first_sends(segments, {1: "ali", 2: "ali", 3: "sara"}) == {"ali": 10}  # port 9 is nobody's
    assert first_sends(segments, {1: "ali", 2: "sara"}) == {"ali": 20, "sara": 10}


@pytest.mark.looptime(False)
@pytest.mark.skipif(not CAN_CAPTURE, reason="a packet socket needs CAP_NET_RAW")
async def test_the_capture_keeps_requests_to_its_ports_only() -> None:
    clock = SystemClock()
    request = b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(asyncio.Protocol, "127.0.0.1", 0) for _ in range(2)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    clients = [(await loop.create_connection(asyncio.Protocol, "127.0.0.1", p))[0] for p in ports for _ in range(3)]
    try:
        with WireCapture([ports[0]]) as capture:
            before = clock.time_ns()
            for transport in clients:
                transport.write(request)
            after = clock.time_ns()
            segments = []
            for _ in range(100):  # bounded: the kernel queued them during the writes; read until all three are in
                segments += capture.collect()
                if len(segments) >= 3:
                    break
                await asyncio.sleep(0.01)
        mine = {local_port(t) for t in clients[:3]}
        assert {s.src_port for s in segments} == mine and all(s.dst_port == ports[0] for s in segments)
        assert all(before <= s.time_ns <= after for s in segments)  # stamped inside the writes
        assert all(s.payload == len(request) for s in segments) and capture.dropped == 0
    finally:
        for transport in clients:
            transport.close()
        for server in servers:
            server.close()


@pytest.mark.skipif(locust_binary() is None, reason="locust is in the bench extra, not installed here")
def test_open_race_locust_sprays_from_the_warm_cache(tmp_path: Path) -> None:
    result = run_bench(
        "bench.open_race",
        "--accounts",
        "3",
        "--contenders",
        "locust",
        "--locust-time-s",
        "1",
        "--workdir",
        str(tmp_path / "work"),
        "--no-save",
    )
    [locust] = result["runs"][0]["outcomes"]
    assert locust["arrived"] == 3 and locust["accepted"] >= 3
    assert locust["requests_per_account_max"] > 1  # no stop on success: it keeps sending
    assert locust["dispatch_ms"] is not None


def test_warmup_bench_counts_captchas_against_the_lower_bound() -> None:
    result = run_bench("bench.warmup", "--accounts", "4", "--brokers", "gs,shahr", "--spacing-s", "0.2")
    [run] = result["runs"]
    assert run["ok"] == 4 and run["failed"] == 0
    assert run["lower_bound_s"] == pytest.approx(0.4)
    assert run["captcha_fetches"] == 4 + run["wrong_captchas"]
    assert run["wall_s"] > 0.2  # the second captcha per broker waited one spacing


def test_memory_bench_measures_daemon_run_and_an_armed_executor() -> None:
    result = run_bench("bench.memory", "--accounts", "5", timeout=300)
    service, logins, cache_only, with_model = result["runs"]
    assert service["measured"] == "daemon run" and service["plans"] == 5
    assert 0 < service["rss_armed_mb"] <= service["peak_mb"]
    # from an empty cache: every account logged in through the OCR solver, whose worker is gone once armed
    assert logins["measured"] == "daemon run, logins" and logins["plans"] == 5 and logins["logins"] == 5
    assert 0 < logins["rss_armed_mb"] <= logins["peak_mb"]
    assert logins["ocr_model_loaded"] == "no" and logins["worker_running"] is False
    for row in (cache_only, with_model):
        assert row["plans"] == row["connections"] == 5 and row["warm_ok"] == 5
        assert 0 < row["rss_imports_mb"] <= row["peak_mb"] and row["rss_armed_mb"] > 0
    assert cache_only["ocr_model_loaded"] is False  # a warm cache: no captcha solved in the measured process
    assert with_model["ocr_model_loaded"] is False  # a captcha solved, by the worker: no model in this process


def test_follow_cpu_bench_stamps_the_loop_end_and_the_last_first_answer(tmp_path: Path) -> None:
    result = run_bench(
        "bench.follow_cpu",
        "--accounts",
        "4",
        "--runs",
        "1",
        "--arm-lead-s",
        "3",
        "--final-check-s",
        "1",
        "--window-s",
        "5",
        "--workdir",
        str(tmp_path / "work"),
    )
    [run] = result["runs"]
    assert run["orders"] == run["answered"] == run["accepted"] == 4  # every order's first answer was seen
    assert run["first_writes_failed"] == run["answers_late"] == run["resends"] == 0
    assert run["cpu_ms"] > 0 and 0 <= run["loop_thread_ms"] <= run["cpu_ms"] and run["wall_ms"] > 0
    assert run["cpu_ms"] == pytest.approx(run["loop_thread_ms"] + run["other_threads_ms"], abs=0.2)
    assert result["cpu_ms_median"] == run["cpu_ms"]


def test_ranges_span_the_runs_per_count_and_contender() -> None:
    def outcome(contender: str, value: float) -> dict[str, Any]:
        return {
            "contender": contender,
            "arrival_ms_p50": value,
            "arrival_ms_p99": value,
            "arrival_ms_max": value,
            "spread_ms": value,
            "dispatch_ms": value,
            "first_send_error_ms": None,
            "requests_per_account_mean": 1,
        }

    runs = [
        {"accounts": 10, "outcomes": [outcome("raw", v)], "ratios": {"daemon/raw dispatch": r}}
        for v, r in ((2.0, 1.1), (5.0, None), (3.0, 0.9))
    ]
    rows = {row["contender"]: row for row in ranges(runs)}
    assert rows["raw"]["arrival_ms_max"] == [2.0, 5.0] and rows["raw"]["first_send_error_ms"] is None
    assert rows["ratios"]["daemon/raw dispatch"] == [0.9, 1.1]


async def test_prepared_orders_name_the_cold_accounts(tmp_path: Path) -> None:
    from bench._prepared import ColdCache, prepared_orders
    from daemon.config import validate_config

    config = validate_config(
        {
            "cache": {"dir": str(tmp_path / "cache")},
            "accounts": [
                {"name": "ali", "broker": "gs", "username": "u1", "password": "x", "orders": [{"isin": "IRO1FOLD0001"}]}
            ],
        },
        source="test",
    )
    with pytest.raises(ColdCache, match="1 account.*first: ali.*warmup"):
        await prepared_orders(config)
