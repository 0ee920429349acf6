"""Fetching one shard's records ahead of its handler: GetRecords polling or enhanced fan-out.

A fetcher owns one background task that reads the shard from a start position (a lease
checkpoint) and queues deaggregated user records, in order, for :meth:`ShardFetcher.next_batch`.
The queue is bounded (records and data bytes): when it is full the task stops reading until
the handler catches up, so a slow handler slows fetching and memory stays bounded.

Guarantees in a healthy run: every user record after the start position is delivered exactly
once, in shard order — across throttling, expired iterators, renewed subscriptions and retried
errors — and the shard's end is reported once everything in it was delivered. A record is
never delivered twice because every record at or below the last delivered position
(sequence number, sub-sequence number) is dropped, whatever the server sends again.

Shard end is the service's signal (GetRecords' ``NextShardIterator`` null, a fan-out event
without continuation, both with ``ChildShards``). Emulators that never give that signal (moto;
kinesis-mock on fan-out) are covered by a fallback: once ListShards says the shard is closed,
an empty read that is caught up (``MillisBehindLatest`` 0) ends it, and the children come from
ListShards. A shard that no longer exists at all (retention removed it, closed, under its
lease) is ended the same way, as the KCL does; a stream that is gone stops the fetcher.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kinesio._config import Polling
from kinesio._errors import (
    ConfigurationError,
    ExpiredIteratorError,
    KinesioError,
    ResourceInUseError,
    ResourceNotFoundError,
    ThrottlingError,
)
from kinesio._kinesis import KinesisAPI, StartingPosition
from kinesio._models import (
    AT_TIMESTAMP,
    LATEST,
    SHARD_END,
    TRIM_HORIZON,
    ChildShard,
    ExtendedSequenceNumber,
    KinesisRecord,
    Record,
    Shard,
)
from kinesio.consumer._deaggregate import deaggregate
from kinesio.consumer._shards import children_from_list_shards
from kinesio.consumer._shared import SharedShardList
from kinesio.events import Emitter, RecordsFetched, SubscriptionRenewed, Throttled

__all__ = [
    "FanOutFetcher",
    "FetchedBatch",
    "PollingFetcher",
    "ShardFetcher",
    "ensure_stream_consumer",
]

logger = logging.getLogger("kinesio.consumer.fetcher")

MiB = 1024 * 1024

#: Shard iterators expire 5 minutes after they are issued (SPEC §1); one this old (seconds) is
#: replaced before use, so a fetcher paused by a full queue does not run into the expiry.
ITERATOR_REFRESH_AGE = 270.0
#: Backoff (seconds) after a throttled or failed call: exponential from the first value,
#: capped at the second, with jitter (each wait is drawn from [d/2, d]).
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 10.0
#: Seconds between ListShards looks at whether an open-looking shard was closed (only on a
#: caught-up, empty read; the service's own shard-end signal makes them unneeded, so the
#: interval doubles while the shard stays open, up to the maximum).
LIST_SHARDS_INTERVAL = 5.0
LIST_SHARDS_INTERVAL_MAX = 30.0
#: The longest next_batch() waits before returning an empty batch (seconds).
HEARTBEAT = 1.0

# Dropping everything at or below (sequence, this) drops the whole Kinesis record.
_WHOLE_RECORD = sys.maxsize


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


class ShardFetcher(Protocol):
    """Reads one shard ahead of its handler (see the module docstring)."""

    shard_id: str

    async def start(self) -> None:
        """Start the background task (idempotent)."""
        ...

    async def next_batch(self) -> FetchedBatch:
        """The next batch: waits for records, but returns an empty batch at least every
        heartbeat so the caller can check for shutdown. After a ``shard_end`` batch it keeps
        returning ``shard_end`` batches. Raises the error that stopped the fetcher (a
        non-retriable one: stream or shard gone, access denied, ...) once the records fetched
        before it were returned. Safe to cancel: no batch is lost."""
        ...

    async def aclose(self) -> None:
        """Stop the background task; idempotent. Later next_batch() calls return empty
        batches."""
        ...


async def ensure_stream_consumer(
    kinesis: KinesisAPI, stream_arn: str, consumer_name: str, *, timeout: float = 120.0
) -> str:
    """Register the enhanced fan-out consumer if missing, wait until ACTIVE, return its ARN.

    Registration takes seconds on the service. Retriable errors (throttling, service errors)
    are retried with backoff; a consumer being deleted is waited for and registered again.
    Raises ``ResourceInUseError`` if it is not ACTIVE after ``timeout`` seconds,
    ``ResourceNotFoundError`` if the stream does not exist, and other non-retriable errors
    as they come.
    """
    deadline = time.monotonic() + timeout
    backoff = _Backoff(0.2, 2.0)
    status = "absent"
    while True:
        try:
            try:
                consumer = await kinesis.describe_stream_consumer(stream_arn, consumer_name)
            except ResourceNotFoundError:
                consumer = await kinesis.register_stream_consumer(stream_arn, consumer_name)
            status = consumer.status
            if status == "ACTIVE":
                return consumer.consumer_arn
        except KinesioError as exc:
            if not exc.retriable:
                raise
            logger.debug("stream consumer %s: %s; retrying", consumer_name, exc)
        if time.monotonic() >= deadline:
            raise ResourceInUseError(
                f"stream consumer {consumer_name!r} of {stream_arn} still {status} after "
                f"{timeout:.0f} s",
                code="ResourceInUseException",
                operation="DescribeStreamConsumer",
            )
        await asyncio.sleep(min(backoff.delay(), max(0.0, deadline - time.monotonic())))


class _Backoff:
    """Exponential backoff with jitter; :meth:`reset` after a success."""

    def __init__(self, initial: float | None = None, maximum: float | None = None) -> None:
        # Module constants are read here, not at import, so tests can shorten them.
        self._initial = BACKOFF_INITIAL if initial is None else initial
        self._maximum = BACKOFF_MAX if maximum is None else maximum
        self._attempt = 0

    def delay(self) -> float:
        ceiling = min(self._maximum, self._initial * 2.0 ** min(self._attempt, 30))
        self._attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0


class _Prefetch:
    """The bounded queue between the background task and next_batch(): one producer, one
    consumer. Bounded by user records and user data bytes; ``put`` never blocks (a response is
    queued whole), the producer waits for room before its next read instead."""

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


def _initial_position(
    start: ExtendedSequenceNumber, initial_timestamp: dt.datetime | None
) -> StartingPosition | None:
    """Where to read from for a lease checkpoint (None: SHARD_END, nothing to read)."""
    seq = start.sequence_number
    if seq == SHARD_END:
        return None
    if seq == TRIM_HORIZON:
        return StartingPosition("TRIM_HORIZON")
    if seq == LATEST:
        return StartingPosition("LATEST")
    if seq == AT_TIMESTAMP:
        if initial_timestamp is None:
            raise ConfigurationError(
                "the checkpoint is AT_TIMESTAMP but no initial_timestamp was given"
            )
        return StartingPosition("AT_TIMESTAMP", timestamp=initial_timestamp)
    try:
        int(seq)
    except ValueError:
        raise ConfigurationError(f"checkpoint {seq!r} is neither a sentinel nor a number") from None
    # AT, not AFTER: the checkpoint may sit inside a KPL aggregate whose later user records
    # are still to be delivered; the records at or below it are dropped on arrival.
    return StartingPosition("AT_SEQUENCE_NUMBER", sequence_number=seq)


def _child_shard(shard: Shard) -> ChildShard:
    return ChildShard(
        shard_id=shard.shard_id,
        parent_shards=shard.parent_shard_ids,
        starting_hash_key=shard.starting_hash_key,
        ending_hash_key=shard.ending_hash_key,
    )


class _Fetcher:
    """What both fetchers share: positions, deduplication, the queue, shard end and errors."""

    def __init__(
        self,
        kinesis: KinesisAPI,
        stream_name: str,
        shard: Shard,
        start: ExtendedSequenceNumber,
        *,
        initial_timestamp: dt.datetime | None,
        max_prefetch_records: int,
        max_prefetch_bytes: int,
        clock: Callable[[], float],
        heartbeat: float,
        events: Emitter | None,
    ) -> None:
        if max_prefetch_records < 1 or max_prefetch_bytes < 1:
            raise ConfigurationError("max_prefetch_records and max_prefetch_bytes must be >= 1")
        self.shard_id = shard.shard_id
        self._kinesis = kinesis
        self._events = events or Emitter(None, stream_name=stream_name)
        self._stream_name = stream_name
        self._shard = shard
        self._clock = clock
        self._heartbeat = heartbeat
        self._initial = _initial_position(start, initial_timestamp)
        # Records at or below (sequence, sub-sequence) are not delivered: they precede the
        # start position or were delivered already.
        self._floor: tuple[int, int] | None = None
        if not start.is_sentinel:
            self._floor = (int(start.sequence_number), start.sub_sequence_number)
        # The last Kinesis record read (and queued whole): reads resume after it.
        self._last_seq: str | None = None
        self._millis_behind: int | None = None
        self._queue = _Prefetch(max_prefetch_records, max_prefetch_bytes)
        self._end: FetchedBatch | None = None
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # Shard-end fallback for backends that never signal it (see the module docstring).
        self._known_closed = not shard.is_open
        self._next_list_shards = -math.inf
        self._list_shards_interval = LIST_SHARDS_INTERVAL
        if self._initial is None:
            self._end = FetchedBatch([], None, shard_end=True)

    # -- the ShardFetcher API ----------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task (idempotent; nothing to start at SHARD_END)."""
        if self._task is not None or self._closed or self._end is not None:
            return
        self._task = asyncio.create_task(self._guarded(), name=f"kinesio-fetch-{self.shard_id}")

    async def next_batch(self) -> FetchedBatch:
        """See :meth:`ShardFetcher.next_batch`."""
        await self.start()
        batch = self._ready()
        if batch is not None:
            return batch
        self._queue.changed.clear()
        try:
            async with asyncio.timeout(self._heartbeat):
                await self._queue.changed.wait()
        except TimeoutError:
            pass
        batch = self._ready()
        return batch if batch is not None else FetchedBatch([], self._millis_behind)

    async def aclose(self) -> None:
        """See :meth:`ShardFetcher.aclose`."""
        self._closed = True
        self._queue.changed.set()
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    # -- internals ---------------------------------------------------------------------------

    def _ready(self) -> FetchedBatch | None:
        batch = self._queue.pop()
        if batch is not None:
            return batch
        if self._end is not None:
            return self._end
        if self._error is not None:
            raise self._error
        if self._closed:
            return FetchedBatch([], self._millis_behind)
        return None

    async def _guarded(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("fetching shard %s stopped: %s", self.shard_id, exc)
            self._error = exc
            self._queue.changed.set()

    async def _run(self) -> None:
        raise NotImplementedError

    def _user_records(self, records: Sequence[KinesisRecord]) -> list[Record]:
        """Deaggregate ``records`` and drop what is at or below the floor; advance both the
        floor and the last read position past them."""
        out: list[Record] = []
        floor = self._floor
        for record in records:
            self._last_seq = record.sequence_number
            seq = int(record.sequence_number)
            if floor is not None and seq <= floor[0]:
                if seq < floor[0]:
                    continue
                out.extend(
                    r for r in deaggregate(record, self._shard) if r.sub_sequence_number > floor[1]
                )
                continue
            out.extend(deaggregate(record, self._shard))
        if records:
            self._floor = (int(records[-1].sequence_number), _WHOLE_RECORD)
        return out

    def _resume_position(self, continuation: str | None = None) -> StartingPosition:
        """Where a new iterator or subscription starts: after what was read, else the start."""
        after = continuation or self._last_seq
        if after is not None:
            return StartingPosition("AFTER_SEQUENCE_NUMBER", sequence_number=after)
        assert self._initial is not None
        return self._initial

    def _fetched(
        self,
        operation: str,
        kinesis_records: int,
        records: list[Record],
        millis_behind: int | None,
    ) -> None:
        """Report one read (see :class:`kinesio.events.RecordsFetched`)."""
        if self._events.enabled:
            self._events.emit(
                RecordsFetched(
                    shard_id=self.shard_id,
                    operation=operation,
                    kinesis_records=kinesis_records,
                    records=len(records),
                    bytes=sum(len(r.data) for r in records),
                    millis_behind_latest=millis_behind,
                )
            )

    def _throttled(self, exc: KinesioError, operation: str) -> None:
        if isinstance(exc, ThrottlingError):
            self._events.emit(
                Throttled(operation=exc.operation or operation, shard_id=self.shard_id, records=0)
            )

    def _deliver(self, records: list[Record], millis_behind: int | None) -> None:
        self._millis_behind = millis_behind
        if records:
            self._queue.put(FetchedBatch(records, millis_behind))

    async def _finish(
        self, records: list[Record], millis_behind: int | None, children: list[ChildShard]
    ) -> None:
        """Queue the shard-end batch (with the last records); later calls keep returning it."""
        if not children:
            children = await self._children_from_list_shards()
        self._millis_behind = millis_behind
        logger.debug("shard %s ended; children %s", self.shard_id, [c.shard_id for c in children])
        self._queue.put(FetchedBatch(records, millis_behind, True, children))
        self._end = FetchedBatch([], millis_behind, True, children)

    async def _children_from_list_shards(self) -> list[ChildShard]:
        backoff = _Backoff()
        while True:
            try:
                shards = await self._kinesis.list_shards(self._stream_name)
            except KinesioError as exc:
                if not exc.retriable:
                    raise
                await asyncio.sleep(backoff.delay())
                continue
            return [_child_shard(s) for s in children_from_list_shards(self.shard_id, shards)]

    async def _end_if_gone(self, exc: ResourceNotFoundError) -> None:
        """The shard was not found: end it if it is really gone from a stream that still
        exists (retention removed a closed shard under its lease), else re-raise ``exc``.

        Like the KCL, a shard that no longer exists is treated as ended: its children (from
        ListShards) get their leases and the lease is checkpointed ``SHARD_END``, so nothing
        waits for it forever. A missing stream (ListShards fails too) stops the fetcher with
        ``exc``.
        """
        if isinstance(self._kinesis, SharedShardList):
            self._kinesis.invalidate()  # a cached listing may predate the removal
        try:
            shards = await self._kinesis.list_shards(self._stream_name)
        except KinesioError:
            raise exc from None
        if any(shard.shard_id == self.shard_id for shard in shards):
            raise exc
        logger.info("shard %s no longer exists (past retention); ending it", self.shard_id)
        children = [_child_shard(s) for s in children_from_list_shards(self.shard_id, shards)]
        self._queue.put(FetchedBatch([], None, True, children))
        self._end = FetchedBatch([], None, True, children)

    async def _check_closed(self) -> None:
        """Ask ListShards, at most every few seconds, whether the shard was closed."""
        now = self._clock()
        if self._known_closed or now < self._next_list_shards:
            return
        self._next_list_shards = now + self._list_shards_interval
        self._list_shards_interval = min(self._list_shards_interval * 2, LIST_SHARDS_INTERVAL_MAX)
        try:
            shards = await self._kinesis.list_shards(self._stream_name)
        except KinesioError as exc:
            # Only a fallback: GetRecords reports a stream that is really gone.
            logger.debug("ListShards for shard %s failed: %s", self.shard_id, exc)
            return
        for shard in shards:
            if shard.shard_id == self.shard_id and not shard.is_open:
                logger.debug("shard %s is closed (ListShards)", self.shard_id)
                self._known_closed = True


class PollingFetcher(_Fetcher):
    """Reads one shard with GetRecords (shared throughput: 5 calls/s and 2 MiB/s per shard).

    Calls GetRecords for up to ``polling.max_records`` records; after a call it waits
    ``polling.idle_time`` seconds if it found the shard caught up (no records, or
    ``MillisBehindLatest`` 0), else ``polling.catch_up_interval``. Throttled and failed calls
    (throttling, service and connection errors) are retried after an exponential backoff
    with jitter (0.5 s doubling to 10 s); an expired iterator is replaced by one after the
    last record read. Non-retriable errors stop the fetcher; next_batch() then raises them.

    At most ``max_prefetch_records`` user records and ``max_prefetch_bytes`` bytes of user
    data wait in the queue before the next GetRecords (one response may exceed the bytes
    bound; KPL aggregates may exceed the records bound by one response).

    ``start`` is the lease checkpoint: ``TRIM_HORIZON``, ``LATEST``, ``AT_TIMESTAMP`` (needs
    ``initial_timestamp``, else ``ConfigurationError``), ``SHARD_END`` (the first batch is a
    shard end, children unknown) or a sequence number and sub-sequence number (reading resumes
    just after it, even inside a KPL aggregate). ``clock`` (monotonic seconds) measures
    iterator age and ListShards intervals. ``events`` receives a ``RecordsFetched`` per
    GetRecords answer and a ``Throttled`` per throttled call.
    """

    def __init__(
        self,
        kinesis: KinesisAPI,
        stream_name: str,
        shard: Shard,
        start: ExtendedSequenceNumber,
        *,
        polling: Polling,
        initial_timestamp: dt.datetime | None = None,
        max_prefetch_records: int = 10_000,
        max_prefetch_bytes: int = 64 * MiB,
        clock: Callable[[], float] = time.monotonic,
        events: Emitter | None = None,
    ) -> None:
        super().__init__(
            kinesis,
            stream_name,
            shard,
            start,
            initial_timestamp=initial_timestamp,
            max_prefetch_records=max_prefetch_records,
            max_prefetch_bytes=max_prefetch_bytes,
            clock=clock,
            heartbeat=min(max(polling.idle_time, 0.05), HEARTBEAT),
            events=events,
        )
        self._polling = polling

    async def _run(self) -> None:
        backoff = _Backoff()
        iterator: str | None = None
        issued = 0.0
        expired_in_a_row = 0
        while True:
            await self._queue.wait_for_room()
            if iterator is None or self._clock() - issued >= ITERATOR_REFRESH_AGE:
                try:
                    iterator = await self._kinesis.get_shard_iterator(
                        self._stream_name, self.shard_id, self._resume_position()
                    )
                except ResourceNotFoundError as exc:
                    await self._end_if_gone(exc)
                    return
                except KinesioError as exc:
                    if not exc.retriable:
                        raise
                    self._throttled(exc, "GetShardIterator")
                    await self._back_off(backoff, exc)
                    continue
                issued = self._clock()
            # Closure must be known before the read that is to prove the shard drained.
            known_closed = self._known_closed
            limit = min(self._polling.max_records, self._queue.room_records())
            try:
                out = await self._kinesis.get_records(iterator, limit=limit)
            except ExpiredIteratorError as exc:
                iterator = None
                expired_in_a_row += 1
                if expired_in_a_row > 1:
                    await self._back_off(backoff, exc)
                continue
            except ResourceNotFoundError as exc:
                await self._end_if_gone(exc)
                return
            except KinesioError as exc:
                if not exc.retriable:
                    raise
                self._throttled(exc, "GetRecords")
                await self._back_off(backoff, exc)
                continue
            backoff.reset()
            expired_in_a_row = 0
            records = self._user_records(out.records)
            self._fetched("GetRecords", len(out.records), records, out.millis_behind_latest)
            if out.next_shard_iterator is None:
                await self._finish(records, out.millis_behind_latest, out.child_shards)
                return
            iterator, issued = out.next_shard_iterator, self._clock()
            self._deliver(records, out.millis_behind_latest)
            drained = not out.records and not out.millis_behind_latest
            if drained:
                if known_closed:
                    await self._finish([], out.millis_behind_latest, [])
                    return
                await self._check_closed()
            # A full response means more is waiting, whatever MillisBehindLatest says (it
            # counts milliseconds: records younger than one can read as 0 behind).
            caught_up = not out.records or (
                out.millis_behind_latest == 0 and len(out.records) < limit
            )
            await asyncio.sleep(
                self._polling.idle_time if caught_up else self._polling.catch_up_interval
            )

    async def _back_off(self, backoff: _Backoff, exc: KinesioError) -> None:
        delay = backoff.delay()
        logger.debug("shard %s: %s; retrying in %.2f s", self.shard_id, exc, delay)
        await asyncio.sleep(delay)


class FanOutFetcher(_Fetcher):
    """Reads one shard through enhanced fan-out (SubscribeToShard, 2 MiB/s per shard).

    One subscription at a time; when it ends (after 5 minutes, or when the server closes it)
    the next one starts after the last continuation sequence number. ``ResourceInUseError``
    (the previous subscription of this consumer to the shard is still alive, e.g. right after
    the lease moved here) and other retriable errors are retried after an exponential backoff
    with jitter (0.5 s doubling to 10 s); non-retriable errors (consumer or shard gone, access
    denied) stop the fetcher and next_batch() raises them.

    While the queue is full (``max_prefetch_records`` user records or ``max_prefetch_bytes``
    data bytes) no event is taken from the subscription, so the server's flow control holds
    the rest. ``stream_name`` is used for ListShards (children at shard end) and to check a
    possible shard end with GetRecords when the service does not signal it. ``start``,
    ``initial_timestamp`` and ``clock`` are as for :class:`PollingFetcher`. ``events``
    receives a ``RecordsFetched`` per subscription event, a ``SubscriptionRenewed`` per
    subscription after the first and a ``Throttled`` per throttled SubscribeToShard.
    """

    def __init__(
        self,
        kinesis: KinesisAPI,
        consumer_arn: str,
        shard: Shard,
        start: ExtendedSequenceNumber,
        *,
        stream_name: str,
        initial_timestamp: dt.datetime | None = None,
        max_prefetch_records: int = 10_000,
        max_prefetch_bytes: int = 64 * MiB,
        clock: Callable[[], float] = time.monotonic,
        events: Emitter | None = None,
    ) -> None:
        super().__init__(
            kinesis,
            stream_name,
            shard,
            start,
            initial_timestamp=initial_timestamp,
            max_prefetch_records=max_prefetch_records,
            max_prefetch_bytes=max_prefetch_bytes,
            clock=clock,
            heartbeat=HEARTBEAT,
            events=events,
        )
        self._consumer_arn = consumer_arn
        self._continuation: str | None = None

    async def _run(self) -> None:
        backoff = _Backoff()
        subscriptions = 0
        ended_by = "expired"  # what ended the last subscription (see SubscriptionRenewed)
        while True:
            await self._queue.wait_for_room()
            position = self._resume_position(self._continuation)
            events_seen = 0
            try:
                async with self._kinesis.subscribe_to_shard(
                    self._consumer_arn, self.shard_id, position
                ) as events:
                    subscriptions += 1
                    if subscriptions > 1:
                        self._events.emit(
                            SubscriptionRenewed(
                                shard_id=self.shard_id, subscription=subscriptions, reason=ended_by
                            )
                        )
                    ended_by = "expired"
                    async for event in events:
                        events_seen += 1
                        backoff.reset()
                        known_closed = self._known_closed
                        records = self._user_records(event.records)
                        self._fetched(
                            "SubscribeToShard",
                            len(event.records),
                            records,
                            event.millis_behind_latest,
                        )
                        if event.continuation_sequence_number is not None:
                            self._continuation = event.continuation_sequence_number
                        elif event.child_shards or self._known_closed:
                            await self._finish(
                                records, event.millis_behind_latest, event.child_shards
                            )
                            return
                        self._deliver(records, event.millis_behind_latest)
                        if not event.records and not event.millis_behind_latest:
                            if known_closed and await self._drained():
                                return
                            await self._check_closed()
                        await self._queue.wait_for_room()
            except ResourceNotFoundError as exc:
                await self._end_if_gone(exc)
                return
            except KinesioError as exc:
                if not exc.retriable:
                    raise
                ended_by = getattr(exc, "code", "") or type(exc).__name__
                self._throttled(exc, "SubscribeToShard")
                delay = backoff.delay()
                logger.debug("shard %s: %s; resubscribing in %.2f s", self.shard_id, exc, delay)
                await asyncio.sleep(delay)
                continue
            if events_seen == 0:
                # A subscription that ends without a single event: do not spin on it.
                await asyncio.sleep(backoff.delay())

    async def _drained(self) -> bool:
        """For a closed shard whose subscription looks caught up: confirm with GetRecords
        after the last record read that nothing is left (an event may have been built
        before the last records arrived), and end the shard if so."""
        try:
            iterator = await self._kinesis.get_shard_iterator(
                self._stream_name, self.shard_id, self._resume_position(self._continuation)
            )
            out = await self._kinesis.get_records(iterator, limit=1)
        except KinesioError as exc:
            if not exc.retriable:
                raise
            return False
        if out.records:
            return False  # more to come through the subscription
        await self._finish([], 0, out.child_shards)
        return True
