"""The tests' names for daemon.testing's simulator helpers (the logic lives there, shipped with the package)."""

from __future__ import annotations

import importlib.util

import pytest

from daemon.testing import (
    SIM_SEED,
    LoopClock,
    SimulatorSolver,
    daemon_clock,
    plan_in,
    running_simulator,
    sim_config,
    sim_config_data,
    sim_settings,
    squeezed_day_data,
    write_sim_config,
)

__all__ = [
    "SIM_SEED",
    "LoopClock",
    "SimulatorSolver",
    "daemon_clock",
    "needs_ocr",
    "plan_in",
    "running_simulator",
    "sim_config",
    "sim_config_data",
    "sim_settings",
    "squeezed_day_data",
    "write_sim_config",
]

needs_ocr = pytest.mark.skipif(
    importlib.util.find_spec("ddddocr") is None,
    reason="reads the simulator's captchas with the OCR model (the ocr extra)",
)
"""For tests whose daemon reads captchas with the real OCR model: a child `python -m daemon`, or OCR itself."""
