"""One ListShards for all the shards of a worker.

Each fetcher looks for its shard's end with ListShards (on backends that do not announce it),
so a worker with 1000 shards would list the whole stream 1000 times in a burst. This view
answers them all from one call: concurrent callers share the call in flight, and an answer is
reused for ``max_age`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from kinesio._kinesis import KinesisAPI, StartingPosition
from kinesio._models import (
    GetRecordsOutput,
    PutRecordsEntry,
    PutRecordsResultEntry,
    Shard,
    StreamConsumer,
    StreamSummary,
    SubscribeEvent,
)


class SharedShardList:
    """A :class:`KinesisAPI` that caches ``list_shards`` and forwards everything else."""

    def __init__(
        self,
        kinesis: KinesisAPI,
        *,
        max_age: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kinesis = kinesis
        self._max_age = max_age
        self._clock = clock
        self._cache: dict[str, tuple[float, list[Shard]]] = {}
        self._inflight: dict[str, asyncio.Future[list[Shard]]] = {}

    async def list_shards(self, stream_name: str) -> list[Shard]:
        cached = self._cache.get(stream_name)
        if cached is not None and self._clock() - cached[0] < self._max_age:
            return list(cached[1])
        pending = self._inflight.get(stream_name)
        if pending is not None:
            return list(await asyncio.shield(pending))
        future: asyncio.Future[list[Shard]] = asyncio.get_running_loop().create_future()
        self._inflight[stream_name] = future
        try:
            shards = await self._kinesis.list_shards(stream_name)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here; other waiters re-raise it
            raise
        finally:
            del self._inflight[stream_name]
        self._cache[stream_name] = (self._clock(), shards)
        future.set_result(shards)
        return list(shards)

    def invalidate(self) -> None:
        self._cache.clear()

    async def describe_stream_summary(self, stream_name: str) -> StreamSummary:
        return await self._kinesis.describe_stream_summary(stream_name)

    async def put_records(
        self, stream_name: str, entries: Sequence[PutRecordsEntry]
    ) -> list[PutRecordsResultEntry]:
        return await self._kinesis.put_records(stream_name, entries)

    async def get_shard_iterator(
        self, stream_name: str, shard_id: str, position: StartingPosition
    ) -> str:
        return await self._kinesis.get_shard_iterator(stream_name, shard_id, position)

    async def get_records(self, shard_iterator: str, *, limit: int = 10_000) -> GetRecordsOutput:
        return await self._kinesis.get_records(shard_iterator, limit=limit)

    async def register_stream_consumer(self, stream_arn: str, consumer_name: str) -> StreamConsumer:
        return await self._kinesis.register_stream_consumer(stream_arn, consumer_name)

    async def describe_stream_consumer(self, stream_arn: str, consumer_name: str) -> StreamConsumer:
        return await self._kinesis.describe_stream_consumer(stream_arn, consumer_name)

    def subscribe_to_shard(
        self, consumer_arn: str, shard_id: str, position: StartingPosition
    ) -> AbstractAsyncContextManager[AsyncIterator[SubscribeEvent]]:
        return self._kinesis.subscribe_to_shard(consumer_arn, shard_id, position)

    async def aclose(self) -> None:
        """The wrapped client belongs to its owner: nothing to close here."""
