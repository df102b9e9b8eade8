"""The one builder of a daemon config for a simulator (daemon.sim_config), which the demo and the benchmarks share."""

from __future__ import annotations

from pathlib import Path

from bench._sim import bench_config
from daemon.config import validate_config
from daemon.demo import demo_config
from daemon.sim_config import sim_config_data
from daemon.simulator import Simulator


async def test_sections_merge_one_level_into_the_snippet_and_leave_it_as_it_was(sim: Simulator, tmp_path: Path):
    snippet = sim.config_snippet().data
    before = repr(snippet)
    data = sim_config_data(
        snippet,
        state_dir=tmp_path / "state",
        cache_dir=tmp_path / "cache",
        cache={"ttl": {"market": 60}},
        captcha={"spacing_s": 0.5},
        timezone="UTC",
        brokers={"extra": sim.broker_urls("gs")},
    )
    assert repr(snippet) == before
    assert data["state_dir"] == str(tmp_path / "state")
    assert data["cache"] == {"dir": str(tmp_path / "cache"), "ttl": {"market": 60}}
    assert set(data["brokers"]) == {"gs", "shahr", "extra"}  # merged into the snippet's brokers, not replacing them
    config = validate_config(data)
    assert config.cache.dir == tmp_path / "cache" and config.cache.ttl.market == 60
    assert config.captcha.spacing_s == 0.5 and config.timezone == "UTC"
    assert [a.username for a in config.accounts] == ["0012345600", "0012345601"]


async def test_no_dirs_given_leaves_the_defaults(sim: Simulator):
    data = sim_config_data(sim.config_snippet().data)
    assert "state_dir" not in data and "cache" not in data
    assert data == sim.config_snippet().data


async def test_demo_and_bench_configs_come_from_it(sim: Simulator, tmp_path: Path):
    demo = demo_config(sim, tmp_path, spacing_s=0.3)
    assert demo.cache.dir == tmp_path / "cache" and demo.state_dir == tmp_path / "state"
    assert demo.captcha.spacing_s == 0.3 and demo.executor.final_check_s == 2.0 and demo.schedule.window_s == 10
    bench = validate_config(
        bench_config(
            sim.config_snippet().data, tmp_path, cache_dir=tmp_path / "shared", extra={"client": {"cross_check": True}}
        )
    )
    assert bench.cache.dir == tmp_path / "shared" and bench.cache.ttl.holdings == 3600
    assert bench.state_dir == tmp_path / "state" and bench.schedule.window_s == 5.0
    assert bench.client.cross_check is True and bench.client.timeout_s != 30  # `extra` replaces the whole section
    assert [a.name for a in bench.accounts] == [a.name for a in demo.accounts]
