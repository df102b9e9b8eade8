"""Prometheus metrics: the endpoint after a real warmup, arm and fire against the simulator exposes every named
series with sensible values; `run --metrics` serves it; without `--metrics` the hooks do nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from daemon import metrics
from daemon.clock import SystemClock
from daemon.errors import UserError
from daemon.service import make_runner
from daemon.simulator import PASSWORD_ENV, Simulator
from tests.processes import daemon_env
from tests.simhelp import SimulatorSolver, plan_in, sim_config, sim_config_data, sim_settings


async def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {labels: value} for every sample on the page."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture(autouse=True)
def no_metrics_left_on():
    yield
    metrics.disable()


async def test_the_endpoint_shows_cache_tokens_clock_fire_orders_and_warmup(monkeypatch, tmp_path) -> None:
    pytest.importorskip("ddddocr")
    monkeypatch.setenv(PASSWORD_ENV, "sim-pass")
    clock = SystemClock()
    async with (
        Simulator.default(accounts=2, brokers=["gs", "shahr"], settings=sim_settings()) as sim,
        metrics.serve("127.0.0.1:0", clock) as server,
    ):
        config = sim_config(
            sim,
            state_dir=str(tmp_path / "state"),
            cache={"dir": str(tmp_path / "cache")},
            schedule={"window_s": 3},
            executor={"clock_source": "date", "final_check_s": 0.3},
        )
        runner = make_runner(config, clock, solver=SimulatorSolver(sim))
        plan = plan_in(sim, config, open_in_s=3, window_s=3)
        try:
            await runner.warmup(plan)
            await runner.arm(plan)
            await runner.fire(plan)
        finally:
            await runner.aclose()
        page = await scrape(f"http://127.0.0.1:{server.port}/metrics")

    names = [a.name for a in config.accounts]
    isin = config.accounts[0].orders[0].isin
    assert page["opening_bell_cache_hits_total"][(("type", "tokens"),)] >= 1
    assert page["opening_bell_cache_misses_total"][(("type", "tokens"),)] >= 2  # each account's first look
    assert page["opening_bell_cache_entries"][(("type", "tokens"),)] == 2
    assert page["opening_bell_cache_entries"][(("type", "market"),)] == 1
    expiry = page["opening_bell_token_expiry_seconds"]
    assert set(expiry) == {(("account", n),) for n in names} and all(0 < v <= 3600 for v in expiry.values())
    assert set(page["opening_bell_clock_offset_seconds"]) == {(("broker", "gs"),), (("broker", "shahr"),)}
    assert all(0 <= v < 1 for v in page["opening_bell_clock_uncertainty_seconds"].values())
    for series in ("opening_bell_fire_first_send_seconds", "opening_bell_fire_answer_seconds"):
        assert set(page[series]) == {(("account", n), ("isin", isin)) for n in names}
        assert all(-1 < v < 3 for v in page[series].values())
    assert page["opening_bell_orders_total"] == {(("code", "0"), ("result", "accepted")): 2.0}
    assert 0 < page["opening_bell_warmup_duration_seconds"][()] < 60
    assert page["opening_bell_group_leases_held"][()] == 0


def test_without_metrics_the_hooks_do_nothing() -> None:
    assert metrics.current() is None
    metrics.cache_lookup("tokens", hit=True)
    metrics.token_expiry("a", "2030-01-01T00:00:00+00:00")
    metrics.broker_clock("gs", 0.1, 0.01)
    metrics.fire_done(lambda: pytest.fail("the journal is read only when metrics are on"))
    metrics.warmup_done(1.0)
    metrics.leases_held(3)
    metrics.fill_seen("a", "IRO1FOLD0001", 40, 223200.0)
    metrics.tracker_error("a", "gs")
    assert metrics.current() is None


def test_fills_and_tracker_errors_are_series_per_account() -> None:
    series = metrics.enable(SystemClock())
    try:
        metrics.fill_seen("a", "IRO1FOLD0001", 40, 223200.0)
        metrics.fill_seen("a", "IRO1FOLD0001", 100, 558000.0)  # the last reading counts
        metrics.tracker_error("a", "gs")
        metrics.tracker_error("a", "gs")
        value = series.registry.get_sample_value
        assert value("opening_bell_fill_shares", {"account": "a", "isin": "IRO1FOLD0001"}) == 100
        assert value("opening_bell_fill_rial", {"account": "a", "isin": "IRO1FOLD0001"}) == 558000.0
        assert value("opening_bell_tracker_errors_total", {"account": "a", "broker": "gs"}) == 2
    finally:
        metrics.disable()


@pytest.mark.parametrize("text", ["9100", "localhost", "127.0.0.1:port", ":9100", "127.0.0.1:70000"])
def test_a_bad_address_is_one_sentence(text: str) -> None:
    with pytest.raises(UserError, match=r"is not HOST:PORT; give e.g. 127.0.0.1:9464"):
        metrics.parse_address(text)
    assert metrics.parse_address("[::1]:9464") == ("::1", 9464)


async def test_a_taken_port_is_one_sentence() -> None:
    async with metrics.serve("127.0.0.1:0", SystemClock()) as first:
        with pytest.raises(UserError, match=f"--metrics 127.0.0.1:{first.port}: cannot listen there"):
            async with metrics.serve(f"127.0.0.1:{first.port}", SystemClock()):
                pass


@pytest.mark.slow
async def test_run_serves_metrics_until_it_stops(tmp_path) -> None:
    async with Simulator.default(accounts=1, brokers=["gs"], settings=sim_settings()) as sim:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                sim_config_data(sim, cache={"dir": str(tmp_path / "cache")}, state_dir=str(tmp_path / "state"))
            )
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            "run",
            "--config",
            str(config),
            "--metrics",
            "127.0.0.1:0",
            env=daemon_env({PASSWORD_ENV: "sim-pass"}),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(30):
                url = None
                # the endpoint serves from before the runner exists: scrape once the service has started
                while (event := json.loads(await proc.stdout.readline()))["event"] != "service started":  # type: ignore[union-attr]
                    url = event.get("url", url) if event["event"] == "metrics.serving" else url
                page = await scrape(url)
                assert "opening_bell_cache_entries" in page and "opening_bell_warmup_duration_seconds" in page
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
