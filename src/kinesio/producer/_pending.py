"""What the producer holds per accepted record, and per shard: the plain objects the
accumulator queues and the sender sends, and a shard queue's bound (what its limiter sends
within half the record TTL)."""

from __future__ import annotations

import sys
from collections import deque
from typing import Protocol

from kinesio._config import ProducerSettings
from kinesio._models import ProducerRecord, PutResult
from kinesio.producer._limiter import ShardLimiter

# A shard's queue may hold what its limiter sends within this share of the record TTL.
TTL_SHARE = 0.5

# _Pending.generation once the record has left the backlog (see Accumulator.release): what
# tells a resolved record from an unresolved one when it has no future to ask.
RELEASED = -1


class ResultFuture(Protocol):
    """What a record's result is delivered to: an ``asyncio.Future`` for ``AsyncProducer``, a
    running ``concurrent.futures.Future`` for the blocking ``Producer`` (no hop between)."""

    def done(self) -> bool: ...
    def set_result(self, result: PutResult, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class _Pending:
    """A user record between put() and its result. A plain slotted object, and the only
    long-lived one per record besides its future: the backlog can hold 100 000 of them and
    the garbage collector walks every tracked object in it."""

    __slots__ = (
        "attempts",
        "created",
        "data",
        "explicit_hash_key",
        "future",
        "generation",
        "hash_key",
        "last_error",
        "partition_key",
        "size",
    )

    def __init__(
        self,
        data: bytes,
        partition_key: str,
        explicit_hash_key: int | None,
        hash_key: int,
        size: int,
        future: ResultFuture | None,
        created: float,
        generation: int = 0,
    ) -> None:
        self.data = data
        self.partition_key = partition_key
        self.explicit_hash_key = explicit_hash_key
        self.hash_key = hash_key
        self.size = size  # data + partition key bytes: what Kinesis counts
        self.future = future  # None: submitted without a result (AsyncProducer.submit)
        self.created = created
        self.generation = generation  # the flush generation it was put in
        self.attempts = 0
        self.last_error: str | None = None

    @property
    def record(self) -> ProducerRecord:
        return ProducerRecord(self.data, self.partition_key, self.explicit_hash_key)


class _ShardQueue:
    __slots__ = (
        "backoff_level",
        "in_flight",
        "limiter",
        "not_before",
        "queue",
        "queued_bytes",
        "room_bytes",
        "room_len",
        "shard_id",
    )

    def __init__(self, shard_id: str, limiter: ShardLimiter) -> None:
        self.shard_id = shard_id
        self.queue: deque[_Pending] = deque()
        self.queued_bytes = 0
        self.limiter = limiter
        self.in_flight = 0
        self.not_before = 0.0
        self.backoff_level = 0
        # What the queue may hold within its share of the TTL at the limiter's current rate
        # (see Accumulator._room); 0 until first computed.
        self.room_len = 0
        self.room_bytes = 0

    def over_ttl_bound(self, size: int, s: ProducerSettings) -> str | None:
        """None if a record of ``size`` bytes fits this shard's share of the backlog, else why
        not (see ``Accumulator._room``)."""
        n = len(self.queue)
        # The shard's queue drains at its limiter's rate; what it cannot send within its share
        # of the TTL would expire there, so refuse it now (the policy decides) instead. The
        # bound is kept on the queue for add()'s fast path until the rate changes.
        limiter, budget = self.limiter, s.record_ttl * TTL_SHARE
        rps, bps = limiter.records_per_second, limiter.bytes_per_second
        if s.aggregate:  # bytes bound both: aggregates are ~max_aggregate_size each
            self.room_len = sys.maxsize
            self.room_bytes = int(min(bps, rps * s.max_aggregate_size) * budget)
        else:
            self.room_len = int(rps * budget)
            self.room_bytes = int(bps * budget)
        if n < s.max_batch_records or (
            n < self.room_len and self.queued_bytes + size <= self.room_bytes
        ):
            return None
        kinesis_records = self.queued_bytes / s.max_aggregate_size if s.aggregate else n
        drain = max(kinesis_records / rps, (self.queued_bytes + size) / bps)
        return (
            f"shard {self.shard_id} has {n} records ({self.queued_bytes} bytes) queued, "
            f"{drain:.1f} s of sending at its rate limit; records beyond {budget:.1f} s (half the "
            f"{s.record_ttl} s record TTL) would expire before they are sent"
        )

    def rate_changed(self) -> None:
        """The limiter slowed down: recompute the bound at the next add()."""
        self.room_len = self.room_bytes = 0
