"""SIGKILL in the middle of cache writes: the entry is always a whole old or new value, never a part.

A writer process saves large entries to one key in a loop through the Cache API and is killed with
SIGKILL at a random moment (5-50 ms after its first save), twenty times over. Writers are forked from a
forkserver that has already imported the cache, so each round costs milliseconds, not an interpreter start.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

from daemon.cache import TYPES, Cache, CorruptEntry, decode_entry
from daemon.clock import SystemClock
from daemon.config import CacheSettings
from tests.processes import REPO_ROOT

KEY = "u1_gs"
FILE = f"buying_power_{KEY}.json"
ROUNDS = 20


def payload(seq: int) -> dict[str, object]:
    """About 300 KB (under the 1 MiB an entry may be), checkable on its own: the blob repeats its number."""
    return {"seq": seq, "blob": f"{seq:08d};" * 33_000}


def write_forever(directory: str, first_saved: multiprocessing.synchronize.Event) -> None:
    async def loop() -> None:
        cache = Cache(CacheSettings(dir=Path(directory)), SystemClock())
        seq = 0
        while True:
            await cache.set("buying_power", KEY, payload(seq))
            first_saved.set()
            seq += 1

    asyncio.run(loop())


def whole_value(raw: bytes) -> int:
    """The entry's sequence number; AssertionError for anything but a complete, consistent entry."""
    try:
        data = decode_entry(raw, TYPES["buying_power"]).data
    except CorruptEntry as exc:
        raise AssertionError(f"a partial or broken entry ({exc}), {len(raw)} bytes") from None
    assert data == payload(int(data["seq"])), "an entry mixing two writes"  # type: ignore[arg-type]
    return int(data["seq"])  # type: ignore[arg-type]


def test_sigkill_during_writes_never_leaves_a_partial_entry(cache_dir: Path, monkeypatch) -> None:
    # Python 3.11's forkserver imports its preload before it applies sys.path, so give it the path to
    # this checkout and this module in the environment it starts with.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), str(Path(__file__).parent)]))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["daemon.cache", __name__])
    rng = random.Random()
    strays = 0
    for _ in range(ROUNDS):
        first_saved = context.Event()
        writer = context.Process(target=write_forever, args=(str(cache_dir), first_saved), daemon=True)
        writer.start()
        try:
            assert first_saved.wait(30), "the writer never saved"
            time.sleep(rng.uniform(0.005, 0.05))  # the random moment of the kill, not a synchronization
        finally:
            os.kill(writer.pid, signal.SIGKILL)
            writer.join(30)
        assert writer.exitcode == -signal.SIGKILL
        whole_value((cache_dir / FILE).read_bytes())  # present since the first save, and whole
        strays = len([p for p in cache_dir.iterdir() if p.name.endswith(".tmp")])

    async def read_back() -> None:  # temp files left by the kills are never taken for entries
        cache = Cache(CacheSettings(dir=cache_dir), SystemClock())
        assert [i.key for i in await cache.list("buying_power")] == [KEY]
        assert await cache.get("buying_power", KEY) == payload(whole_value((cache_dir / FILE).read_bytes()))
        assert await cache.clean_expired() == 0

    asyncio.run(read_back())
    print(f"{strays} temp files left by {ROUNDS} kills")  # kills that landed between the temp file and the rename
