"""The steps of one leased shard that need the lease table: parents first, and shard end.

Kept apart from the lease loop (``_coordinator.py``), which they share state with: the
coordinator inherits them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kinesio._config import ConsumerSettings
from kinesio._errors import KinesioError, LeaseLost
from kinesio._kinesis import KinesisAPI
from kinesio._models import SHARD_END, ChildShard, ExtendedSequenceNumber, Lease, Shard
from kinesio.consumer import _shards
from kinesio.consumer._lease_handle import LeaseHandle
from kinesio.events import Emitter, ShardEnded
from kinesio.leases.base import LeaseStore

logger = logging.getLogger("kinesio.leases")

T = TypeVar("T")


class ShardSteps:
    """Parents-first waiting, retries while held, and the shard-end sequence of a lease."""

    store: LeaseStore
    kinesis: KinesisAPI
    stream_name: str
    settings: ConsumerSettings
    events: Emitter
    held: dict[str, LeaseHandle]
    shards: dict[str, Shard]
    _take_now: asyncio.Event

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
        self._take_now.set()  # the children may be free now
