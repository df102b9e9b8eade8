"""Hostile cache files under real entry names: every read is a miss or a valid entry, never an exception.

Hypothesis writes random bytes, random JSON, entry-shaped JSON with wrong types, NaN, huge numbers,
deep nesting, BOMs and naive/aware/garbage timestamps; the cache API and the client's typed reads must
cope, and a corrupt entry must be moved aside. Then the special files: symlinks, FIFOs, directories and
hard links in place of an entry.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.cache import TYPES, Cache, CorruptEntry, decode_entry
from daemon.cli import main
from daemon.clock import FakeClock
from daemon.config import CacheSettings, validate_config
from daemon.errors import BrokerUnavailable
from daemon.wiring import Wiring
from tests.test_cache import machine_in_tehran  # noqa: F401 (a fixture: this machine's zone ahead of UTC)

ISIN = "IRO1FOLD0001"
NOW = datetime(2026, 11, 21, 4, 0, tzinfo=UTC)
ENTRIES = {  # file name -> (type, the typed getter's arguments)
    "token_u1_gs.json": ("tokens", ("u1", "gs")),
    f"market_data_{ISIN}.json": ("market", (ISIN,)),
    "buying_power_u1_gs.json": ("buying_power", ("u1", "gs")),
    f"order_params_u1_gs_{ISIN}.json": ("order_params", ("u1", "gs", ISIN)),
    f"holdings_u1_gs_{ISIN}.json": ("holdings", ("u1", "gs", ISIN)),
}
GETTERS = {
    "tokens": "get_token",
    "market": "get_market_data",
    "buying_power": "get_buying_power",
    "order_params": "get_order_params",
    "holdings": "get_holdings",
}

# ---- strategies -----------------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63, max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, -1e308, 5e-324]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=30))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
timestamps = st.one_of(
    st.datetimes().map(datetime.isoformat),  # naive: read as local time
    st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
    st.datetimes(timezones=st.just(timezone(timedelta(hours=23, minutes=59)))).map(datetime.isoformat),
    st.datetimes(timezones=st.just(timezone(-timedelta(hours=23, minutes=59)))).map(datetime.isoformat),
    st.sampled_from(
        [
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59",
            "9999-12-31T23:59:59-12:00",
            "2030-02-30T00:00",
            "tomorrow",
            "",
            "2030-01-01T00:00:00Z",
            "2030-01-01 00:00:00+03:30",
        ]
    ),
    st.text(max_size=30),
    numbers,
    st.none(),
)
likely_fields = {
    "token": st.text(max_size=20) | numbers,
    "isin": st.just(ISIN) | scalars,
    "side": st.sampled_from(["buy", "sell"]) | scalars,
    "price": numbers | scalars,
    "volume": numbers,
    "amount": numbers,
    "fee": numbers,
    "buyingPower": numbers | scalars,
    "remain_volume": numbers | scalars,
    "mineq": numbers,
    "maxeq": numbers,
    "minap": numbers,
    "maxap": numbers,
    "last_price": numbers | scalars,
}
data_dicts = st.fixed_dictionaries({}, optional=likely_fields) | st.dictionaries(
    st.text(max_size=8), json_values, max_size=5
)
entries = st.fixed_dictionaries(
    {"expires_at": timestamps},
    optional={
        "data": data_dicts | json_values,
        "created_at": timestamps,
        "username": st.just("u1") | scalars,
        "broker_code": st.just("gs") | scalars,
        "isin": st.just(ISIN) | scalars,
        **likely_fields,
    },
)


def dump(value: Any) -> bytes:
    """Python's json writes what orjson refuses: NaN, Infinity, integers past 64 bits."""
    return json.dumps(value, allow_nan=True).encode()


def deep(depth: int) -> bytes:
    return b'{"data": ' + b"[" * depth + b"]" * depth + b', "expires_at": "2030-01-01T00:00:00+00:00"}'


