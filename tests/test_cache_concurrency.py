"""Many writers of one key (asyncio tasks, threads, processes) never leave a partial file, and their stats add up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson

from daemon.cache import TYPES, Cache, CorruptEntry, decode_entry
from daemon.clock import SystemClock
from daemon.config import CacheSettings
from tests.processes import REPO_ROOT

KEY = "u1_gs"
FILE = f"buying_power_{KEY}.json"
WRITES = 15
READS_AFTER = 4


def payload(writer: str, seq: int) -> dict[str, object]:
    """Big enough that a torn write would show, and checkable on its own: the blob names its writer."""
    return {"writer": writer, "seq": seq, "blob": f"{writer}:{seq};" * 20_000}


def is_whole(raw: bytes) -> bool:
    try:
        data = decode_entry(raw, TYPES["buying_power"]).data
    except CorruptEntry:
        return False
    return data == payload(str(data["writer"]), int(data["seq"]))  # type: ignore[arg-type]


async def write_many(writer: str, directory: Path) -> None:
    """One writer: WRITES saves of the key, then READS_AFTER hits, then a flush of its counters."""
    async with Cache(CacheSettings(dir=directory), SystemClock()) as cache:
        for seq in range(WRITES):
            await cache.set("buying_power", KEY, payload(writer, seq))
        for _ in range(READS_AFTER):
            assert await cache.get("buying_power", KEY) is not None


CHILD = """
import asyncio, sys
from pathlib import Path
from tests.test_cache_concurrency import write_many
asyncio.run(write_many(sys.argv[1], Path(sys.argv[2])))
"""


def test_concurrent_writers_never_leave_a_partial_file(cache_dir: Path) -> None:
    stop = threading.Event()
    seen: list[bool] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(is_whole((cache_dir / FILE).read_bytes()))
            except FileNotFoundError:
                continue

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    watcher = threading.Thread(target=reader)
    watcher.start()
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, f"proc{i}", str(cache_dir)], env=env, cwd=REPO_ROOT)
        for i in range(3)
    ]
    threads = [threading.Thread(target=asyncio.run, args=(write_many(f"thread{i}", cache_dir),)) for i in range(3)]
    for thread in threads:
        thread.start()

    async def tasks() -> None:
        await asyncio.gather(*(write_many(f"task{i}", cache_dir) for i in range(10)))

    try:
        asyncio.run(tasks())
        for thread in threads:
            thread.join()
        codes = [child.wait(timeout=60) for child in children]
    finally:
        stop.set()
        watcher.join()

    assert codes == [0, 0, 0]
    assert seen and all(seen), f"{seen.count(False)} of {len(seen)} reads saw a partial or mixed file"
    assert is_whole((cache_dir / FILE).read_bytes())
    assert [p.name for p in cache_dir.iterdir() if p.name.endswith(".tmp")] == []
    counts = orjson.loads((cache_dir / "stats.json").read_bytes())["types"]["buying_power"]
    assert counts == {"hits": 16 * READS_AFTER, "misses": 0}
