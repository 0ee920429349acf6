"""An in-memory Kinesis Data Streams, faithful to the service's limits (SPEC §1).

:class:`InMemoryKinesis` implements :class:`kinesio._kinesis.KinesisAPI` and
:class:`kinesio._kinesis.KinesisAdminAPI` in plain Python, so producer and consumer tests run in
milliseconds and see what the real service would do: per-shard write and read throttling,
validation errors, expiring shard iterators, resharding with ``ChildShards`` at the end of a
closed shard, enhanced fan-out subscriptions, and injected faults. Errors are the kinesio errors
:class:`kinesio._aws.AioKinesis` raises for the same AWS error codes.

Time comes from ``clock`` (seconds, monotonic): pass a callable you advance by hand to test
throttling, iterator expiry and subscription renewal without sleeping::

    now = [0.0]
    kinesis = InMemoryKinesis(clock=lambda: now[0])
    await kinesis.create_stream("orders", 2)
    ...
    now[0] += 1.0  # one second later: the write buckets are full again
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import datetime as dt
import hashlib
import itertools
import json
import math
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from kinesio._aws import error_from_code
from kinesio._errors import (
    AWSError,
    ConfigurationError,
    EndpointConnectionError,
    ResourceInUseError,
    ValidationError,
)
from kinesio._kinesis import StartingPosition
from kinesio._models import (
    MAX_HASH_KEY,
    ChildShard,
    GetRecordsOutput,
    KinesisRecord,
    PutRecordsEntry,
    PutRecordsResultEntry,
    Shard,
    StreamConsumer,
    StreamSummary,
    SubscribeEvent,
)

__all__ = ["CONNECTION_ERROR", "Fault", "InMemoryKinesis", "ShardStats"]

MiB = 1024 * 1024
_HASH_SPACE = MAX_HASH_KEY + 1

#: Service limits (SPEC §1).
MAX_PUT_RECORDS = 500
MAX_PUT_RECORDS_BYTES = 10 * MiB
MAX_PARTITION_KEY_CHARS = 256
MAX_GET_RECORDS = 10_000
MAX_GET_RECORDS_BYTES = 10 * MiB
WRITE_RECORDS_PER_SECOND = 1000
WRITE_BYTES_PER_SECOND = 1 * MiB
READ_CALLS_PER_SECOND = 5
READ_BYTES_PER_SECOND = 2 * MiB
FANOUT_BYTES_PER_SECOND = 2 * MiB
MAX_CONSUMERS_PER_STREAM = 20
MAX_SHARDS_PER_STREAM = 10_000
#: A second SubscribeToShard for the same consumer and shard within this many seconds of the
#: first is refused; later, it takes the subscription over (the first one then fails).
SUBSCRIPTION_TAKEOVER_AFTER = 5.0

#: ``Fault.error_code`` that makes a call fail as if the endpoint could not be reached.
CONNECTION_ERROR = "ConnectionError"

# Sequence numbers in the service's current (version 2) layout: 186 bits, the version (2) in
# bits 184-187, the issuing shard's index in bits 4-35, a stream-wide counter above them. Every
# number is then 56 decimal digits (string and integer order agree, ``str(int(s)) == s``), and
# a checkpointer can tell which shard issued one, as the KCL does.
_SEQ_VERSION_2 = 2 << 184
_SEQ_COUNTER_SHIFT = 36


def _sequence_number(counter: int, shard_id: str) -> int:
    index = int(shard_id.rsplit("-", 1)[1])
    return _SEQ_VERSION_2 | (counter << _SEQ_COUNTER_SHIFT) | (index << 4)


def _sequence_ceiling(counter: int) -> int:
    """At least every sequence number issued up to ``counter``, below any issued after it."""
    return _SEQ_VERSION_2 | (counter << _SEQ_COUNTER_SHIFT) | ((1 << _SEQ_COUNTER_SHIFT) - 1)


_HASH_KEY_RE = re.compile(r"0|[1-9]\d{0,38}")
_SEQ_RE = re.compile(r"0|[1-9]\d{0,128}")
_NAME_RE = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
_ITERATOR_TYPES = frozenset(
    {"TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "AT_TIMESTAMP"}
)
_PER_RECORD_MESSAGES = {"InternalFailure": "Internal service failure."}


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure to inject into :class:`InMemoryKinesis` calls (see :meth:`InMemoryKinesis.inject`).

    ``operation`` is an AWS API name (``"PutRecords"``, ``"GetRecords"``, ``"GetShardIterator"``,
    ``"ListShards"``, ``"SubscribeToShard"``, ...) or ``"*"`` for every call. ``error_code`` is an
    AWS error code (``"InternalFailure"``, ``"ServiceUnavailable"``,
    ``"ProvisionedThroughputExceededException"``, ``"ExpiredIteratorException"``, ...): the call
    raises the kinesio error :class:`kinesio._aws.AioKinesis` raises for that code;
    :data:`CONNECTION_ERROR` (``"ConnectionError"``) raises
    :class:`kinesio.EndpointConnectionError`; ``None`` only adds latency.

    ``per_record`` (PutRecords only) fails individual entries with ``error_code`` instead of
    the whole call; each entry draws its own chance. ``probability`` is the chance (0..1) that a
    matching call (or entry) is hit, drawn from the fake's seeded random generator.
    ``count`` is how many times the fault fires before it is spent (``None``: forever).
    ``latency`` is the time in seconds (real time, ``asyncio.sleep``) added before the call
    answers when the fault fires. ``response_lost`` makes the call take effect first and then
    raise, as when a response is lost on the way back (the records are stored, the caller sees
    an error and may send them again).
    """

    operation: str
    error_code: str | None = None
    per_record: bool = False
    probability: float = 1.0
    count: int | None = None
    latency: float = 0.0
    response_lost: bool = False
    message: str = "injected fault"

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ConfigurationError(f"Fault.probability must be in [0, 1], not {self.probability}")
        if self.count is not None and self.count < 0:
            raise ConfigurationError(f"Fault.count must be >= 0 or None, not {self.count}")
        if self.latency < 0:
            raise ConfigurationError(f"Fault.latency must be >= 0 seconds, not {self.latency}")
        if self.per_record:
            if self.operation not in ("PutRecords", "*"):
                raise ConfigurationError("per_record faults only apply to PutRecords")
            if self.error_code is None:
                raise ConfigurationError("a per_record fault needs an error_code")
            if self.response_lost:
                raise ConfigurationError("per_record and response_lost exclude each other")
        if self.response_lost and self.error_code is None:
            raise ConfigurationError("a response_lost fault needs an error_code")

    def matches(self, operation: str) -> bool:
        """Whether this fault applies to calls of ``operation`` (an AWS API name)."""
        return self.operation in ("*", operation)


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


class _Bucket:
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
class _Stored:
    seq: int
    size: int
    at: float
    record: KinesisRecord