contents = st.one_of(
    st.binary(max_size=300),
    json_values.map(dump),
    entries.map(dump),
    entries.map(dump).map(lambda raw: b"\xef\xbb\xbf" + raw),  # a BOM, as some editors save
    st.tuples(entries.map(dump), st.floats(0, 1)).map(lambda p: p[0][: int(len(p[0]) * p[1])]),  # truncated
    st.integers(1, 5000).map(deep),
    st.text(max_size=200).map(lambda t: t.encode("utf-16")),
)

# ---- the property -----------------------------------------------------------------------------------------


def fresh_dir(root: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=root))


def is_decodable(raw: bytes, type_: str) -> bool:
    try:
        decode_entry(raw, TYPES[type_], ZoneInfo("Asia/Tehran"))
    except CorruptEntry:
        return False
    return True


async def read_everything(directory: Path, name: str, local_tz: Any) -> None:
    type_, parts = ENTRIES[name]
    cache = Cache(CacheSettings(dir=directory), FakeClock(NOW), local_tz=local_tz)
    got = await getattr(cache, GETTERS[type_])(*parts)
    assert got is None or isinstance(got, dict)
    for info in await cache.list(type_):
        info.to_dict()
    shown = await cache.show(type_, "_".join(parts))
    assert shown is None or isinstance(shown.data, dict)
    await cache.stats()
    await cache.flush()


def shown_by_the_cli(directory: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`cache list/show/stats` print every time in the config's zone (+14:00 here) without a traceback."""
    type_, parts = ENTRIES[name]
    config = directory / "config.yaml"
    config.write_text(json.dumps({"timezone": "Pacific/Kiritimati", "cache": {"dir": str(directory)}}))
    for argv in (
        ["list", type_],
        ["show", type_, "_".join(parts)],
        ["show", type_, "_".join(parts), "--json"],
        ["stats", "--json"],
    ):
        code = main(["cache", *argv, "--config", str(config)])
        err = capsys.readouterr().err
        assert code == 0 or (code == 2 and argv[0] == "show" and err.startswith("error: there is no")), err
    config.unlink()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(sorted(ENTRIES)),
    content=contents,
    naive_as=st.sampled_from([None, ZoneInfo("Asia/Tehran"), ZoneInfo("America/St_Johns")]),
)
def test_any_bytes_under_an_entry_name_are_a_miss_or_an_entry(
    tmp_path: Path, machine_in_tehran: None, capsys, name: str, content: bytes, naive_as
) -> None:
    directory = fresh_dir(tmp_path)
    (directory / name).write_bytes(content)
    asyncio.run(read_everything(directory, name, naive_as))
    corrupt = directory / f"{name}.corrupt"
    if is_decodable(content, ENTRIES[name][0]):
        assert (directory / name).read_bytes() == content and not corrupt.exists()
        shown_by_the_cli(directory, name, capsys)  # (a corrupt one is gone: nothing to show)
    else:  # moved aside whole, so the next run does not trip on it again
        assert not (directory / name).exists() and corrupt.read_bytes() == content


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=contents)
def test_any_stats_file_is_read_or_counted_again_from_zero(tmp_path: Path, content: bytes) -> None:
    directory = fresh_dir(tmp_path)
    (directory / "stats.json").write_bytes(content)

    async def run() -> None:
        cache = Cache(CacheSettings(dir=directory), FakeClock(NOW))
        await cache.stats()
        await cache.get_market_data(ISIN)
        await cache.flush()
        assert (await Cache(CacheSettings(dir=directory), FakeClock(NOW)).stats())["market"]["misses"] >= 1

    asyncio.run(run())


