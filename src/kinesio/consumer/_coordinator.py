"""The lease loop: take, renew, steal and release leases in the lease table (KCL 2.x semantics).

All coordination between workers goes through the lease table: there is no other channel.
A lease's expiry is judged by its counter not moving for ``failover_time`` on this worker's own
monotonic clock — wall clocks of different hosts are never compared.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from kinesio._config import ConsumerSettings
from kinesio._errors import KinesioError, LeaseLost
from kinesio._kinesis import KinesisAPI
from kinesio._models import (
    SHARD_END,
    ChildShard,
    ExtendedSequenceNumber,
    Lease,
    Shard,
)
from kinesio.consumer import _assignment, _shards
from kinesio.consumer._lease_handle import LeaseHandle as LeaseHandle
from kinesio.events import (
    Emitter,
    LeaseAcquired,
    ShardEnded,
)
from kinesio.leases.base import LeaseStore

logger = logging.getLogger("kinesio.leases")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Seen:
    owner: str | None
    counter: int
    since: float


class LeaseCoordinator:
    """Keeps this worker's fair share of leases. Newly acquired leases appear on ``acquired``."""

    def __init__(
        self,
        store: LeaseStore,
        kinesis: KinesisAPI,
        stream_name: str,
        worker_id: str,
        settings: ConsumerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        events: Emitter | None = None,
    ) -> None:
        self.events = events or Emitter(None)
        self.store = store
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.worker_id = worker_id
        self.settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self.held: dict[str, LeaseHandle] = {}
        self.acquired: asyncio.Queue[LeaseHandle | None] = asyncio.Queue()
        self.table: dict[str, Lease] = {}
        self.shards: dict[str, Shard] = {}
        self._seen: dict[str, _Seen] = {}
        self._take_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._taking = True

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the table if allowed, sync shards to leases once, start the loops."""
        await self.store.create_table_if_missing()
        await self.sync_shards()
        self._tasks = [
            asyncio.create_task(self._loop(self.renew_round, self._renew_interval), name="renew"),
            asyncio.create_task(self._take_loop(), name="take"),
            asyncio.create_task(
                self._loop(self.sync_shards, lambda: self.settings.shard_sync_interval),
                name="shard-sync",
            ),
        ]

    def stop_taking(self) -> None:
        self._taking = False
        self.acquired.put_nowait(None)

    async def stop(self) -> None:
        """Release every lease still held and stop the loops."""
        self._taking = False
        await asyncio.gather(*(h.release() for h in list(self.held.values())))
        self.held.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _renew_interval(self) -> float:
        return self.settings.effective_renew_interval

    async def _loop(self, step: Callable[[], object], interval: Callable[[], float]) -> None:
        while True:
            await asyncio.sleep(interval())
            try:
                await step()  # type: ignore[misc]
            except KinesioError as exc:
                logger.warning("%s failed, will retry: %s", getattr(step, "__name__", step), exc)

    async def _take_loop(self) -> None:
        while self._taking:
            try:
                await self.take_round()
            except KinesioError as exc:
                logger.warning("taking leases failed, will retry: %s", exc)
            self._take_now.clear()
            try:
                async with asyncio.timeout(self.settings.effective_take_interval):
                    await self._take_now.wait()
            except TimeoutError:
                pass

    def take_soon(self) -> None:
        """Run a take round now (a shard ended; its children may be free)."""
        self._take_now.set()

    # -- rounds ----------------------------------------------------------------------------

    async def renew_round(self) -> None:
        handles = list(self.held.values())
        await asyncio.gather(*(h.renew(self.settings.failover_time) for h in handles))
        for h in handles:
            if not h.active:
                self.held.pop(h.key, None)

    async def refresh_table(self) -> list[Lease]:
        leases = await self.store.list_leases()
        now = self._clock()
        seen: dict[str, _Seen] = {}
        for lease in leases:
            prev = self._seen.get(lease.lease_key)
            if prev is None or (prev.owner, prev.counter) != (
                lease.lease_owner,
                lease.lease_counter,
            ):
                seen[lease.lease_key] = _Seen(lease.lease_owner, lease.lease_counter, now)
            else:
                seen[lease.lease_key] = prev
        self._seen = seen
        self.table = {lease.lease_key: lease for lease in leases}
        return leases

    def expired(self) -> set[str]:
        """Leases that are unowned, or whose counter has not moved for the failover time."""
        now = self._clock()
        out: set[str] = set()
        for key, lease in self.table.items():
            if key in self.held:
                continue
            s = self._seen[key]
            if lease.lease_owner is None or now - s.since > self.settings.failover_time:
                out.add(key)
        return out

    async def take_round(self) -> None:
        if not self._taking:
            return
        leases = await self.refresh_table()
        for key, handle in list(self.held.items()):
            stored = self.table.get(key)
            if stored is None or stored.lease_owner != self.worker_id:
                handle.mark_lost("the lease table shows another owner")
                self.held.pop(key, None)
        mine = [
            lease
            for lease in leases
            if lease.lease_key in self.held or lease.lease_owner != self.worker_id
        ]
        plan = _assignment.plan(
            mine,
            self.expired(),
            self.worker_id,
            max_leases=self.settings.max_leases,
            max_leases_to_steal=self.settings.max_leases_to_steal,
            rng=self._rng,
        )
        for key in plan.take + plan.steal:
            if not self._taking:
                return
            lease = self.table[key]
            started = self._clock()
            taken = await self.store.take(lease, self.worker_id)
            if taken is None:
                continue  # another worker was quicker
            verb = "stole" if key in plan.steal else "took"
            logger.info(
                "%s lease %s (from %s; target %d)", verb, key, lease.lease_owner, plan.target
            )
            self.events.emit(
                LeaseAcquired(
                    lease_key=key,
                    previous_owner=lease.lease_owner,
                    stolen=key in plan.steal,
                    lease_counter=taken.lease_counter,
                )
            )
            handle = LeaseHandle(
                taken,
                self.store,
                self.worker_id,
                self._clock,
                self.events,
                failover_time=self.settings.failover_time,
                written_at=started,
            )
            self.held[key] = handle
            self.table[key] = taken
            await self.acquired.put(handle)

    async def sync_shards(self) -> None:
        """Create leases for shards nobody has read yet; delete finished parents' leases."""
        shards = await self.kinesis.list_shards(self.stream_name)
        self.shards = {s.shard_id: s for s in shards}
        leases = await self.refresh_table()
        start = self.settings.initial_position
        created = _shards.initial_leases(
            shards, set(self.table), ExtendedSequenceNumber(start.kind)
        )
        for lease in created:
            if await self.store.create_lease(lease) is not None:
                logger.info("created lease %s at %s", lease.lease_key, start.kind)
        for key in _shards.parents_to_delete(leases):
            if await self.store.delete_lease(self.table[key]):
                logger.info("deleted finished parent lease %s", key)
        if created:
            self.take_soon()

    # -- shards ----------------------------------------------------------------------------

    async def shard(self, shard_id: str, lease: Lease) -> Shard:
        """The shard behind a lease (from ListShards, else the hash range stored in the lease).

        A shard ListShards no longer lists (retention removed it after it closed) gets the
        lease's hash range, or the whole key space when the lease has none: its fetcher then
        finds it gone and ends it (see ``kinesio.consumer._fetcher``), so its lease is
        finished instead of blocking its children.
        """
        known = self.shards.get(shard_id)
        if known is None:
            self.shards = {s.shard_id: s for s in await self.kinesis.list_shards(self.stream_name)}
            known = self.shards.get(shard_id)
        if known is not None:
            return known
        start = lease.starting_hash_key if lease.starting_hash_key is not None else 0
        end = lease.ending_hash_key if lease.ending_hash_key is not None else 2**128 - 1
        return Shard(shard_id, start, end)

    async def wait_until_ready(self, handle: LeaseHandle, poll: float = 1.0) -> bool:
        """Wait until every parent lease still present has checkpoint SHARD_END.

        Returns False if the lease was lost meanwhile.
        """
        while handle.active:
            parents = {}
            for parent in handle.lease.parent_shard_ids:
                lease = await self.store.get_lease(parent)
                if lease is not None:
                    parents[parent] = lease
            if _shards.is_ready(handle.lease, parents):
                return True
            try:
                async with asyncio.timeout(poll):
                    await handle.lost.wait()
            except TimeoutError:
                pass
        return False

    async def while_held(
        self, handle: LeaseHandle, what: str, step: Callable[[], Awaitable[T]]
    ) -> T:
        """Run ``step`` until it succeeds, retrying retriable AWS errors (throttling, 5xx,
        dropped connections) with backoff for as long as ``handle`` is held.

        A shard's own steps (waiting for its parents, starting to read it, finishing it) must
        not give the shard up over a transient error: the lease would stay held by a worker
        that no longer reads it. Raises :class:`LeaseLost` once the lease is lost, and any
        error that is not retriable.
        """
        delay = 0.1
        while True:
            if not handle.active:
                raise LeaseLost(f"lease {handle.key} is no longer held: {handle.lost_reason}")
            try:
                return await step()
            except LeaseLost:
                raise
            except KinesioError as exc:
                if not exc.retriable:
                    raise
                logger.warning("%s of shard %s failed, will retry: %s", what, handle.key, exc)
            try:
                async with asyncio.timeout(delay * random.uniform(0.5, 1.0)):
                    await handle.lost.wait()
            except TimeoutError:
                pass
            delay = min(delay * 2, max(0.1, self.settings.effective_renew_interval))

    async def finish_shard(self, handle: LeaseHandle, children: list[ChildShard]) -> None:
        """At shard end: create the children's leases, checkpoint SHARD_END, release the lease.

        Waits (keeping the lease) while a merge child's other parent has no lease yet, as the
        KCL does. Retriable AWS errors are retried while the lease is held (every step can be
        repeated). Raises :class:`LeaseLost` if the lease is lost meanwhile.
        """
        await self.while_held(handle, "finishing", lambda: self._finish_shard(handle, children))

    async def _finish_shard(self, handle: LeaseHandle, children: list[ChildShard]) -> None:
        listed: set[str] | None = None
        if not children:
            shards = await self.kinesis.list_shards(self.stream_name)
            self.shards = {s.shard_id: s for s in shards}
            listed = set(self.shards)
            children = [
                ChildShard(c.shard_id, c.parent_shard_ids, c.starting_hash_key, c.ending_hash_key)
                for c in _shards.children_from_list_shards(handle.key, shards)
            ]
        while True:
            if not handle.active:
                raise LeaseLost(f"lease {handle.key} lost at shard end: {handle.lost_reason}")
            keys = {lease.lease_key for lease in await self.store.list_leases()}
            if listed is None:
                listed = {s.shard_id for s in await self.kinesis.list_shards(self.stream_name)}
            missing = _shards.unleased_parents(children, keys, listed=listed)
            if not missing:
                break
            logger.info("shard %s ended; waiting for parent leases %s", handle.key, missing)
            await asyncio.sleep(min(2.0, self.settings.effective_take_interval))
        for lease in _shards.child_leases(children):
            if await self.store.create_lease(lease) is not None:
                logger.info("created child lease %s of %s", lease.lease_key, handle.key)
        await handle.checkpoint(
            ExtendedSequenceNumber(SHARD_END), child_shard_ids=[c.shard_id for c in children]
        )
        await handle.release()
        self.held.pop(handle.key, None)
        self.events.emit(
            ShardEnded(shard_id=handle.key, children=tuple(c.shard_id for c in children))
        )
        self.take_soon()