@dataclass(eq=False)
class _ShardState:
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
    records: list[_Stored] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    waiters: set[asyncio.Future[None]] = field(default_factory=set)
    stats: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self.write_records = _Bucket(WRITE_RECORDS_PER_SECOND, self.created)
        self.write_bytes = _Bucket(WRITE_BYTES_PER_SECOND, self.created)
        self.read_calls = _Bucket(READ_CALLS_PER_SECOND, self.created)
        self.read_bytes = _Bucket(READ_BYTES_PER_SECOND, self.created)

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
class _ConsumerState:
    name: str
    arn: str
    active_at: float


@dataclass(eq=False)
class _StreamState:
    name: str
    arn: str
    incarnation: int
    active_at: float
    retention_hours: int
    max_record_size: int
    shards: dict[str, _ShardState] = field(default_factory=dict)
    next_shard_index: int = 0
    updating_until: float = -math.inf
    consumers: dict[str, _ConsumerState] = field(default_factory=dict)
    # Which shard issued each sequence number: real ones encode their shard, and the service
    # refuses a sequence number of another shard.
    seq_owner: dict[int, str] = field(default_factory=dict)
    open_starts: list[int] = field(default_factory=list)
    open_shards: list[_ShardState] = field(default_factory=list)

    def reindex(self) -> None:
        self.open_shards = sorted(
            (s for s in self.shards.values() if s.is_open), key=lambda s: s.start_key
        )
        self.open_starts = [s.start_key for s in self.open_shards]

    def route(self, hash_key: int) -> _ShardState:
        return self.open_shards[bisect.bisect_right(self.open_starts, hash_key) - 1]


@dataclass(eq=False)
class _ArmedFault:
    fault: Fault
    remaining: int | None


@dataclass(eq=False)
class _Subscription:
    consumer_arn: str
    stream_name: str
    incarnation: int
    shard_id: str
    after: int
    started: float
    bucket: _Bucket
    active: bool = True
    superseded: bool = False


def _even_starts(count: int) -> list[int]:
    """Starting hash keys of ``count`` shards splitting the key space as Kinesis does."""
    step = _HASH_SPACE // count
    return [i * step for i in range(count)]


def _record_size(data: bytes, partition_key: str) -> int:
    return len(data) + len(partition_key.encode("utf-8"))