def dead_broker_config(directory: Path):
    return validate_config(
        {
            "cache": {"dir": str(directory)},
            "market_data_url": "http://127.0.0.1:9/md",
            "client": {"timeout_s": 2, "retry": {"attempts": 1}},
            "captcha": {"solver": "command", "command": ["cat"], "spacing_s": 0},
            "brokers": {
                "gs": {
                    "identity_url": "http://127.0.0.1:9/i",
                    "trading_url": "http://127.0.0.1:9/t",
                    "backoffice_url": "http://127.0.0.1:9/b",
                }
            },
            "accounts": [
                {
                    "name": "a",
                    "broker": "gs",
                    "username": "u1",
                    "password": "pw-hostile",
                    "orders": [{"isin": ISIN}, {"isin": ISIN, "side": "sell"}],
                }
            ],
        }
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(st.sampled_from(sorted(ENTRIES)), entries.map(dump), min_size=1))
def test_the_clients_typed_reads_use_an_entry_or_fetch_again(tmp_path: Path, files: dict[str, bytes]) -> None:
    """Entry-shaped files whose fields are the wrong type: the client either uses them or asks the broker
    (which is down here, so BrokerUnavailable), never a TypeError, KeyError or OverflowError."""
    directory = fresh_dir(tmp_path)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    config = dead_broker_config(directory)

    async def run() -> None:
        async with Wiring(config, FakeClock(NOW)) as services:
            client = services.client(config.accounts[0])
            for call in (
                client.get_buying_power,
                lambda: client.get_instrument(ISIN),
                lambda: client.get_holdings(ISIN),
                lambda: client.order_params(config.accounts[0].orders[0]),
                lambda: client.order_params(config.accounts[0].orders[1]),
                client.token,
            ):
                try:
                    await call()
                except BrokerUnavailable:
                    pass

    asyncio.run(run())


# ---- special files in place of an entry ---------------------------------------------------------------------

VALID = orjson.dumps(
    {
        "data": {"token": "t-from-elsewhere", "isin": ISIN, "buyingPower": 5, "remain_volume": 1},
        "expires_at": "2030-01-01T00:00:00+00:00",
    }
)


async def every_read_misses(directory: Path) -> None:
    cache = Cache(CacheSettings(dir=directory), FakeClock(NOW))
    for name, (type_, parts) in ENTRIES.items():
        assert await getattr(cache, GETTERS[type_])(*parts) is None, name
        assert await cache.show(type_, "_".join(parts)) is None
        assert await cache.list(type_) == []
    await cache.stats()
    assert await cache.clean_expired() == 0


@pytest.mark.parametrize(
    "kind", ["symlink to a valid entry", "symlink to a directory", "dangling symlink", "fifo", "directory"]
)
async def test_special_files_are_misses_moved_aside_never_followed(tmp_path: Path, kind: str) -> None:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    outside = tmp_path / "outside.json"
    outside.write_bytes(VALID)
    for name in ENTRIES:
        path = directory / name
        if kind == "symlink to a valid entry":
            path.symlink_to(outside)
        elif kind == "symlink to a directory":
            path.symlink_to(tmp_path, target_is_directory=True)
        elif kind == "dangling symlink":
            path.symlink_to(tmp_path / "nothing-here")
        elif kind == "fifo":
            os.mkfifo(path, 0o600)  # O_NONBLOCK: opening it for reading can never hang the daemon
        else:
            path.mkdir()
    await asyncio.wait_for(every_read_misses(directory), 10)
    assert outside.read_bytes() == VALID
    for name in ENTRIES:
        assert not os.path.lexists(directory / name) or kind == "dangling symlink", name
    cache = Cache(CacheSettings(dir=directory), FakeClock(NOW))
    await cache.save_token("u1", "gs", "t-ours", NOW + timedelta(hours=1))  # a write replaces whatever is there
    assert (await Cache(CacheSettings(dir=directory), FakeClock(NOW)).get_token("u1", "gs"))["token"] == "t-ours"
    assert outside.read_bytes() == VALID


async def test_a_hard_link_is_read_as_the_file_it_is_and_replaced_on_write(tmp_path: Path) -> None:
    """Documented behaviour: a hard link is a regular file in our 0700 directory, so it is read (only this
    user or root could have made it there; a link can never point outside the way a symlink does, it *is*
    the file). A write renames a new file over the name, so the other name keeps its old bytes."""
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    other = tmp_path / "other-name.json"
    other.write_bytes(VALID)
    os.link(other, directory / "token_u1_gs.json")
    cache = Cache(CacheSettings(dir=directory), FakeClock(NOW))
    assert (await cache.get_token("u1", "gs"))["token"] == "t-from-elsewhere"
    await cache.save_token("u1", "gs", "t-ours", NOW + timedelta(hours=1))
    assert other.read_bytes() == VALID and (directory / "token_u1_gs.json").stat().st_nlink == 1
