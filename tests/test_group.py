"""Leases in Redis for several members in one process: sharing, rebalancing, takeover, host groups, freezing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import pytest
import yaml
from structlog.testing import capture_logs

from daemon.clock import SystemClock
from daemon.config import AccountSettings, GroupSettings
from daemon.service import Group, preferred
from daemon.store import connect

ISIN = "IRO1FOLD0001"


def accounts(count: int, host_group: str | None = None, start: int = 0) -> list[AccountSettings]:
    return [
        AccountSettings(
            name=f"a{i:02d}",
            broker="gs",
            username=f"u{i:02d}",
            password="x",
            host_group=host_group,
            orders=[{"isin": ISIN}],
        )
        for i in range(start, start + count)
    ]


@pytest.fixture
async def make_member(redis_url: str) -> AsyncIterator[Callable[..., Group]]:
    made: list[Group] = []
    clients = []

    def make(name: str, accts: list[AccountSettings], **settings: object) -> Group:
        client = connect(redis_url)
        clients.append(client)
        group = Group(client, GroupSettings(enabled=True, member_name=name, **settings), accts, SystemClock())
        made.append(group)
        return group

    yield make
    for group in made:
        await group.stop(release=False)
    for client in clients:
        await client.aclose()


async def owners(group: Group) -> dict[str, str | None]:
    return {v.account: v.owner for v in await group.leases()}


async def settle(*members: Group, rounds: int = 2) -> None:
    for _ in range(rounds):
        for member in members:
            await member.tick()


async def test_three_members_share_thirty_accounts_as_the_hash_says(make_member) -> None:
    accts = accounts(30)
    m1, m2, m3 = (make_member(f"m{i}", accts) for i in (1, 2, 3))
    first = await m1.tick()  # alone so far: it takes everything
    assert len(first.gained) == 30 and m1.held() == [a.name for a in accts]
    await settle(m2, m3, m1, m2, m3, rounds=1)  # m1 sees the others and gives their share away; they take it

    members = await m1.members()
    assert {m.id for m in members} == {m1.me.id, m2.me.id, m3.me.id}
    held = {m.me.id: set(m.held()) for m in (m1, m2, m3)}
    assert all(held.values()), held  # each member has a share
    assert sum(len(h) for h in held.values()) == 30 and set().union(*held.values()) == {a.name for a in accts}
    assert await owners(m1) == {a.name: preferred(a, members).id for a in accts}
    assert all(0 < v.expires_in_s <= 15 for v in await m1.leases())


async def test_a_member_that_dies_loses_its_accounts_to_the_live_ones(make_member) -> None:
    accts = accounts(12)
    fast = {"lease_ttl_s": 0.4, "heartbeat_s": 0.1}
    m1, m2, m3 = (make_member(f"m{i}", accts, **fast) for i in (1, 2, 3))
    await settle(m1, m2, m3)
    dead = set(m3.held())
    assert dead
    # m3 stops ticking (killed); the others keep their heartbeat until Redis has expired its leases and member key.
    deadline = time.monotonic() + 10
    while len(m1.held()) + len(m2.held()) < 12 and time.monotonic() < deadline:
        await settle(m1, m2, rounds=1)
        await asyncio.sleep(0.05)  # the heartbeat's own pace
    assert set(m1.held()) | set(m2.held()) == {a.name for a in accts}
    assert not set(m1.held()) & set(m2.held())
    assert m3.held() == []  # its own view ran out too: it would not fire them
    assert {m.id for m in await m1.members()} == {m1.me.id, m2.me.id}


async def test_a_clean_stop_hands_the_leases_over_at_once(make_member) -> None:
    accts = accounts(10)
    m1, m2 = make_member("m1", accts), make_member("m2", accts)
    await settle(m1, m2)
    assert m1.held() and m2.held()
    await m1.stop(release=True)
    assert set((await owners(m2)).values()) == {m2.me.id, None}
    await m2.tick()
    assert m2.held() == [a.name for a in accts]


async def test_host_groups_pin_accounts_to_their_members(make_member) -> None:
    pinned, free, nowhere = accounts(6, "ip-a"), accounts(10, start=6), accounts(1, "ip-z", start=20)
    accts = pinned + free + nowhere
    on_a = make_member("a", accts, host_group="ip-a")
    plain = make_member("plain", accts)
    with capture_logs() as logs:
        await settle(on_a, plain, on_a, plain)
    assert {a.name for a in pinned} <= set(on_a.held())
    assert not {a.name for a in pinned} & set(plain.held())
    assert set(on_a.held()) | set(plain.held()) == {a.name for a in pinned + free}
    assert (await owners(plain))["a20"] is None
    unserved = [e for e in logs if e["event"] == "group.account_unserved"]
    assert [e["account"] for e in unserved] == ["a20", "a20"]  # once per member, not once per tick


async def test_a_frozen_member_keeps_its_accounts_and_takes_over_until_it_fires(make_member) -> None:
    accts = accounts(20)
    m1 = make_member("m1", accts)
    await m1.tick()
    m1.freeze()  # armed
    m2 = make_member("m2", accts)
    await settle(m2, m1, m2)
    assert len(m1.held()) == 20 and m2.held() == []  # nothing given away while armed
    m1.thaw()
    await settle(m1, m2, rounds=1)
    assert m2.held() and len(m1.held()) + len(m2.held()) == 20


async def test_orphans_go_to_a_member_even_when_their_preferred_one_does_not_take_them(make_member) -> None:
    accts = accounts(10)
    m1, m2 = make_member("m1", accts), make_member("m2", accts)
    m2.stop_gaining()  # firing: it takes nothing
    await settle(m2, m1)  # m1 takes its own share on its first tick, the orphans on the next one
    assert m2.held() == [] and len(m1.held()) == 10


async def test_a_lease_taken_by_someone_else_is_lost_not_renewed(make_member) -> None:
    accts = accounts(3)
    m1 = make_member("m1", accts)
    await m1.tick()
    await m1.redis.set(m1.lease_key("a01"), "intruder/1-abc")
    change = await m1.tick()
    assert change.lost == ("a01",) and not m1.holds("a01") and m1.holds("a00")
    assert (await owners(m1))["a01"] == "intruder/1-abc"


async def test_redis_away_is_logged_once_and_nothing_is_held() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = connect(f"redis://127.0.0.1:{port}/0")
    group = Group(client, GroupSettings(enabled=True), accounts(2), SystemClock())
    with capture_logs() as logs:
        await group.tick()
        await group.tick()
    assert group.held() == []
    assert len([e for e in logs if e["event"] == "group.redis_unavailable"]) == 1
    await client.aclose()


async def test_the_heartbeat_reports_changes_without_waiting_for_the_reaction(make_member) -> None:
    seen: list[tuple[str, ...]] = []
    reacting = asyncio.Event()
    release = asyncio.Event()

    async def slow_reaction(change) -> None:
        seen.append(change.gained)
        reacting.set()
        await release.wait()

    member = make_member("m1", accounts(4), lease_ttl_s=1.0, heartbeat_s=0.1)
    member.on_change = slow_reaction
    ticks = 0
    tick = member.tick

    async def counted_tick():
        nonlocal ticks
        ticks += 1
        return await tick()

    member.tick = counted_tick  # type: ignore[method-assign]
    await member.start()
    await reacting.wait()
    while ticks < 4:  # heartbeats go on while the reaction is still running
        await asyncio.sleep(0.05)
    assert not release.is_set() and member.held() == ["a00", "a01", "a02", "a03"]
    assert seen == [("a00", "a01", "a02", "a03")]  # gains reported once, not on every renewal
    release.set()


def test_the_group_command_shows_members_owners_and_lease_ends(redis_url, tmp_path, capsys) -> None:
    from daemon.cli import main

    accts = accounts(6, start=0) + accounts(1, "ip-z", start=6)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cache": {"backend": "redis", "redis_url": redis_url},
                "group": {"enabled": True},
                "accounts": [a.model_dump(mode="json", exclude_none=True) for a in accts],
            }
        )
    )
    config.chmod(0o600)

    async def two_members() -> list[str]:
        members = [
            Group(connect(redis_url), GroupSettings(enabled=True, member_name=f"m{i}"), accts, SystemClock())
            for i in (1, 2)
        ]
        await settle(*members)
        for member in members:
            await member.redis.aclose()  # gone without releasing: the leases stay until they run out
        return [m.me.id for m in members]

    ids = asyncio.run(two_members())
    capsys.readouterr()  # the members' own log lines
    assert main(["--config", str(config), "group", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted(m["id"] for m in shown["members"]) == sorted(ids)
    assert sum(m["leases"] for m in shown["members"]) == 6
    by_account = {lease["account"]: lease for lease in shown["leases"]}
    assert {by_account[f"a{i:02d}"]["owner"] for i in range(6)} <= set(ids)
    assert all(
        0 < by_account[f"a{i:02d}"]["expires_in_s"] <= 15 and by_account[f"a{i:02d}"]["expires_at"] for i in range(6)
    )
    assert by_account["a06"] == {
        "account": "a06",
        "host_group": "ip-z",
        "owner": None,
        "expires_in_s": None,
        "expires_at": None,
    }
    assert main(["--config", str(config), "group"]) == 0
    table = capsys.readouterr().out
    assert "lease ends" in table and "(none)" in table and ids[0] in table


def test_the_group_command_needs_redis(tmp_path, capsys) -> None:
    from daemon.cli import main

    assert main(["group"]) == 2
    assert "set cache.backend: redis" in capsys.readouterr().err
