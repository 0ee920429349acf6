"""Plain data carried between kinesio's parts: frozen, slotted dataclasses."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

MAX_HASH_KEY = 2**128 - 1


@dataclass(frozen=True, slots=True)
class ProducerRecord:
    """One user record as given to the producer (or found inside a KPL aggregate).

    ``explicit_hash_key``, when set, decides the shard instead of the MD5 of the partition key
    (an int in ``[0, 2**128)``).
    """

    data: bytes
    partition_key: str
    explicit_hash_key: int | None = None


@dataclass(frozen=True, slots=True)
class PutResult:
    """Where a user record landed.

    ``sub_sequence_number`` is its index inside the KPL aggregate it was sent in (0 when it was
    sent on its own). ``attempts`` counts PutRecords calls it took part in.
    """

    shard_id: str
    sequence_number: str
    sub_sequence_number: int = 0
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class Shard:
    """A shard as ListShards describes it. Hash keys are ints in ``[0, 2**128)``, inclusive."""

    shard_id: str
    starting_hash_key: int
    ending_hash_key: int
    parent_shard_id: str | None = None
    adjacent_parent_shard_id: str | None = None
    starting_sequence_number: str = "0"
    ending_sequence_number: str | None = None

    @property
    def is_open(self) -> bool:
        return self.ending_sequence_number is None

    @property
    def parent_shard_ids(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent_shard_id, self.adjacent_parent_shard_id) if p)

    def contains(self, hash_key: int) -> bool:
        return self.starting_hash_key <= hash_key <= self.ending_hash_key


@dataclass(frozen=True, slots=True)
class ChildShard:
    """A child shard announced by GetRecords / SubscribeToShard at the end of a closed shard."""

    shard_id: str
    parent_shards: tuple[str, ...]
    starting_hash_key: int
    ending_hash_key: int


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """What DescribeStreamSummary says of a stream."""

    stream_name: str
    stream_arn: str
    status: str
    open_shard_count: int
    retention_period_hours: int = 24
    consumer_count: int = 0


@dataclass(frozen=True, slots=True)
class PutRecordsEntry:
    """One Kinesis record of a PutRecords request (an aggregate or a lone user record)."""

    data: bytes
    partition_key: str
    explicit_hash_key: str | None = None


@dataclass(frozen=True, slots=True)
class PutRecordsResultEntry:
    """PutRecords' answer for one entry: a shard and sequence number, or an error code."""

    shard_id: str | None = None
    sequence_number: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    """A record as GetRecords returns it (possibly a KPL aggregate)."""

    sequence_number: str
    data: bytes
    partition_key: str
    approximate_arrival_timestamp: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class GetRecordsOutput:
    """GetRecords' answer. ``next_shard_iterator`` is None once a closed shard is drained."""

    records: list[KinesisRecord]
    next_shard_iterator: str | None
    millis_behind_latest: int | None = None
    child_shards: list[ChildShard] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StreamConsumer:
    """A registered enhanced fan-out consumer."""

    consumer_name: str
    consumer_arn: str
    status: str


@dataclass(frozen=True, slots=True)
class SubscribeEvent:
    """One SubscribeToShardEvent of an enhanced fan-out subscription."""

    records: list[KinesisRecord]
    continuation_sequence_number: str | None
    millis_behind_latest: int | None = None
    child_shards: list[ChildShard] = field(default_factory=list)


# -- consumer side: checkpoints and leases (SPEC §2) ---------------------------------------

TRIM_HORIZON = "TRIM_HORIZON"
LATEST = "LATEST"
AT_TIMESTAMP = "AT_TIMESTAMP"
SHARD_END = "SHARD_END"

# Sentinel order: AT_TIMESTAMP < TRIM_HORIZON < LATEST < any sequence number < SHARD_END.
_SENTINEL_RANK = {AT_TIMESTAMP: 0, TRIM_HORIZON: 1, LATEST: 2, SHARD_END: 4}


@dataclass(frozen=True, slots=True)
class ExtendedSequenceNumber:
    """A checkpoint position: a sequence number (or a KCL sentinel) and a sub-sequence number.

    Ordered as the KCL orders them: AT_TIMESTAMP < TRIM_HORIZON < LATEST < any sequence number
    < SHARD_END; equal sequence numbers compare by sub-sequence number.
    """

    sequence_number: str
    sub_sequence_number: int = 0

    @property
    def is_sentinel(self) -> bool:
        return self.sequence_number in _SENTINEL_RANK

    def _key(self) -> tuple[int, int, int]:
        rank = _SENTINEL_RANK.get(self.sequence_number)
        if rank is not None:
            return (rank, 0, self.sub_sequence_number if rank == 3 else 0)
        return (3, int(self.sequence_number), self.sub_sequence_number)

    def __lt__(self, other: ExtendedSequenceNumber) -> bool:
        return self._key() < other._key()

    def __le__(self, other: ExtendedSequenceNumber) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: ExtendedSequenceNumber) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: ExtendedSequenceNumber) -> bool:
        return self._key() >= other._key()


@dataclass(frozen=True, slots=True)
class Lease:
    """One item of the KCL lease table (SPEC §2), as last read or written by this worker.

    ``extra`` keeps attributes kinesio does not interpret (KCL 3.x ``throughputKBps``,
    ``checkpointOwner``, ...) in DynamoDB's typed JSON form so that writes preserve them.
    """

    lease_key: str
    lease_owner: str | None = None
    lease_counter: int = 0
    checkpoint: ExtendedSequenceNumber = ExtendedSequenceNumber(TRIM_HORIZON)
    pending_checkpoint: ExtendedSequenceNumber | None = None
    owner_switches_since_checkpoint: int = 0
    parent_shard_ids: frozenset[str] = frozenset()
    child_shard_ids: frozenset[str] = frozenset()
    starting_hash_key: int | None = None
    ending_hash_key: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Record:
    """A user record as the consumer delivers it (deaggregated).

    ``sub_sequence_number`` is its index inside the KPL aggregate it came in (0 for a plain
    record); ``(sequence_number, sub_sequence_number)`` is its checkpoint position.
    ``explicit_hash_key`` is only known for records that came inside an aggregate.
    """

    data: bytes
    partition_key: str
    sequence_number: str
    sub_sequence_number: int = 0
    explicit_hash_key: int | None = None
    approximate_arrival_timestamp: dt.datetime | None = None
    shard_id: str = ""
    aggregated: bool = False

    @property
    def position(self) -> ExtendedSequenceNumber:
        return ExtendedSequenceNumber(self.sequence_number, self.sub_sequence_number)
