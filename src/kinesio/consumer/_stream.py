"""One leased shard as a stream of record batches: waiting for parents, reading, the shard
end, and the interruptions (lease lost, handed off, shutdown)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kinesio._errors import KinesioError, LeaseLost
from kinesio._models import Record
from kinesio.consumer._checkpointer import Checkpointer
from kinesio.consumer._coordinator import LeaseHandle
from kinesio.consumer._fetcher import FetchedBatch, ShardFetcher
from kinesio.events import (
    BatchProcessed,
    ShardBlockedOnParent,
    ShardStarted,
)

if TYPE_CHECKING:
    from kinesio.consumer._consumer import AsyncConsumer

logger = logging.getLogger("kinesio.consumer")


class ShardStream:
    """One leased shard: its records, in order, and its checkpointer.

    ``records()`` yields batches of deaggregated records. It ends when the lease is lost
    (``lost`` is then True), when the consumer shuts down, or at the end of the shard — after
    kinesio has created the children's leases and checkpointed ``SHARD_END`` (``ended`` is
    then True). Records of a shard whose parents are still being read are not delivered until
    those parents have ended (``blocked_on_parent`` is True meanwhile).
    """

    def __init__(
        self,
        consumer: AsyncConsumer,
        handle: LeaseHandle,
    ) -> None:
        self._consumer = consumer
        self._handle = handle
        self.shard_id = handle.key
        self.checkpointer = Checkpointer(handle, handle.key)
        self.ended = False
        self.blocked_on_parent = False
        self.millis_behind_latest: int | None = None
        self._before_shard_end: Callable[[], Awaitable[None]] | None = None
        # Set when nothing more will be written for this shard: by records() for a stream the
        # user drives, by the driver (after its final checkpoint) for consume_with / run.
        self.done = asyncio.Event()
        self._driven = False
        self._interrupt: asyncio.Future[None] | None = None

    @property
    def lost(self) -> bool:
        """True once the lease is lost: taken by another worker, or expired on this worker's
        clock (``failover_time`` without a successful renewal, even if one is still hanging)."""
        _ = self._handle.active  # marks a locally expired lease lost
        return self._handle.lost.is_set()

    def held_check(self) -> Callable[[], bool]:
        """See :meth:`LeaseHandle.held_check`: False once the lease may be gone; valid until
        the caller next awaits."""
        return self._handle.held_check()

    async def records(self) -> AsyncGenerator[list[Record], None]:
        """Batches of records until lease loss, shutdown or shard end (see the class doc)."""
        consumer = self._consumer
        handle = self._handle
        fetcher: ShardFetcher | None = None
        try:
            parents = tuple(sorted(handle.lease.parent_shard_ids))
            if parents:
                self.blocked_on_parent = True
                consumer._events.emit(ShardBlockedOnParent(shard_id=self.shard_id, parents=parents))
            coordinator = consumer._coordinator
            # transient AWS errors in these steps are retried while the lease is held: giving
            # the shard up would leave its lease held by a worker that no longer reads it
            ready = await coordinator.while_held(
                handle, "waiting for parents", lambda: coordinator.wait_until_ready(handle)
            )
            if not ready:
                return
            self.blocked_on_parent = False
            fetcher = await coordinator.while_held(
                handle, "starting to read", lambda: consumer._fetcher_for(handle)
            )
            await fetcher.start()
            consumer._events.emit(
                ShardStarted(
                    shard_id=self.shard_id, checkpoint=handle.lease.checkpoint.sequence_number
                )
            )
            while handle.active and not consumer._stopping.is_set():
                batch = await self._next(fetcher)
                if batch is None:
                    return
                self.millis_behind_latest = batch.millis_behind_latest
                if batch.records:
                    self.checkpointer._delivered_up_to(batch.records[-1].position)
                    yield batch.records
                    if consumer._events.enabled:
                        consumer._events.emit(
                            BatchProcessed(
                                shard_id=self.shard_id,
                                records=len(batch.records),
                                bytes=sum(len(r.data) for r in batch.records),
                                millis_behind_latest=batch.millis_behind_latest,
                            )
                        )
                if batch.shard_end:
                    if self._before_shard_end is not None:
                        await self._before_shard_end()
                    await consumer._coordinator.finish_shard(handle, batch.child_shards)
                    self.ended = True
                    logger.info("shard %s finished", self.shard_id)
                    return
        except LeaseLost:
            return
        finally:
            if self._interrupt is not None:
                self._interrupt.cancel()
                self._interrupt = None
            if fetcher is not None:
                await fetcher.aclose()
            if not self._driven:
                try:
                    await handle.finish_handoff()
                except KinesioError as exc:
                    logger.warning("hand-off of %s: %s", self.shard_id, exc)
                self.done.set()

    async def _next(self, fetcher: ShardFetcher) -> FetchedBatch | None:
        """The next batch, or None when the lease is lost or the consumer stops first."""
        if self._interrupt is None:
            # one waiter for the whole stream, not two new tasks per batch (idle shards ask
            # for a batch about twice a second)
            self._interrupt = asyncio.ensure_future(self._interrupted())
        get = asyncio.ensure_future(fetcher.next_batch())
        waiting: set[asyncio.Future[Any]] = {get, self._interrupt}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        get.cancel()
        return None

    async def _interrupted(self) -> None:
        waits = [
            asyncio.ensure_future(self._handle.lost.wait()),
            asyncio.ensure_future(self._handle.handoff.wait()),
            asyncio.ensure_future(self._consumer._stopping.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
