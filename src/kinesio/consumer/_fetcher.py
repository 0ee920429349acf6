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

This module holds what both ways of reading share (:class:`FetcherBase`); the readers are
:class:`kinesio.consumer._polling.PollingFetcher` and
:class:`kinesio.consumer._fanout.FanOutFetcher`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypedDict

from kinesio._errors import (
    ConfigurationError,
    KinesioError,
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
from kinesio.aggregation._wire import MAGIC as _MAGIC
from kinesio.aggregation._wire import OVERHEAD as _AGGREGATE_OVERHEAD
from kinesio.consumer._deaggregate import deaggregate, plain_record
from kinesio.consumer._prefetch import FetchedBatch, Prefetch
from kinesio.consumer._shards import children_from_list_shards
from kinesio.consumer._shared import SharedShardList
from kinesio.events import Emitter, RecordsFetched, Throttled

__all__ = [
    "Backoff",
    "FetchOptions",
    "FetchedBatch",
    "FetcherBase",
    "ShardFetcher",
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


class Backoff:
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


class FetchOptions(TypedDict, total=False):
    """The keyword arguments both fetchers take (see :class:`FetcherBase`)."""

    initial_timestamp: dt.datetime | None
    max_prefetch_records: int
    max_prefetch_bytes: int
    clock: Callable[[], float]
    events: Emitter | None


class FetcherBase:
    """What both fetchers share: positions, deduplication, the queue, shard end and errors.

    ``start`` is the lease checkpoint: ``TRIM_HORIZON``, ``LATEST``, ``AT_TIMESTAMP`` (needs
    ``initial_timestamp``, else ``ConfigurationError``), ``SHARD_END`` (the first batch is a
    shard end, children unknown) or a sequence number and sub-sequence number (reading resumes
    just after it, even inside a KPL aggregate). At most ``max_prefetch_records`` user records
    and ``max_prefetch_bytes`` bytes of user data wait in the queue (``ConfigurationError``
    below 1). ``clock`` (monotonic seconds) measures iterator age and ListShards intervals.
    ``events`` receives what the subclass reports.
    """

    def __init__(
        self,
        kinesis: KinesisAPI,
        stream_name: str,
        shard: Shard,
        start: ExtendedSequenceNumber,
        *,
        initial_timestamp: dt.datetime | None = None,
        max_prefetch_records: int = 10_000,
        max_prefetch_bytes: int = 64 * MiB,
        clock: Callable[[], float] = time.monotonic,
        events: Emitter | None = None,
    ) -> None:
        if max_prefetch_records < 1 or max_prefetch_bytes < 1:
            raise ConfigurationError("max_prefetch_records and max_prefetch_bytes must be >= 1")
        self.shard_id = shard.shard_id
        self._kinesis = kinesis
        self._events = events or Emitter(None, stream_name=stream_name)
        self._stream_name = stream_name
        self._shard = shard
        self._clock = clock
        # Read here, not at import, so tests can shorten it; a subclass may lower it.
        self._heartbeat = HEARTBEAT
        self._initial = _initial_position(start, initial_timestamp)
        # Records at or below (sequence, sub-sequence) are not delivered: they precede the
        # start position or were delivered already.
        self._floor: tuple[int, int] | None = None
        if not start.is_sentinel:
            self._floor = (int(start.sequence_number), start.sub_sequence_number)
        # The last Kinesis record read (and queued whole): reads resume after it.
        self._last_seq: str | None = None
        # Partition key -> inside this shard's hash range (see deaggregate()).
        self._inside: dict[str, bool] = {}
        self._millis_behind: int | None = None
        self._queue = Prefetch(max_prefetch_records, max_prefetch_bytes)
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
        if not records:
            return []
        out: list[Record] = []
        append = out.append
        shard = self._shard
        shard_id = shard.shard_id
        inside = self._inside
        start = 0
        floor = self._floor
        if floor is not None:
            # An answer's records come in shard order (SPEC §1): once one is past the floor,
            # so is every later one, and only the records up to it need a number compared.
            top, sub = floor
            for record in records:
                seq = int(record.sequence_number)
                if seq > top:
                    break
                if seq == top:
                    out.extend(
                        r for r in deaggregate(record, shard, inside) if r.sub_sequence_number > sub
                    )
                start += 1
        for record in records[start:] if start else records:
            data = record.data
            if len(data) > _AGGREGATE_OVERHEAD and data[:4] == _MAGIC:
                out.extend(deaggregate(record, shard, inside))
            else:
                append(plain_record(record, shard_id))
        last = records[-1].sequence_number
        self._last_seq = last
        self._floor = (int(last), _WHOLE_RECORD)
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

    async def _back_off(self, backoff: Backoff, exc: KinesioError) -> None:
        delay = backoff.delay()
        logger.debug("shard %s: %s; retrying in %.2f s", self.shard_id, exc, delay)
        await asyncio.sleep(delay)

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
        backoff = Backoff()
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
