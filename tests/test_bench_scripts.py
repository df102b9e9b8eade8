"""The benchmark scripts still run end to end at tiny sizes, so they never rot (figures are printed, not asserted).

Each runs as `python -m bench.<script>` in a child process, as a user would; the simulator is its own
process on 127.0.0.1. Locust is in the `bench` extra, not `test`: its contender runs only where installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench._race import locust_binary
from bench.open_race import ranges
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


def test_open_race_daemon_and_raw_at_five_accounts(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = run_bench(
        "bench.open_race",
        "--accounts",
        "5",
        "--contenders",
        "daemon,raw",
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
    assert set(by) == {"daemon", "raw"}
    for outcome in by.values():
        assert (
            outcome["arrived"] == 5 and len(outcome["arrivals_ms"]) == 5
        )  # every account's order reached the simulator
        assert outcome["accepted"] == 5 and outcome["duplicates"] == 0 and outcome["rejected_1018"] == 0
        assert outcome["requests_per_account_max"] == 1
        assert outcome["dispatch_ms"] is not None and outcome["first_send_error_ms"] <= outcome["dispatch_ms"]
        assert min(outcome["arrivals_ms"]) >= 0  # nothing arrived before the open: no 1017
    assert by["daemon"]["phases_s"]["final_check"] > 0
    assert set(run["ratios"]) >= {"daemon/raw arrival max", "daemon/raw dispatch"}
    assert json.loads((out / "open_race.json").read_text())["runs"][0]["accounts"] == 5


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
    result = run_bench("bench.memory", "--accounts", "5")
    service, cache_only, with_model = result["runs"]
    assert service["measured"] == "daemon run" and service["plans"] == 5
    assert 0 < service["rss_armed_mb"] <= service["peak_mb"]
    for row in (cache_only, with_model):
        assert row["plans"] == row["connections"] == 5 and row["warm_ok"] == 5
        assert 0 < row["rss_imports_mb"] <= row["peak_mb"] and row["rss_armed_mb"] > 0
    assert cache_only["ocr_model_loaded"] is False  # a warm cache: no captcha solved in the measured process
    assert with_model["ocr_model_loaded"] is True


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
