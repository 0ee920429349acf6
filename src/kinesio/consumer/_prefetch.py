"""What a fetcher hands its caller, and the bounded queue it is kept in until then."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from kinesio._models import ChildShard, Record

__all__ = ["FetchedBatch", "Prefetch"]


@dataclass(frozen=True, slots=True)
class FetchedBatch:
    """What :meth:`ShardFetcher.next_batch` returns.

    ``records``: deaggregated user records, in shard order, all after the start position
    (possibly empty: a heartbeat). ``millis_behind_latest``: how far behind the shard's newest
    record the last read was (milliseconds; None when not known yet). ``shard_end``: the shard
    is closed and every record in it was delivered (with this batch or before).
    ``child_shards``: the shard's children, when known at shard end.
    """

    records: list[Record]
    millis_behind_latest: int | None
    shard_end: bool = False
    child_shards: list[ChildShard] = field(default_factory=list)


class Prefetch:
    """Batches fetched ahead of next_batch(): one producer, one consumer.

    Bounded by user records and user data bytes; ``put`` never blocks (a response is queued
    whole), the producer waits for room before its next read instead."""

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.records = 0
        self.bytes = 0
        self._batches: deque[tuple[FetchedBatch, int]] = deque()
        self._room = asyncio.Event()
        self._room.set()
        self.changed = asyncio.Event()

    def has_room(self) -> bool:
        return self.records < self.max_records and self.bytes < self.max_bytes

    def room_records(self) -> int:
        return max(1, self.max_records - self.records)

    async def wait_for_room(self) -> None:
        while not self.has_room():
            self._room.clear()
            await self._room.wait()

    def put(self, batch: FetchedBatch) -> None:
        size = sum(len(r.data) for r in batch.records)
        self._batches.append((batch, size))
        self.records += len(batch.records)
        self.bytes += size
        self.changed.set()

    def pop(self) -> FetchedBatch | None:
        if not self._batches:
            return None
        batch, size = self._batches.popleft()
        self.records -= len(batch.records)
        self.bytes -= size
        if self.has_room():
            self._room.set()
        return batch

    def __len__(self) -> int:
        return len(self._batches)
