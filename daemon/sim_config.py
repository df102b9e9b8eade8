"""The daemon's config for a simulator: its snippet (`Simulator.config_snippet`) plus the caller's sections.

One builder for the demo and the benchmarks (and a test helper can take it too), so a setting every
config pointed at the simulator needs is added in one place. It works on the snippet's data, not on a
`Simulator`, because a benchmark's simulator runs in a child process that prints its snippet.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def sim_config_data(
    snippet: Mapping[str, Any], *, state_dir: Path | None = None, cache_dir: Path | None = None, **sections: Any
) -> dict[str, Any]:
    """A config dict: the snippet's market data URL, brokers and accounts, then `state_dir`, `cache_dir`
    (as `cache.dir`) and `sections` by top-level key; a section that is a mapping is merged into the one
    already there (one level deep), anything else replaces it."""
    data = dict(snippet)
    if state_dir is not None:
        data["state_dir"] = str(state_dir)
    if cache_dir is not None:
        sections = {"cache": {"dir": str(cache_dir), **sections.pop("cache", {})}, **sections}
    for key, value in sections.items():
        if isinstance(value, Mapping) and isinstance(data.get(key), Mapping):
            data[key] = {**data[key], **value}
        else:
            data[key] = dict(value) if isinstance(value, Mapping) else value
    return data
