"""Streams, shards and sequence numbers: the state the in-memory Kinesis keeps."""

from __future__ import annotations

import asyncio
import bisect
import collections
import datetime as dt
import hashlib
import math
from dataclasses import dataclass, field

from kinesio._models import (
    KinesisRecord,
    PutRecordsEntry,
    Shard,
)
from kinesio.testing._kinesis._limits import (
    HASH_SPACE,
    READ_BYTES_PER_SECOND,
    READ_CALLS_PER_SECOND,
    WRITE_BYTES_PER_SECOND,
    WRITE_RECORDS_PER_SECOND,
)

# Sequence numbers in the service's current (version 2) layout: 186 bits, the version (2) in
# bits 184-187, the issuing shard's index in bits 4-35, a stream-wide counter above them. Every
# number is then 56 decimal digits (string and integer order agree, ``str(int(s)) == s``), and
# a checkpointer can tell which shard issued one, as the KCL does.
SEQ_VERSION_2 = 2 << 184
SEQ_COUNTER_SHIFT = 36


def sequence_number(counter: int, shard_id: str) -> int:
    index = int(shard_id.rsplit("-", 1)[1])
    return SEQ_VERSION_2 | (counter << SEQ_COUNTER_SHIFT) | (index << 4)


def sequence_ceiling(counter: int) -> int:
    """At least every sequence number issued up to ``counter``, below any issued after it."""
    return SEQ_VERSION_2 | (counter << SEQ_COUNTER_SHIFT) | ((1 << SEQ_COUNTER_SHIFT) - 1)


@dataclass(frozen=True, slots=True)
class ShardStats:
    """What happened on one shard so far (counts since the shard was created).

    ``throttled_records`` are PutRecords entries refused by the write limits,
    ``faulted_records`` entries failed by a per-record :class:`Fault`,
    ``throttled_get_records`` GetRecords calls refused by the read limits.
    Bytes are data plus partition key (UTF-8).
    """

    records_in: int = 0
    bytes_in: int = 0
    throttled_records: int = 0
    faulted_records: int = 0
    get_records_calls: int = 0
    throttled_get_records: int = 0
    records_out: int = 0
    bytes_out: int = 0


class Bucket:
    """A token bucket refilled continuously by the clock; capacity is one second's worth."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = rate
        self.tokens = rate
        self.last = now

    def refill(self, now: float) -> None:
        if now > self.last:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now


@dataclass(eq=False, slots=True)
class Stored:
    seq: int
    size: int
    at: float
    record: KinesisRecord


@dataclass(eq=False)
class ShardState:
    shard_id: str
    start_key: int
    end_key: int
    parent: str | None
    adjacent: str | None
    start_seq: int
    created: float
    end_seq: int | None = None
    closed_at: dt.datetime | None = None
    children: list[str] = field(default_factory=list)
    records: list[Stored] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    waiters: set[asyncio.Future[None]] = field(default_factory=set)
    stats: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self.write_records = Bucket(WRITE_RECORDS_PER_SECOND, self.created)
        self.write_bytes = Bucket(WRITE_BYTES_PER_SECOND, self.created)
        self.read_calls = Bucket(READ_CALLS_PER_SECOND, self.created)
        self.read_bytes = Bucket(READ_BYTES_PER_SECOND, self.created)

    @property
    def is_open(self) -> bool:
        return self.end_seq is None

    @property
    def parent_ids(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent, self.adjacent) if p)

    def first_after(self, seq: int) -> int:
        """Index of the first stored record whose sequence number is greater than ``seq``."""
        return bisect.bisect_right(self.seqs, seq)

    def notify(self) -> None:
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)

    def model(self) -> Shard:
        return Shard(
            shard_id=self.shard_id,
            starting_hash_key=self.start_key,
            ending_hash_key=self.end_key,
            parent_shard_id=self.parent,
            adjacent_parent_shard_id=self.adjacent,
            starting_sequence_number=str(self.start_seq),
            ending_sequence_number=None if self.end_seq is None else str(self.end_seq),
        )


@dataclass(eq=False)
class ConsumerState:
    name: str
    arn: str
    active_at: float


@dataclass(eq=False)
class StreamState:
    name: str
    arn: str
    incarnation: int
    active_at: float
    retention_hours: int
    max_record_size: int
    shards: dict[str, ShardState] = field(default_factory=dict)
    next_shard_index: int = 0
    updating_until: float = -math.inf
    consumers: dict[str, ConsumerState] = field(default_factory=dict)
    # Which shard issued each sequence number: real ones encode their shard, and the service
    # refuses a sequence number of another shard.
    seq_owner: dict[int, str] = field(default_factory=dict)
    open_starts: list[int] = field(default_factory=list)
    open_shards: list[ShardState] = field(default_factory=list)

    def reindex(self) -> None:
        self.open_shards = sorted(
            (s for s in self.shards.values() if s.is_open), key=lambda s: s.start_key
        )
        self.open_starts = [s.start_key for s in self.open_shards]

    def route(self, hash_key: int) -> ShardState:
        return self.open_shards[bisect.bisect_right(self.open_starts, hash_key) - 1]


@dataclass(eq=False)
class Subscription:
    consumer_arn: str
    stream_name: str
    incarnation: int
    shard_id: str
    after: int
    started: float
    bucket: Bucket
    active: bool = True
    superseded: bool = False


def even_starts(count: int) -> list[int]:
    """Starting hash keys of ``count`` shards splitting the key space as Kinesis does."""
    step = HASH_SPACE // count
    return [i * step for i in range(count)]


def record_size(data: bytes, partition_key: str) -> int:
    return len(data) + len(partition_key.encode("utf-8"))


def hash_key(entry: PutRecordsEntry) -> int:
    if entry.explicit_hash_key is not None:
        return int(entry.explicit_hash_key)
    digest = hashlib.md5(entry.partition_key.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest, "big")


def arrival(stored: Stored) -> dt.datetime:
    ts = stored.record.approximate_arrival_timestamp
    assert ts is not None
    return ts
