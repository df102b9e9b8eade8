"""Group operation: several `daemon run` processes (members) on one Redis, each account owned by one of them.

Ownership is a lease in Redis, `opening-bell:lease:{account}` = the member's id, set only if absent and
with an expiry (SET NX PX), renewed by the owner's heartbeat with a compare-and-expire script. A member
that dies stops renewing: its leases end after `group.lease_ttl_s` and live members take the accounts
over. Each member also keeps `opening-bell:member:{id}` alive, which is how the others know who is there.

Who takes which account is decided without talking: the live member with the highest hash of (account,
member id) among those allowed to serve it (rendezvous hashing), so members agree, and a member joining
or leaving moves only its own share. `accounts[].host_group` pins an account to members started with the
same `group.host_group` (to spread accounts over public IPs). An account left without a lease for two of
a member's heartbeats is taken by that member even if it is not the preferred one, so nothing is orphaned
by a member that is alive but not taking accounts.

Safety: a member counts a lease as its own only until `lease_ttl_s` (less a tenth) after the last
renewal it saw succeed, measured on its monotonic clock from before the command, so it stops using an
account before another member can have taken it. From the arm on, a member is frozen: it gives away
nothing for rebalancing (its accounts are armed); once the fire starts it takes nothing new either.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from daemon import (
    metrics,
    store,  # its Redis side (redis-py) loads at first use: a service without a group never imports it
)
from daemon.clock import Clock
from daemon.config import AccountSettings, GroupSettings
from daemon.logs import get_logger

log = get_logger("group")
NS = 1_000_000_000

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    host: str
    pid: int
    host_group: str | None = None

    def serves(self, account: AccountSettings) -> bool:
        return account.host_group is None or account.host_group == self.host_group


@dataclass(frozen=True)
class Change:
    gained: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.gained or self.lost)


@dataclass
class LeaseView:
    account: str
    host_group: str | None
    owner: str | None
    expires_in_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def member_id(name: str | None = None) -> str:
    """`{name}/{pid}-{random}`: unique even when two processes are given one name."""
    return f"{name or socket.gethostname()}/{os.getpid()}-{secrets.token_hex(3)}"


def preferred(account: AccountSettings, members: Iterable[Member]) -> Member | None:
    """The member that should own `account`: the highest (account, member) hash among those allowed to serve it."""
    allowed = [m for m in members if m.serves(account)]
    if not allowed:
        return None
    return max(allowed, key=lambda m: hashlib.blake2b(f"{account.name}\0{m.id}".encode(), digest_size=8).digest())


OnChange = Callable[[Change], Awaitable[None]]


@dataclass
class _Held:
    valid_until_ns: int


class Group:
    """This process's membership: `tick()` once per heartbeat (the `start`ed task does it); `holds()` any time."""

    def __init__(
        self,
        redis: Any,
        settings: GroupSettings,
        accounts: list[AccountSettings],
        clock: Clock,
        *,
        where: str = "redis",
        namespace: str | None = None,
        on_change: OnChange | None = None,
        id: str | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.accounts = {a.name: a for a in accounts}
        self.clock = clock
        self.where = where
        self.namespace = store.NAMESPACE if namespace is None else namespace
        self.on_change = on_change
        self.me = Member(
            id or member_id(settings.member_name),
            settings.member_name or socket.gethostname(),
            socket.gethostname(),
            os.getpid(),
            settings.host_group,
        )
        self.frozen = False  # from the arm: give nothing away
        self.gaining = True  # until the fire: take accounts over
        self._held: dict[str, _Held] = {}
        self._orphans: set[str] = set()
        self._unserved: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._reactions: set[asyncio.Task[None]] = set()
        self._failing = False

    # ---- keys -----------------------------------------------------------------------------------------

    def lease_key(self, account: str) -> str:
        return f"{self.namespace}:lease:{account}"

    def member_key(self, member: str) -> str:
        return f"{self.namespace}:member:{member}"

    @property
    def _ttl_ms(self) -> int:
        return int(self.settings.lease_ttl_s * 1000)

    # ---- what this member holds -----------------------------------------------------------------------

    def holds(self, account: str) -> bool:
        held = self._held.get(account)
        return held is not None and held.valid_until_ns > self.clock.monotonic_ns()

    def held(self) -> list[str]:
        """The accounts this member may act for now, in config order."""
        return [name for name in self.accounts if self.holds(name)]

    # ---- the heartbeat --------------------------------------------------------------------------------

    async def tick(self) -> Change:
        """Register, renew what is held, give away what another member should have, take what is ours."""
        try:
            change = await self._tick()
        except store.StoreUnavailable as exc:
            if not self._failing:
                log.error(
                    "group.redis_unavailable",
                    reason=exc.strerror,
                    held=len(self.held()),
                    consequence="leases run out unless Redis answers again in time",
                )
            self._failing = True
            change = Change(lost=tuple(self._expired()))
        else:
            if self._failing:
                log.info("group.redis_recovered")
            self._failing = False
        metrics.leases_held(len(self.held()))
        if change:
            log.info(
                "group.leases_changed",
                member=self.me.id,
                gained=len(change.gained),
                lost=len(change.lost),
                held=len(self.held()),
            )
        return change

    async def _tick(self) -> Change:
        started = self.clock.monotonic_ns()
        valid_until = started + int(self.settings.lease_ttl_s * 0.9 * NS)
        await self._call(self.redis.set(self.member_key(self.me.id), orjson.dumps(asdict(self.me)), px=self._ttl_ms))
        members = await self.members()
        lost = self._expired()

        names = list(self._held)
        renewed = await self._call(self._script_each(_RENEW, names, self._ttl_ms))
        for name, ok in zip(names, renewed):
            if ok:
                self._held[name].valid_until_ns = valid_until
            else:
                del self._held[name]
                lost.append(name)
        if not self.frozen:
            lost += await self._give_away(members)

        gained: list[str] = []
        if self.gaining:
            gained = await self._take(members, valid_until)
        return Change(tuple(gained), tuple(lost))

    def _expired(self) -> list[str]:
        now = self.clock.monotonic_ns()
        gone = [name for name, held in self._held.items() if held.valid_until_ns <= now]
        for name in gone:
            del self._held[name]
        return gone

    async def _give_away(self, members: list[Member]) -> list[str]:
        """Leases another live member should hold (it joined, or was away): released for it to take."""
        others = [
            name
            for name in self._held
            if (p := preferred(self.accounts[name], members)) is not None and p.id != self.me.id
        ]
        await self._call(self._script_each(_RELEASE, others))
        for name in others:
            del self._held[name]
        return others

    async def _take(self, members: list[Member], valid_until: int) -> list[str]:
        wanted = [a for name, a in self.accounts.items() if name not in self._held and self.me.serves(a)]
        if not wanted:
            return []
        owners = await self._call(self.redis.mget([self.lease_key(a.name) for a in wanted]))
        orphans = {a.name for a, owner in zip(wanted, owners) if owner is None}
        self._report_unserved(members)
        take = [
            a.name
            for a in wanted
            if a.name in orphans and (preferred(a, members) == self.me or a.name in self._orphans)
        ]
        self._orphans = orphans - set(take)
        if not take:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in take:
                pipe.set(self.lease_key(name), self.me.id, nx=True, px=self._ttl_ms)
            results = await self._call(pipe.execute())
        gained = [name for name, ok in zip(take, results) if ok]
        for name in gained:
            self._held[name] = _Held(valid_until)
        return gained

    def _report_unserved(self, members: list[Member]) -> None:
        unserved = {name for name, a in self.accounts.items() if preferred(a, members) is None}
        for name in sorted(unserved - self._unserved):
            log.warning(
                "group.account_unserved",
                account=name,
                host_group=self.accounts[name].host_group,
                reason="no live member has this host_group",
            )
        self._unserved = unserved

    async def _script_each(self, script: str, names: list[str], *args: Any) -> list[Any]:
        if not names:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.eval(script, 1, self.lease_key(name), self.me.id, *args)
            return list(await pipe.execute())

    async def members(self) -> list[Member]:
        """The live members, this one included once it has ticked."""

        async def read() -> list[Any]:
            keys = [k async for k in self.redis.scan_iter(match=f"{self.namespace}:member:*", count=500)]
            return await self.redis.mget(keys) if keys else []

        values = await self._call(read())
        found = []
        for raw in values:
            if raw is None:
                continue
            try:
                found.append(Member(**orjson.loads(raw)))
            except (orjson.JSONDecodeError, TypeError):
                continue
        return sorted(found, key=lambda m: m.id)

    async def leases(self) -> list[LeaseView]:
        """Every configured account with its owner and how long its lease has left (for `group` and tests)."""
        names = list(self.accounts)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(self.lease_key(name))
                pipe.pttl(self.lease_key(name))
            raw = await self._call(pipe.execute())
        views = []
        for index, name in enumerate(names):
            owner, pttl = raw[2 * index], raw[2 * index + 1]
            views.append(
                LeaseView(
                    name,
                    self.accounts[name].host_group,
                    owner.decode() if isinstance(owner, bytes) else owner,
                    pttl / 1000 if owner is not None and pttl >= 0 else None,
                )
            )
        return views

    async def _call(self, call: Awaitable[Any]) -> Any:
        return await store.guarded(call, self.where)

    # ---- running ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """A first tick now, then one every `heartbeat_s` in a task; changes go to `on_change` in tasks of their own,
        so a slow reaction (warming an account) never delays a renewal."""
        if self._heartbeat is not None:
            return
        self._react(await self.tick())
        self._heartbeat = asyncio.create_task(self._beat(), name="group-heartbeat")
        log.info("group.joined", member=self.me.id, host_group=self.me.host_group, held=len(self.held()))

    async def _beat(self) -> None:
        while self._heartbeat is not None:  # a flag as well as cancel(): a stop never depends on cancellation alone
            await asyncio.sleep(self.settings.heartbeat_s)
            if self._heartbeat is not None:
                self._react(await self.tick())

    def _react(self, change: Change) -> None:
        if change and self.on_change is not None:
            task = asyncio.create_task(self.on_change(change), name="group-change")
            self._reactions.add(task)
            task.add_done_callback(self._reacted)

    def _reacted(self, task: asyncio.Task[None]) -> None:
        self._reactions.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("group.reaction_failed", reason=repr(task.exception()))

    async def stop(self, release: bool = True) -> None:
        """Stop the heartbeat; `release` hands every lease back at once (a clean stop), else they run out."""
        tasks = [t for t in (self._heartbeat, *self._reactions) if t is not None]
        self._heartbeat = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=store.COMMAND_TIMEOUT_S + self.settings.heartbeat_s)
        if release:
            names = list(self._held)
            self._held.clear()
            try:
                await self._call(self._script_each(_RELEASE, names))
                await self._call(self.redis.delete(self.member_key(self.me.id)))
            except store.StoreUnavailable as exc:
                log.warning("group.release_failed", reason=exc.strerror, consequence="the leases run out by themselves")
        metrics.leases_held(0)

    def freeze(self) -> None:
        """Armed: keep every lease (renewing it), give none away; still take accounts over."""
        self.frozen = True

    def stop_gaining(self) -> None:
        """Firing: take nothing new (it could not be armed in time)."""
        self.gaining = False

    def thaw(self) -> None:
        """After the window: back to normal."""
        self.frozen = False
        self.gaining = True


def group_from_services(services: Any, accounts: list[AccountSettings], on_change: OnChange | None = None) -> Group:
    """The group over the Redis client the cache already holds (`cache.backend: redis` is required by config)."""
    backend = services.cache.backend
    return Group(
        backend.redis,
        services.config.group,
        accounts,
        services.clock,
        where=backend.location,
        namespace=backend.namespace,
        on_change=on_change,
    )