class InMemoryKinesis:
    """An asyncio fake of Kinesis Data Streams holding everything in memory.

    Implements every call of ``KinesisAPI`` and ``KinesisAdminAPI`` with the same signatures,
    results and kinesio errors as :class:`kinesio._aws.AioKinesis`, plus helpers for tests
    (:meth:`records`, :meth:`stats`, :attr:`calls`, :meth:`inject`, :meth:`trim`, ...).

    Arguments (times in seconds of ``clock``):

    - ``enforce_limits``: per-shard write limits (1000 records/s and 1 MiB/s, token buckets
      holding one second's worth), read limits (5 GetRecords calls/s and 2 MiB/s per shard),
      the fan-out rate (2 MiB/s per consumer and shard) and the UpdateShardCount scaling
      rules. Validation (sizes, counts, hash keys) is always on.
    - ``clock``: monotonic time source; arrival timestamps are wall time at construction plus
      the clock's progress.
    - ``region``, ``account_id``: used in ARNs and error messages.
    - ``iterator_ttl``: shard iterators older than this raise ``ExpiredIteratorError``.
    - ``creating_delay``: a new stream stays CREATING this long (data calls then raise
      ``ResourceNotFoundError``, ListShards and resharding ``ResourceInUseError``).
    - ``updating_delay``: a stream stays UPDATING this long after a reshard (resharding again
      meanwhile raises ``ResourceInUseError``; reads and writes go on).
    - ``consumer_creating_delay``: a registered fan-out consumer stays CREATING this long
      (SubscribeToShard raises ``ResourceInUseError`` meanwhile).
    - ``child_shards_at_end``: ``False`` imitates moto: a drained closed shard keeps returning an
      iterator and no records, and never announces its children.
    - ``subscription_ttl``: how long a SubscribeToShard subscription lasts before it ends.
    - ``heartbeat_interval``: a subscription sends an empty event after this long without
      records (``None``: never).
    - ``poll_interval``: real seconds a waiting subscription sleeps between looks at the clock
      (new records wake it at once).
    - ``seed``: seed of the random generator deciding :class:`Fault` probabilities.
    """

    def __init__(
        self,
        *,
        enforce_limits: bool = True,
        clock: Callable[[], float] = time.monotonic,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        iterator_ttl: float = 300.0,
        creating_delay: float = 0.0,
        updating_delay: float = 0.0,
        consumer_creating_delay: float = 0.0,
        child_shards_at_end: bool = True,
        subscription_ttl: float = 300.0,
        heartbeat_interval: float | None = 5.0,
        poll_interval: float = 0.02,
        seed: int = 0,
    ) -> None:
        if iterator_ttl <= 0 or subscription_ttl <= 0 or poll_interval <= 0:
            raise ConfigurationError("iterator_ttl, subscription_ttl, poll_interval must be > 0")
        if min(creating_delay, updating_delay, consumer_creating_delay) < 0:
            raise ConfigurationError("delays must be >= 0 seconds")
        self.enforce_limits = enforce_limits
        self.region = region
        self.account_id = account_id
        self.iterator_ttl = iterator_ttl
        self.creating_delay = creating_delay
        self.updating_delay = updating_delay
        self.consumer_creating_delay = consumer_creating_delay
        self.child_shards_at_end = child_shards_at_end
        self.subscription_ttl = subscription_ttl
        self.heartbeat_interval = heartbeat_interval
        self.poll_interval = poll_interval
        #: API calls made so far, by AWS operation name (``"PutRecords"``, ...).
        self.calls: collections.Counter[str] = collections.Counter()
        self._clock = clock
        self._wall_offset = time.time() - clock()
        self._rng = random.Random(seed)
        self._streams: dict[str, _StreamState] = {}
        self._faults: list[_ArmedFault] = []
        self._subscriptions: dict[tuple[str, str], _Subscription] = {}
        self._seq = 0
        self._incarnations = 0

    # -- test helpers ----------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        """Add a fault; faults are checked in the order they were injected."""
        self._faults.append(_ArmedFault(fault, fault.count))

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._faults.clear()

    def now(self) -> dt.datetime:
        """The current wall time as this fake sees it (aware, UTC, millisecond precision)."""
        return self._wall(self._clock())

    def records(self, stream_name: str, shard_id: str) -> list[KinesisRecord]:
        """Every record the shard still holds (not trimmed), oldest first. Not an API call.

        Raises ``ResourceNotFoundError`` for an unknown stream or shard.
        """
        shard = self._shard(self._stream(stream_name, "Records"), shard_id, "Records")
        return [r.record for r in shard.records]

    def stats(self, stream_name: str) -> dict[str, ShardStats]:
        """Per shard id, counts of records written, throttled, faulted and read.

        Raises ``ResourceNotFoundError`` for an unknown stream.
        """
        stream = self._stream(stream_name, "Stats")
        return {sid: ShardStats(**s.stats) for sid, s in stream.shards.items()}

    def trim(self, stream_name: str, older_than: dt.datetime | None = None) -> int:
        """Drop records that arrived before ``older_than``, as retention would.

        ``older_than`` defaults to now minus the stream's retention period (24 hours); a naive
        datetime is taken as UTC. Closed shards that closed before ``older_than`` and hold no
        record any more disappear from ListShards. TRIM_HORIZON then starts at the oldest
        record left. Returns how many records were dropped; raises ``ResourceNotFoundError``
        for an unknown stream.
        """
        stream = self._stream(stream_name, "Trim")
        if older_than is None:
            older_than = self.now() - dt.timedelta(hours=stream.retention_hours)
        elif older_than.tzinfo is None:
            older_than = older_than.replace(tzinfo=dt.UTC)
        dropped = 0
        for shard in list(stream.shards.values()):
            keep = 0
            while keep < len(shard.records) and (_arrival(shard.records[keep]) < older_than):
                keep += 1
            if keep:
                del shard.records[:keep]
                del shard.seqs[:keep]
                dropped += keep
            if shard.closed_at is not None and shard.closed_at < older_than and not shard.records:
                del stream.shards[shard.shard_id]
                shard.notify()
        return dropped

    async def update_shard_count(self, stream_name: str, target_shard_count: int) -> None:
        """UpdateShardCount with UNIFORM_SCALING: end with ``target_shard_count`` open shards.

        Done as SplitShard and MergeShards steps, so every new shard has proper parents (some
        intermediate shards are created and closed at once). The final shards split the hash
        key space evenly, like CreateStream. With ``enforce_limits`` the target may not exceed
        double, or fall below half, the open shard count (``InvalidArgumentError``). Raises
        ``ResourceNotFoundError`` for an unknown stream, ``ResourceInUseError`` when it is not
        ACTIVE.
        """
        op = "UpdateShardCount"
        lost = await self._enter(op)
        if target_shard_count < 1:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid value for parameter "
                f"TargetShardCount, value: {target_shard_count}, valid min value: 1"
            )
        stream = self._active_stream(stream_name, op)
        now = self._clock()
        current = len(stream.open_shards)
        if target_shard_count > MAX_SHARDS_PER_STREAM:
            raise self._err("InvalidArgumentException", "Cannot scale beyond 10000 shards", op)
        if self.enforce_limits and target_shard_count > 2 * current:
            raise self._err(
                "InvalidArgumentException",
                f"UpdateShardCount cannot scale up over double your current open shard count. "
                f"Current open shard count: {current} Target shard count: {target_shard_count}",
                op,
            )
        if self.enforce_limits and 2 * target_shard_count < current:
            raise self._err(
                "InvalidArgumentException",
                f"UpdateShardCount cannot scale down below half your current open shard count. "
                f"Current open shard count: {current} Target shard count: {target_shard_count}",
                op,
            )
        starts = _even_starts(target_shard_count)
        for shard in list(stream.open_shards):
            current_shard = shard
            for key in starts:
                if current_shard.start_key < key <= current_shard.end_key:
                    current_shard = self._split(stream, current_shard, key, now)[1]
        stream.reindex()
        bounds = [*starts, _HASH_SPACE]
        for lo, hi in itertools.pairwise(bounds):
            members = [s for s in stream.open_shards if lo <= s.start_key < hi]
            merged = members[0]
            for other in members[1:]:
                merged = self._merge(stream, merged, other, now)
        stream.reindex()
        stream.updating_until = now + self.updating_delay
        self._raise_lost(lost, op)

    async def deregister_stream_consumer(self, stream_arn: str, consumer_name: str) -> None:
        """DeregisterStreamConsumer: remove a fan-out consumer; its subscriptions then fail
        with ``ResourceNotFoundError``. Raises ``ResourceNotFoundError`` if it does not exist.
        """
        op = "DeregisterStreamConsumer"
        lost = await self._enter(op)
        stream = self._stream_by_arn(stream_arn, op)
        if stream.consumers.pop(consumer_name, None) is None:
            raise self._err(
                "ResourceNotFoundException",
                f"Consumer {consumer_name} under {stream_arn} not found",
                op,
            )
        self._wake(stream)
        self._raise_lost(lost, op)

    # -- KinesisAPI ------------------------------------------------------------------------

    async def describe_stream_summary(self, stream_name: str) -> StreamSummary:
        """DescribeStreamSummary. Raises ``ResourceNotFoundError`` for an unknown stream."""
        op = "DescribeStreamSummary"
        lost = await self._enter(op)
        stream = self._stream(stream_name, op)
        summary = StreamSummary(
            stream_name=stream.name,
            stream_arn=stream.arn,
            status=self._status(stream),
            open_shard_count=len(stream.open_shards),
            retention_period_hours=stream.retention_hours,
            consumer_count=len(stream.consumers),
        )
        self._raise_lost(lost, op)
        return summary

    async def list_shards(self, stream_name: str) -> list[Shard]:
        """Every shard (open, and closed ones not yet trimmed), in shard id order.

        Raises ``ResourceNotFoundError`` for an unknown stream, ``ResourceInUseError`` while it
        is CREATING.
        """
        op = "ListShards"
        lost = await self._enter(op)
        stream = self._stream(stream_name, op)
        if self._status(stream) == "CREATING":
            raise self._err("ResourceInUseException", self._state_message(stream), op)
        shards = [s.model() for s in stream.shards.values()]
        self._raise_lost(lost, op)
        return shards

    async def put_records(
        self, stream_name: str, entries: Sequence[PutRecordsEntry]
    ) -> list[PutRecordsResultEntry]:
        """PutRecords: store each entry on the open shard owning its hash key.

        The result list is parallel to ``entries``. Entries over a shard's write limits (with
        ``enforce_limits``) or hit by a per-record fault get an ``error_code`` and are not
        stored; the others are. The whole call fails with ``ValidationError`` (no entries,
        empty partition key), ``InvalidArgumentError`` (more than 500 entries, a partition key
        over 256 characters, a malformed or too large ExplicitHashKey, an entry over the
        stream's maximum record size or a request over 10 MiB; sizes count data plus
        partition key) or ``ResourceNotFoundError`` (unknown or still CREATING stream).
        """
        op = "PutRecords"
        lost = await self._enter(op)
        if not entries:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid length for parameter Records, "
                "value: 0, valid min length: 1"
            )
        for i, e in enumerate(entries):
            if not e.partition_key:
                raise ValidationError(
                    f"{op}: Parameter validation failed:\nInvalid length for parameter "
                    f"Records[{i}].PartitionKey, value: 0, valid min length: 1"
                )
        if len(entries) > MAX_PUT_RECORDS:
            raise self._err(
                "ValidationException",
                f"1 validation error detected: Value '{len(entries)} records' at 'records' "
                f"failed to satisfy constraint: Member must have length less than or equal "
                f"to {MAX_PUT_RECORDS}",
                op,
            )
        for i, e in enumerate(entries):
            if len(e.partition_key) > MAX_PARTITION_KEY_CHARS:
                raise self._err(
                    "ValidationException",
                    f"1 validation error detected: Value at 'records.{i + 1}.member."
                    "partitionKey' failed to satisfy constraint: Member must have length less "
                    f"than or equal to {MAX_PARTITION_KEY_CHARS}",
                    op,
                )
            if e.explicit_hash_key is not None and not _HASH_KEY_RE.fullmatch(e.explicit_hash_key):
                raise self._err(
                    "ValidationException",
                    f"1 validation error detected: Value '{e.explicit_hash_key}' at "
                    f"'records.{i + 1}.member.explicitHashKey' failed to satisfy constraint: "
                    "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
                    op,
                )
        stream = self._data_stream(stream_name, op)
        sizes = [_record_size(e.data, e.partition_key) for e in entries]
        for i, (e, size) in enumerate(zip(entries, sizes, strict=True)):
            if size > stream.max_record_size:
                raise self._err(
                    "InvalidArgumentException",
                    f"Record {i} of {size} bytes (data and partition key) exceeds the maximum "
                    f"record size of {stream.max_record_size} bytes",
                    op,
                )
            if e.explicit_hash_key is not None and int(e.explicit_hash_key) > MAX_HASH_KEY:
                raise self._err(
                    "InvalidArgumentException",
                    f"Invalid ExplicitHashKey. ExplicitHashKey must be in the range: "
                    f"[0, {MAX_HASH_KEY}]. Specified value was {e.explicit_hash_key}",
                    op,
                )
        if sum(sizes) > MAX_PUT_RECORDS_BYTES:
            raise self._err(
                "InvalidArgumentException",
                f"Records size {sum(sizes)} bytes exceeds the 10 MiB limit of a PutRecords call",
                op,
            )

        now = self._clock()
        arrival = self._wall(now)
        results: list[PutRecordsResultEntry] = []
        fault_latency = 0.0
        touched: set[_ShardState] = set()
        for e, size in zip(entries, sizes, strict=True):
            shard = stream.route(_hash_key(e))
            fault = self._per_record_fault(op)
            if fault is not None:
                fault_latency = max(fault_latency, fault.latency)
                shard.stats["faulted_records"] += 1
                code = fault.error_code or "InternalFailure"
                results.append(
                    PutRecordsResultEntry(
                        error_code=code,
                        error_message=_PER_RECORD_MESSAGES.get(code, fault.message),
                    )
                )
                continue
            if self.enforce_limits:
                shard.write_records.refill(now)
                shard.write_bytes.refill(now)
                if shard.write_records.tokens < 1 or shard.write_bytes.tokens < size:
                    shard.stats["throttled_records"] += 1
                    results.append(
                        PutRecordsResultEntry(
                            error_code="ProvisionedThroughputExceededException",
                            error_message=self._rate_message(stream, shard),
                        )
                    )
                    continue
                shard.write_records.tokens -= 1
                shard.write_bytes.tokens -= size
            seq = self._next_seq(stream, shard.shard_id)
            record = KinesisRecord(
                sequence_number=str(seq),
                data=bytes(e.data),
                partition_key=e.partition_key,
                approximate_arrival_timestamp=arrival,
            )
            shard.records.append(_Stored(seq, size, now, record))
            shard.seqs.append(seq)
            shard.stats["records_in"] += 1
            shard.stats["bytes_in"] += size
            touched.add(shard)
            results.append(PutRecordsResultEntry(shard_id=shard.shard_id, sequence_number=str(seq)))
        for shard in touched:
            shard.notify()
        if fault_latency:
            await asyncio.sleep(fault_latency)
        self._raise_lost(lost, op)
        return results

    async def get_shard_iterator(
        self, stream_name: str, shard_id: str, position: StartingPosition
    ) -> str:
        """GetShardIterator: an opaque iterator, valid for ``iterator_ttl`` seconds.

        Raises ``ResourceNotFoundError`` (unknown or CREATING stream, unknown or trimmed
        shard) and ``InvalidArgumentError`` (missing sequence number or timestamp, a sequence
        number this shard did not issue, an unknown iterator type).
        """
        op = "GetShardIterator"
        lost = await self._enter(op)
        stream = self._data_stream(stream_name, op)
        shard = self._shard(stream, shard_id, op)
        after = self._resolve(stream, shard, position, op)
        iterator = self._encode_iterator(stream, shard, after, self._clock())
        self._raise_lost(lost, op)
        return iterator

    async def get_records(self, shard_iterator: str, *, limit: int = 10_000) -> GetRecordsOutput:
        """GetRecords: up to ``limit`` records (at most 10 000 and 10 MiB) after the iterator.

        ``next_shard_iterator`` is None, and ``child_shards`` lists the children, once a closed
        shard has returned its last record (unless ``child_shards_at_end`` is off).
        ``millis_behind_latest`` is 0 when the response reaches the newest record. Raises
        ``ExpiredIteratorError`` for an iterator older than ``iterator_ttl``,
        ``ThrottlingError`` over 5 calls/s or 2 MiB/s on the shard (with ``enforce_limits``;
        a big response borrows ahead, so the calls after a 10 MiB one are throttled for about
        4 s), ``InvalidArgumentError`` for a malformed iterator or ``limit`` over 10 000,
        ``ValidationError`` for ``limit`` below 1, ``ResourceNotFoundError`` when the stream
        or shard is gone.
        """
        op = "GetRecords"
        lost = await self._enter(op)
        if not shard_iterator:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid length for parameter "
                "ShardIterator, value: 0, valid min length: 1"
            )
        if limit < 1:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid value for parameter Limit, "
                f"value: {limit}, valid min value: 1"
            )
        if limit > MAX_GET_RECORDS:
            raise self._err(
                "InvalidArgumentException",
                f"Limit {limit} is greater than the maximum of {MAX_GET_RECORDS}",
                op,
            )
        stream, shard, after, issued = self._decode_iterator(shard_iterator, op)
        now = self._clock()
        if now - issued > self.iterator_ttl:
            raise self._err(
                "ExpiredIteratorException",
                f"Iterator expired. The iterator was created at time {self._wall(issued)} "
                f"while right now it is {self._wall(now)} which is further in the future than "
                f"the tolerated delay of {round(self.iterator_ttl * 1000)} milliseconds.",
                op,
            )
        shard.stats["get_records_calls"] += 1
        if self.enforce_limits:
            shard.read_calls.refill(now)
            shard.read_bytes.refill(now)
            if shard.read_calls.tokens < 1 or shard.read_bytes.tokens <= 0:
                shard.stats["throttled_get_records"] += 1
                raise self._err(
                    "ProvisionedThroughputExceededException", self._rate_message(stream, shard), op
                )
            shard.read_calls.tokens -= 1
        batch, after, size = self._take(shard, after, limit, MAX_GET_RECORDS_BYTES)
        if self.enforce_limits:
            shard.read_bytes.tokens -= size
        shard.stats["records_out"] += len(batch)
        shard.stats["bytes_out"] += size
        at_end = self._at_end(shard, after)
        output = GetRecordsOutput(
            records=batch,
            next_shard_iterator=None
            if at_end
            else self._encode_iterator(stream, shard, after, now),
            millis_behind_latest=self._millis_behind(shard, after, now),
            child_shards=self._child_shards(stream, shard) if at_end else [],
        )
        self._raise_lost(lost, op)
        return output

    async def register_stream_consumer(self, stream_arn: str, consumer_name: str) -> StreamConsumer:
        """RegisterStreamConsumer, or the consumer already registered under that name.

        The consumer is ACTIVE at once (after ``consumer_creating_delay``). Raises
        ``ResourceNotFoundError`` for an unknown stream ARN, ``ResourceInUseError`` while the
        stream is CREATING and ``ThrottlingError`` (LimitExceededException) beyond 20
        consumers per stream.
        """
        op = "RegisterStreamConsumer"
        lost = await self._enter(op)
        if not consumer_name:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid length for parameter "
                "ConsumerName, value: 0, valid min length: 1"
            )
        if not _NAME_RE.fullmatch(consumer_name):
            raise self._err(
                "ValidationException",
                f"1 validation error detected: Value '{consumer_name}' at 'consumerName' "
                "failed to satisfy constraint: Member must satisfy regular expression "
                "pattern: [a-zA-Z0-9_.-]+",
                op,
            )
        stream = self._stream_by_arn(stream_arn, op)
        if self._status(stream) == "CREATING":
            raise self._err("ResourceInUseException", self._state_message(stream), op)
        if consumer_name in stream.consumers:
            # The service answers ResourceInUseException; AioKinesis then describes it.
            existing = await self.describe_stream_consumer(stream_arn, consumer_name)
            self._raise_lost(lost, op)
            return existing
        if len(stream.consumers) >= MAX_CONSUMERS_PER_STREAM:
            raise self._err(
                "LimitExceededException",
                f"Stream {stream.arn} already has {MAX_CONSUMERS_PER_STREAM} registered consumers",
                op,
            )
        now = self._clock()
        epoch = int(self._wall(now).timestamp())
        consumer = _ConsumerState(
            name=consumer_name,
            arn=f"{stream.arn}/consumer/{consumer_name}:{epoch}",
            active_at=now + self.consumer_creating_delay,
        )
        stream.consumers[consumer_name] = consumer
        result = StreamConsumer(consumer.name, consumer.arn, self._consumer_status(consumer))
        self._raise_lost(lost, op)
        return result

    async def describe_stream_consumer(self, stream_arn: str, consumer_name: str) -> StreamConsumer:
        """DescribeStreamConsumer. Raises ``ResourceNotFoundError`` for an unknown stream or
        consumer.
        """
        op = "DescribeStreamConsumer"
        lost = await self._enter(op)
        stream = self._stream_by_arn(stream_arn, op)
        consumer = stream.consumers.get(consumer_name)
        if consumer is None:
            raise self._err(
                "ResourceNotFoundException",
                f"Consumer {consumer_name} under stream {stream.arn} not found",
                op,
            )
        result = StreamConsumer(consumer.name, consumer.arn, self._consumer_status(consumer))
        self._raise_lost(lost, op)
        return result

    def subscribe_to_shard(
        self, consumer_arn: str, shard_id: str, position: StartingPosition
    ) -> AbstractAsyncContextManager[AsyncIterator[SubscribeEvent]]:
        """SubscribeToShard: an async context manager yielding the subscription's events.

        Events carry the records from ``position`` on, then new ones as they arrive (at most
        10 000 records and 2 MiB per event; with ``enforce_limits`` at most 2 MiB/s), each
        with a ``continuation_sequence_number`` to resubscribe with AFTER_SEQUENCE_NUMBER.
        The first event comes at once (possibly empty); then an empty one every
        ``heartbeat_interval`` without records. The iterator ends after ``subscription_ttl``
        seconds, or after the event with ``child_shards`` (and no continuation) at the end of
        a closed shard.

        Entering raises ``ResourceNotFoundError`` (unknown consumer or shard),
        ``ResourceInUseError`` (consumer still CREATING, or another subscription of the same
        consumer and shard started less than 5 s ago; a later one takes over and the earlier
        one's iterator raises ``ResourceInUseError``) and ``InvalidArgumentError`` (bad
        position). Iterating raises ``ResourceNotFoundError`` when the stream, shard or
        consumer goes away.
        """
        return self._subscribe(consumer_arn, shard_id, position)

    @asynccontextmanager
    async def _subscribe(
        self, consumer_arn: str, shard_id: str, position: StartingPosition
    ) -> AsyncIterator[AsyncIterator[SubscribeEvent]]:
        op = "SubscribeToShard"
        lost = await self._enter(op)
        stream, consumer = self._consumer_by_arn(consumer_arn, op)
        if self._consumer_status(consumer) != "ACTIVE":
            raise self._err("ResourceInUseException", f"Consumer {consumer.arn} is not ACTIVE", op)
        shard = self._shard(stream, shard_id, op)
        after = self._resolve(stream, shard, position, op)
        now = self._clock()
        key = (consumer_arn, shard_id)
        previous = self._subscriptions.get(key)
        if previous is not None and previous.active:
            if now - previous.started < SUBSCRIPTION_TAKEOVER_AFTER:
                raise self._err(
                    "ResourceInUseException",
                    f"Another active subscription exists for consumer {consumer_arn} "
                    f"and shard {shard_id}",
                    op,
                )
            previous.superseded = True
            previous.active = False
            shard.notify()
        sub = _Subscription(
            consumer_arn=consumer_arn,
            stream_name=stream.name,
            incarnation=stream.incarnation,
            shard_id=shard_id,
            after=after,
            started=now,
            bucket=_Bucket(FANOUT_BYTES_PER_SECOND, now),
        )
        self._subscriptions[key] = sub
        self._raise_lost(lost, op)
        events = self._events(sub)
        try:
            yield events
        finally:
            sub.active = False
            if self._subscriptions.get(key) is sub:
                del self._subscriptions[key]
            await events.aclose()

    async def _events(self, sub: _Subscription) -> AsyncGenerator[SubscribeEvent, None]:
        op = "SubscribeToShard"
        first = True
        last_sent = sub.started
        try:
            while True:
                if sub.superseded:
                    raise self._err(
                        "ResourceInUseException",
                        f"Subscription to {sub.shard_id} was taken over by a newer one",
                        op,
                    )
                stream, shard = self._subscription_target(sub, op)
                now = self._clock()
                if now - sub.started >= self.subscription_ttl:
                    return
                paced = False
                if self.enforce_limits:
                    sub.bucket.refill(now)
                    paced = sub.bucket.tokens <= 0
                batch: list[KinesisRecord] = []
                if not paced:
                    batch, sub.after, size = self._take(
                        shard, sub.after, MAX_GET_RECORDS, FANOUT_BYTES_PER_SECOND
                    )
                    if self.enforce_limits:
                        sub.bucket.tokens -= size
                at_end = not paced and self._at_end(shard, sub.after)
                heartbeat = (
                    self.heartbeat_interval is not None
                    and now - last_sent >= self.heartbeat_interval
                )
                if batch or at_end or first or heartbeat:
                    first = False
                    last_sent = now
                    yield SubscribeEvent(
                        records=batch,
                        continuation_sequence_number=(
                            None if at_end else self._continuation(shard, sub.after)
                        ),
                        millis_behind_latest=self._millis_behind(shard, sub.after, now),
                        child_shards=self._child_shards(stream, shard) if at_end else [],
                    )
                    if at_end:
                        return
                    continue
                await self._wait(shard)
        finally:
            sub.active = False

    async def aclose(self) -> None:
        """Nothing to release: streams and records stay for inspection."""

    # -- KinesisAdminAPI -------------------------------------------------------------------

    async def create_stream(
        self,
        stream_name: str,
        shard_count: int,
        *,
        max_record_size_kib: int = 1024,
        retention_period_hours: int = 24,
    ) -> None:
        """CreateStream with ``shard_count`` shards splitting the hash key space evenly.

        The stream is ACTIVE at once (after ``creating_delay``). ``max_record_size_kib``
        (1024..10240) caps data plus partition key of one record. Raises
        ``ResourceInUseError`` if the name is taken, ``ValidationError`` for an empty name or
        ``shard_count`` below 1, ``InvalidArgumentError`` for a malformed name or more than
        10 000 shards.
        """
        op = "CreateStream"
        lost = await self._enter(op)
        if not stream_name:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid length for parameter "
                "StreamName, value: 0, valid min length: 1"
            )
        if shard_count < 1:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid value for parameter ShardCount, "
                f"value: {shard_count}, valid min value: 1"
            )
        if max_record_size_kib < 1024:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid value for parameter "
                f"MaxRecordSizeInKiB, value: {max_record_size_kib}, valid min value: 1024"
            )
        if not _NAME_RE.fullmatch(stream_name):
            raise self._err(
                "ValidationException",
                f"1 validation error detected: Value '{stream_name}' at 'streamName' failed "
                "to satisfy constraint: Member must satisfy regular expression pattern: "
                "[a-zA-Z0-9_.-]+ and have length less than or equal to 128",
                op,
            )
        if max_record_size_kib > 10240:
            raise self._err(
                "InvalidArgumentException", "MaxRecordSizeInKiB must be at most 10240", op
            )
        if shard_count > MAX_SHARDS_PER_STREAM:
            raise self._err("InvalidArgumentException", "ShardCount must be at most 10000", op)
        if stream_name in self._streams:
            raise self._err(
                "ResourceInUseException",
                f"Stream {stream_name} under account {self.account_id} already exists.",
                op,
            )
        now = self._clock()
        self._incarnations += 1
        stream = _StreamState(
            name=stream_name,
            arn=f"arn:aws:kinesis:{self.region}:{self.account_id}:stream/{stream_name}",
            incarnation=self._incarnations,
            active_at=now + self.creating_delay,
            retention_hours=retention_period_hours,
            max_record_size=max_record_size_kib * 1024,
        )
        starts = _even_starts(shard_count)
        ends = [s - 1 for s in starts[1:]] + [MAX_HASH_KEY]
        for start, end in zip(starts, ends, strict=True):
            self._new_shard(stream, start, end, None, None, now)
        stream.reindex()
        self._streams[stream_name] = stream
        self._raise_lost(lost, op)

    async def delete_stream(self, stream_name: str) -> None:
        """DeleteStream, with its consumers; open subscriptions then fail with
        ``ResourceNotFoundError``. Raises ``ResourceNotFoundError`` for an unknown stream.
        """
        op = "DeleteStream"
        lost = await self._enter(op)
        stream = self._stream(stream_name, op)
        del self._streams[stream_name]
        self._wake(stream)
        self._raise_lost(lost, op)

    async def wait_for_active(
        self,
        stream_name: str,
        *,
        timeout: float = 60.0,
    ) -> StreamSummary:
        """Poll DescribeStreamSummary until the stream is ACTIVE.

        Gives up with ``ResourceInUseError`` after ``timeout`` seconds of either the fake's
        clock or real time, whichever passes first (so a clock nobody advances cannot hang a
        test). Raises ``ResourceNotFoundError`` for an unknown stream.
        """
        deadline = self._clock() + timeout
        real_deadline = time.monotonic() + timeout
        while True:
            summary = await self.describe_stream_summary(stream_name)
            if summary.status == "ACTIVE":
                return summary
            if self._clock() > deadline or time.monotonic() > real_deadline:
                raise ResourceInUseError(
                    f"stream {stream_name!r} still {summary.status} after {timeout:.0f} s",
                    code="ResourceInUseException",
                    operation="DescribeStreamSummary",
                )
            await asyncio.sleep(self.poll_interval)

    async def split_shard(
        self, stream_name: str, shard_id: str, new_starting_hash_key: int
    ) -> None:
        """SplitShard: close an open shard and open two children splitting its hash range at
        ``new_starting_hash_key`` (which must lie in ``(start, end]`` of the parent).

        Raises ``ResourceNotFoundError`` (unknown stream or shard), ``ResourceInUseError``
        (stream not ACTIVE) and ``InvalidArgumentError`` (closed shard, key out of range).
        """
        op = "SplitShard"
        lost = await self._enter(op)
        stream = self._active_stream(stream_name, op)
        shard = self._shard(stream, shard_id, op)
        if not shard.is_open:
            raise self._err("InvalidArgumentException", f"Shard {shard_id} is not open", op)
        if not shard.start_key < new_starting_hash_key <= shard.end_key:
            raise self._err(
                "InvalidArgumentException",
                f"NewStartingHashKey {new_starting_hash_key} must be greater than the "
                f"starting hash key {shard.start_key} of {shard_id} and at most its ending "
                f"hash key {shard.end_key}",
                op,
            )
        now = self._clock()
        self._split(stream, shard, new_starting_hash_key, now)
        stream.reindex()
        stream.updating_until = now + self.updating_delay
        self._raise_lost(lost, op)

    async def merge_shards(self, stream_name: str, shard_id: str, adjacent_shard_id: str) -> None:
        """MergeShards: close two open shards with adjacent hash ranges and open one child
        (``parent_shard_id`` = ``shard_id``, ``adjacent_parent_shard_id`` =
        ``adjacent_shard_id``) covering both.

        Raises ``ResourceNotFoundError`` (unknown stream or shard), ``ResourceInUseError``
        (stream not ACTIVE) and ``InvalidArgumentError`` (closed shards, not adjacent).
        """
        op = "MergeShards"
        lost = await self._enter(op)
        stream = self._active_stream(stream_name, op)
        first = self._shard(stream, shard_id, op)
        second = self._shard(stream, adjacent_shard_id, op)
        for s in (first, second):
            if not s.is_open:
                raise self._err("InvalidArgumentException", f"Shard {s.shard_id} is not open", op)
        if first is second or not (
            first.end_key + 1 == second.start_key or second.end_key + 1 == first.start_key
        ):
            raise self._err(
                "InvalidArgumentException",
                f"Shards {shard_id} and {adjacent_shard_id} are not adjacent",
                op,
            )
        now = self._clock()
        self._merge(stream, first, second, now)
        stream.reindex()
        stream.updating_until = now + self.updating_delay
        self._raise_lost(lost, op)

    # -- internals -------------------------------------------------------------------------

    def _err(self, code: str, message: str, operation: str) -> AWSError:
        if code == CONNECTION_ERROR:
            return EndpointConnectionError(
                f"{operation}: could not reach the endpoint: {message}",
                code="EndpointConnectionError",
                operation=operation,
            )
        return error_from_code(code, message, operation=operation)

    async def _enter(self, operation: str) -> Fault | None:
        """Count the call and apply whole-call faults; returns a ``response_lost`` fault."""
        self.calls[operation] += 1
        fired: list[Fault] = []
        for armed in self._faults:
            fault = armed.fault
            if fault.per_record or not fault.matches(operation) or armed.remaining == 0:
                continue
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
            fired.append(fault)
        for fault in fired:
            if fault.latency:
                await asyncio.sleep(fault.latency)
        lost: Fault | None = None
        for fault in fired:
            if fault.error_code is None:
                continue
            if fault.response_lost:
                lost = lost or fault
                continue
            raise self._err(fault.error_code, fault.message, operation)
        return lost

    def _raise_lost(self, lost: Fault | None, operation: str) -> None:
        if lost is not None and lost.error_code is not None:
            raise self._err(lost.error_code, lost.message, operation)

    def _per_record_fault(self, operation: str) -> Fault | None:
        for armed in self._faults:
            fault = armed.fault
            if not fault.per_record or not fault.matches(operation) or armed.remaining == 0:
                continue
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
            return fault
        return None

    def _wall(self, clock_time: float) -> dt.datetime:
        millis = math.floor((self._wall_offset + clock_time) * 1000)
        return dt.datetime.fromtimestamp(millis / 1000, dt.UTC)

    def _next_seq(self, stream: _StreamState, shard_id: str) -> int:
        self._seq += 1
        seq = _sequence_number(self._seq, shard_id)
        stream.seq_owner[seq] = shard_id
        return seq

    def _status(self, stream: _StreamState) -> str:
        now = self._clock()
        if now < stream.active_at:
            return "CREATING"
        if now < stream.updating_until:
            return "UPDATING"
        return "ACTIVE"

    def _consumer_status(self, consumer: _ConsumerState) -> str:
        return "ACTIVE" if self._clock() >= consumer.active_at else "CREATING"

    def _state_message(self, stream: _StreamState) -> str:
        return (
            f"Stream {stream.name} under account {self.account_id} not ACTIVE, instead in "
            f"state {self._status(stream)}"
        )

    def _rate_message(self, stream: _StreamState, shard: _ShardState) -> str:
        return (
            f"Rate exceeded for shard {shard.shard_id} in stream {stream.name} under account "
            f"{self.account_id}."
        )

    def _not_found(self, stream_name: str, operation: str) -> AWSError:
        return self._err(
            "ResourceNotFoundException",
            f"Stream {stream_name} under account {self.account_id} not found.",
            operation,
        )

    def _stream(self, stream_name: str, operation: str) -> _StreamState:
        stream = self._streams.get(stream_name)
        if stream is None:
            raise self._not_found(stream_name, operation)
        return stream

    def _data_stream(self, stream_name: str, operation: str) -> _StreamState:
        # The service answers data calls on a CREATING stream as if it did not exist yet.
        stream = self._stream(stream_name, operation)
        if self._status(stream) == "CREATING":
            raise self._not_found(stream_name, operation)
        return stream

    def _active_stream(self, stream_name: str, operation: str) -> _StreamState:
        stream = self._stream(stream_name, operation)
        if self._status(stream) != "ACTIVE":
            raise self._err("ResourceInUseException", self._state_message(stream), operation)
        return stream

    def _stream_by_arn(self, stream_arn: str, operation: str) -> _StreamState:
        for stream in self._streams.values():
            if stream.arn == stream_arn:
                return stream
        raise self._err("ResourceNotFoundException", f"Stream {stream_arn} not found", operation)

    def _consumer_by_arn(
        self, consumer_arn: str, operation: str
    ) -> tuple[_StreamState, _ConsumerState]:
        for stream in self._streams.values():
            for consumer in stream.consumers.values():
                if consumer.arn == consumer_arn:
                    return stream, consumer
        raise self._err(
            "ResourceNotFoundException", f"Consumer {consumer_arn} not found", operation
        )

    def _shard(self, stream: _StreamState, shard_id: str, operation: str) -> _ShardState:
        shard = stream.shards.get(shard_id)
        if shard is None:
            raise self._err(
                "ResourceNotFoundException",
                f"Shard {shard_id} in stream {stream.name} under account {self.account_id} "
                "does not exist",
                operation,
            )
        return shard

    def _new_shard(
        self,
        stream: _StreamState,
        start: int,
        end: int,
        parent: str | None,
        adjacent: str | None,
        now: float,
    ) -> _ShardState:
        shard_id = f"shardId-{stream.next_shard_index:012d}"
        stream.next_shard_index += 1
        shard = _ShardState(
            shard_id=shard_id,
            start_key=start,
            end_key=end,
            parent=parent,
            adjacent=adjacent,
            start_seq=self._next_seq(stream, shard_id),
            created=now,
        )
        stream.shards[shard_id] = shard
        return shard

    def _close(self, stream: _StreamState, shard: _ShardState, now: float) -> None:
        shard.end_seq = self._next_seq(stream, shard.shard_id)
        shard.closed_at = self._wall(now)
        shard.notify()

    def _split(
        self, stream: _StreamState, shard: _ShardState, key: int, now: float
    ) -> tuple[_ShardState, _ShardState]:
        self._close(stream, shard, now)
        low = self._new_shard(stream, shard.start_key, key - 1, shard.shard_id, None, now)
        high = self._new_shard(stream, key, shard.end_key, shard.shard_id, None, now)
        shard.children = [low.shard_id, high.shard_id]
        stream.reindex()
        return low, high

    def _merge(
        self, stream: _StreamState, first: _ShardState, second: _ShardState, now: float
    ) -> _ShardState:
        self._close(stream, first, now)
        self._close(stream, second, now)
        child = self._new_shard(
            stream,
            min(first.start_key, second.start_key),
            max(first.end_key, second.end_key),
            first.shard_id,
            second.shard_id,
            now,
        )
        first.children = [child.shard_id]
        second.children = [child.shard_id]
        stream.reindex()
        return child

    def _child_shards(self, stream: _StreamState, shard: _ShardState) -> list[ChildShard]:
        out: list[ChildShard] = []
        for child_id in shard.children:
            child = stream.shards.get(child_id)
            if child is not None:
                out.append(ChildShard(child_id, child.parent_ids, child.start_key, child.end_key))
        return out

    def _wake(self, stream: _StreamState) -> None:
        for shard in stream.shards.values():
            shard.notify()

    def _resolve(
        self,
        stream: _StreamState,
        shard: _ShardState,
        position: StartingPosition,
        operation: str,
    ) -> int:
        """The position as "records with a sequence number greater than this"."""
        kind = position.type
        if kind not in _ITERATOR_TYPES:
            raise self._err(
                "ValidationException",
                f"1 validation error detected: Value '{kind}' at 'shardIteratorType' failed "
                "to satisfy constraint: Member must satisfy enum value set: "
                f"{sorted(_ITERATOR_TYPES)}",
                operation,
            )
        if kind == "TRIM_HORIZON":
            return shard.start_seq
        if kind == "LATEST":
            return _sequence_ceiling(self._seq)
        if kind == "AT_TIMESTAMP":
            ts = position.timestamp
            if ts is None:
                raise self._err(
                    "InvalidArgumentException",
                    "Timestamp must be specified for ShardIteratorType AT_TIMESTAMP",
                    operation,
                )
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=dt.UTC)
            for stored in shard.records:
                if _arrival(stored) >= ts:
                    return stored.seq - 1
            return _sequence_ceiling(self._seq)
        text = position.sequence_number
        if text is None:
            raise self._err(
                "InvalidArgumentException",
                f"StartingSequenceNumber must be specified for ShardIteratorType {kind}",
                operation,
            )
        if not _SEQ_RE.fullmatch(text):
            raise self._err(
                "ValidationException",
                f"1 validation error detected: Value '{text}' at 'startingSequenceNumber' "
                "failed to satisfy constraint: Member must satisfy regular expression "
                "pattern: 0|([1-9]\\d{0,128})",
                operation,
            )
        seq = int(text)
        owner = stream.seq_owner.get(seq)
        if owner != shard.shard_id:
            raise self._err(
                "InvalidArgumentException",
                f"Invalid StartingSequenceNumber. It encodes {owner or 'no shard of this stream'}"
                f", while it was used in a call to a shard with {shard.shard_id}",
                operation,
            )
        return seq - 1 if kind == "AT_SEQUENCE_NUMBER" else seq

    def _encode_iterator(
        self, stream: _StreamState, shard: _ShardState, after: int, issued: float
    ) -> str:
        payload = {
            "s": stream.name,
            "i": stream.incarnation,
            "h": shard.shard_id,
            "a": str(after),
            "t": issued,
        }
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.b64encode(raw).decode("ascii")

    def _decode_iterator(
        self, iterator: str, operation: str
    ) -> tuple[_StreamState, _ShardState, int, float]:
        try:
            payload = json.loads(base64.b64decode(iterator.encode("ascii"), validate=True))
            stream_name = str(payload["s"])
            incarnation = int(payload["i"])
            shard_id = str(payload["h"])
            after = int(payload["a"])
            issued = float(payload["t"])
        except (ValueError, KeyError, TypeError) as exc:
            raise self._err(
                "InvalidArgumentException", "Invalid ShardIterator.", operation
            ) from exc
        stream = self._streams.get(stream_name)
        if stream is None or stream.incarnation != incarnation:
            raise self._not_found(stream_name, operation)
        return stream, self._shard(stream, shard_id, operation), after, issued

    def _take(
        self, shard: _ShardState, after: int, limit: int, max_bytes: int
    ) -> tuple[list[KinesisRecord], int, int]:
        """Records after ``after`` up to ``limit`` and ``max_bytes`` (at least one record):
        returns them, the new position and their size."""
        start = shard.first_after(after)
        batch: list[KinesisRecord] = []
        size = 0
        for stored in shard.records[start : start + limit]:
            if batch and size + stored.size > max_bytes:
                break
            batch.append(stored.record)
            size += stored.size
            after = stored.seq
        return batch, after, size

    def _at_end(self, shard: _ShardState, after: int) -> bool:
        return (
            self.child_shards_at_end
            and not shard.is_open
            and shard.first_after(after) >= len(shard.records)
        )

    def _millis_behind(self, shard: _ShardState, after: int, now: float) -> int:
        index = shard.first_after(after)
        if index >= len(shard.records):
            return 0
        return max(0, round((now - shard.records[index].at) * 1000))

    def _continuation(self, shard: _ShardState, after: int) -> str:
        """A sequence number of this shard equivalent to ``after`` for AFTER_SEQUENCE_NUMBER."""
        index = shard.first_after(after)
        if index > 0:
            return str(shard.seqs[index - 1])
        return str(shard.start_seq)

    def _subscription_target(
        self, sub: _Subscription, operation: str
    ) -> tuple[_StreamState, _ShardState]:
        stream = self._streams.get(sub.stream_name)
        if stream is None or stream.incarnation != sub.incarnation:
            raise self._not_found(sub.stream_name, operation)
        if not any(c.arn == sub.consumer_arn for c in stream.consumers.values()):
            raise self._err(
                "ResourceNotFoundException", f"Consumer {sub.consumer_arn} not found", operation
            )
        return stream, self._shard(stream, sub.shard_id, operation)

    async def _wait(self, shard: _ShardState) -> None:
        """Until new records (or a close) on ``shard``, or ``poll_interval`` real seconds."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        shard.waiters.add(fut)
        try:
            await asyncio.wait([fut], timeout=self.poll_interval)
        finally:
            shard.waiters.discard(fut)
            if not fut.done():
                fut.cancel()


def _hash_key(entry: PutRecordsEntry) -> int:
    if entry.explicit_hash_key is not None:
        return int(entry.explicit_hash_key)
    digest = hashlib.md5(entry.partition_key.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest, "big")


def _arrival(stored: _Stored) -> dt.datetime:
    ts = stored.record.approximate_arrival_timestamp
    assert ts is not None
    return ts
