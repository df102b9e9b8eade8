"""Helpers for testing code that drives the daemon against the simulator, shipped with the package (the
structlog way) so tests, benchmarks and a later platform's tests share one copy.

- `FakeClock`: the clock tests move by hand (daemon.clock's own); `LoopClock`: the event loop's own time, so
  under looptime a simulator and the daemon sharing it run a whole open in fake time.
- `running_simulator(...)`: an async context manager yielding a started, seeded simulator on 127.0.0.1, its
  accounts' password exported the way the config builders read it.
- `sim_config_data` / `sim_config` / `write_sim_config`: a config pointing at that simulator; `squeezed_day_data`
  and `plan_in` for a trading day that runs in seconds.
- `SimulatorSolver(sim)`: a captcha solver that reads the answer of the simulator's own images in-process, so a
  login needs neither the OCR model nor its time; pass it as `Wiring(config, clock, solver=...)`.
"""

from __future__ import annotations

from daemon.clock import FakeClock
from daemon.testing._loop_clock import LoopClock, daemon_clock
from daemon.testing._sim import (
    SIM_SEED,
    plan_in,
    running_simulator,
    sim_config,
    sim_config_data,
    sim_settings,
    squeezed_day_data,
    write_sim_config,
)
from daemon.testing._solver import SimulatorSolver

__all__ = [
    "SIM_SEED",
    "FakeClock",
    "LoopClock",
    "SimulatorSolver",
    "plan_in",
    "running_simulator",
    "sim_config",
    "sim_config_data",
    "sim_settings",
    "squeezed_day_data",
    "daemon_clock",
    "write_sim_config",
]
