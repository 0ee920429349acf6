"""The asyncio producer: per-shard queues, KPL aggregation, rate limits, retries, backpressure.

Flow: ``put()`` validates a record, predicts its shard from the shard map and appends it to that
shard's queue (or applies the overflow policy). One sender task turns queues into PutRecords
requests — packing aggregates per shard, taking tokens from each shard's limiter — and starts a
task per request, up to ``max_in_flight``. A request's answer resolves futures, or puts the
failed records back at the front of their shard's queue with a backoff.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from aiobotocore.session import AioSession

from kinesio import aggregation
from kinesio._aws import AioKinesis, AWSConfig
from kinesio._config import Block, Drop, ProducerSettings, Raise
from kinesio._errors import (
    BacklogFullError,
    ConfigurationError,
    KinesioError,
    ProducerClosedError,
    RecordExpiredError,
    ResourceInUseError,
    ResourceNotFoundError,
    ValidationError,
)
from kinesio._kinesis import KinesisAdminAPI, KinesisAPI
from kinesio._models import ProducerRecord, PutRecordsEntry, PutRecordsResultEntry, PutResult
from kinesio.events import (
    Emitter,
    EventHook,
    PutRecordsSent,
    RecordFailed,
    ShardMapRefreshed,
    ShardPutStats,
    Stats,
    Throttled,
)
from kinesio.metrics import ProducerMetrics, ProducerMetricsRecorder
from kinesio.producer._autosplit import AutoSplitter
from kinesio.producer._limiter import ShardLimiter
from kinesio.producer._shard_map import ShardMap

logger = logging.getLogger("kinesio.producer")

ErrorHook = Callable[[ProducerRecord, KinesioError], object]
MetricsHook = Callable[[ProducerMetrics], object]

_THROTTLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException"}
)


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A validated record, ready to be accepted (see ``AsyncProducer.prepare``)."""

    record: ProducerRecord
    hash_key: int
    size: int  # data + partition key bytes: what Kinesis counts


@dataclass(slots=True, eq=False)
class _Pending:
    """A user record between put() and its result."""

    record: ProducerRecord
    hash_key: int
    size: int  # data + partition key bytes: what Kinesis counts
    future: asyncio.Future[PutResult]
    created: float
    deadline: float
    generation: int = 0  # the flush generation it was put in
    attempts: int = 0
    last_error: str | None = None


class _ShardQueue:
    __slots__ = (
        "backoff_level",
        "in_flight",
        "limiter",
        "not_before",
        "queue",
        "queued_bytes",
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


_Packed = aggregation.AggregateBuilder | None  # an aggregate to build, or a lone record


class _Spread:
    """count / sum / min / max of samples, accumulated (see :class:`kinesio.events.Stats`)."""

    __slots__ = ("count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value

    def freeze(self) -> Stats:
        if not self.count:
            return Stats()
        return Stats(self.count, self.total, self.minimum, self.maximum)


class _Tally:
    """One shard's part of one PutRecords request, for :class:`PutRecordsSent`. Kept only
    while someone listens to events, so the send path pays nothing otherwise."""

    __slots__ = (
        "buffering_ms",
        "errors",
        "kinesis_bytes_put",
        "kinesis_records_failed",
        "kinesis_records_put",
        "latency_ms",
        "retries",
        "shard_id",
        "throttled",
        "user_bytes_put",
        "user_records_failed",
        "user_records_put",
        "user_records_recovered",
    )

    def __init__(self, shard_id: str) -> None:
        self.shard_id = shard_id
        self.user_records_put = 0
        self.user_records_recovered = 0
        self.user_records_failed = 0
        self.user_bytes_put = 0
        self.kinesis_records_put = 0
        self.kinesis_records_failed = 0
        self.kinesis_bytes_put = 0
        self.throttled = 0
        self.errors: Counter[str] = Counter()
        self.latency_ms = _Spread()
        self.buffering_ms = _Spread()
        self.retries = _Spread()

    def delivered(self, p: _Pending, sent: float, now: float) -> None:
        self.user_records_put += 1
        if p.attempts > 1:
            self.user_records_recovered += 1
        self.user_bytes_put += len(p.record.data)
        self.latency_ms.add((now - p.created) * 1000.0)
        self.buffering_ms.add(max(0.0, sent - p.created) * 1000.0)
        self.retries.add(max(0, p.attempts - 1))

    def failed(self, users: int, code: str) -> None:
        self.kinesis_records_failed += 1
        self.user_records_failed += users
        self.errors[code] += 1
        if code in _THROTTLE_CODES:
            self.throttled += 1

    def freeze(self) -> ShardPutStats:
        return ShardPutStats(
            shard_id=self.shard_id,
            user_records_put=self.user_records_put,
            user_records_recovered=self.user_records_recovered,
            user_records_failed=self.user_records_failed,
            user_bytes_put=self.user_bytes_put,
            kinesis_records_put=self.kinesis_records_put,
            kinesis_records_failed=self.kinesis_records_failed,
            kinesis_bytes_put=self.kinesis_bytes_put,
            throttled=self.throttled,
            errors=tuple(sorted(self.errors.items())),
            latency_ms=self.latency_ms.freeze(),
            buffering_ms=self.buffering_ms.freeze(),
            retries=self.retries.freeze(),
        )


def _tally(tallies: dict[str, _Tally], shard_id: str) -> _Tally:
    t = tallies.get(shard_id)
    if t is None:
        t = tallies[shard_id] = _Tally(shard_id)
    return t


@dataclass(slots=True)
class _Entry:
    """One Kinesis record of a request: an aggregate or a lone user record."""

    shard: _ShardQueue
    users: list[_Pending]
    entry: PutRecordsEntry


class AsyncProducer:
    """Writes records to one Kinesis stream, asynchronously, the way the KPL does.

    Use as ``async with AsyncProducer("stream") as producer:`` (or ``await start()`` /
    ``await aclose()``). ``put()`` returns once the record is accepted into the backlog; the
    returned future resolves to a :class:`PutResult` when Kinesis has it, or fails with a
    :class:`KinesioError` (``RecordExpiredError`` after the record's TTL, ``BacklogFullError``
    under ``Drop()``, ``ProducerClosedError`` at a forced close, or a non-retriable AWS error).
    Every failure is also passed to ``on_error(record, error)`` — a dead-letter hook.

    AWS access follows boto3 (credential chain, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL*``);
    ``region_name``, ``endpoint_url``, ``session`` (an aiobotocore session) or a whole ``aws``
    config override it, and ``kinesis`` replaces the client (e.g. ``kinesio.testing``'s
    in-memory Kinesis).
    """

    def __init__(
        self,
        stream_name: str,
        *,
        settings: ProducerSettings | None = None,
        on_error: ErrorHook | None = None,
        on_metrics: MetricsHook | None = None,
        kinesis: KinesisAPI | None = None,
        aws: AWSConfig | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        session: AioSession | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        if not stream_name:
            raise ValidationError("stream_name must be a non-empty string")
        self._events = Emitter(on_event, stream_name=stream_name)
        self.stream_name = stream_name
        self.settings = settings or ProducerSettings()
        if aws is None:
            aws = AWSConfig(
                region_name=region_name,
                endpoint_url=endpoint_url,
                session=session,
            )
        self._aws = aws
        self._kinesis = kinesis
        self._owns_kinesis = kinesis is None
        self._on_error = on_error
        self._on_metrics = on_metrics
        self._clock = time.monotonic
        self._state = "new"  # new -> running -> closing -> closed
        self._map = ShardMap(())
        self._map_epoch = 0
        self._queues: dict[str, _ShardQueue] = {}
        self._rr = 0
        self._queued_records = 0
        self._queued_bytes = 0
        self._buffered_records = 0
        self._buffered_bytes = 0
        # Unresolved records per flush generation: flush() waits for the generations before it
        # without adding a callback to every future (that cost ~10 µs a record at 100k).
        self._generation = 0
        self._unresolved: dict[int, int] = {}
        # Every accepted, unresolved record: aclose() fails whatever is still here at the end,
        # so a record no path resolved (a request cancelled before it ran) cannot vanish.
        self._live: set[_Pending] = set()
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._in_flight = 0
        self._in_flight_by_epoch: Counter[int] = Counter()
        self._max_in_flight = 1
        self._flushing = 0
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._refresh_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._fatal: BaseException | None = None
        self._rng = random.Random()
        now = self._clock()
        self._metrics = ProducerMetricsRecorder(now)
        self._metrics_past = ProducerMetrics()
        self._autosplit: AutoSplitter | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Connect, check the stream is writable and load its shard map.

        Raises ``ResourceNotFoundError`` if the stream does not exist, ``ResourceInUseError`` if it
        is still being created or deleted, and the AWS errors of DescribeStreamSummary/ListShards.
        """
        if self._state != "new":
            raise ProducerClosedError(f"producer already {self._state}")
        self._state = "starting"
        try:
            if self._kinesis is None:
                pool = max(24, self.settings.max_in_flight or 0)
                self._kinesis = await AioKinesis.create(self._aws, max_pool_connections=pool)
            summary = await self._kinesis.describe_stream_summary(self.stream_name)
            if summary.status not in ("ACTIVE", "UPDATING"):
                raise ResourceInUseError(
                    f"stream {self.stream_name!r} is {summary.status}; it can be written once "
                    "ACTIVE (kinesio stream describe shows its status)",
                    code="ResourceInUseException",
                    operation="DescribeStreamSummary",
                )
            await self._load_shard_map()
            if self.settings.auto_split is not None:
                self._autosplit = self._new_autosplitter(self._kinesis)
        except BaseException:
            self._state = "closed"
            await self._close_client()
            raise
        s = self.settings
        self._max_in_flight = s.max_in_flight or min(24, max(4, 2 * len(self._map)))
        self._state = "running"
        sender = asyncio.create_task(self._sender(), name=f"kinesio-producer-{self.stream_name}")
        sender.add_done_callback(self._sender_done)
        self._background = [
            sender,
            asyncio.create_task(self._refresh_periodically()),
            asyncio.create_task(self._report_metrics_periodically()),
        ]
        if self._autosplit is not None:
            self._background.append(asyncio.create_task(self._autosplit.run()))

    def _new_autosplitter(self, kinesis: KinesisAPI) -> AutoSplitter:
        settings = self.settings.auto_split
        assert settings is not None
        if not isinstance(kinesis, KinesisAdminAPI):
            raise ConfigurationError(
                "ProducerSettings.auto_split needs a Kinesis client with the control-plane calls "
                f"(split_shard, wait_for_active); {type(kinesis).__name__} has none"
            )
        return AutoSplitter(
            settings,
            self.stream_name,
            kinesis,
            self._events,
            shard_of=lambda shard_id: self._map.get(shard_id),
            open_shards=lambda: self._map.open_shards,
            refresh=self._refresh_shard_map,
            clock=self._clock,
            held_back=self._held_back,
        )

    def _held_back(self) -> dict[str, int]:
        """Per shard, the queued user records its rate limiter cannot admit within ``linger``
        (the shard is asked for more than its limit); read once per auto-split window."""
        now, linger = self._clock(), self.settings.linger
        return {
            q.shard_id: len(q.queue)
            for q in self._queues.values()
            if q.queue and q.limiter.wait_time(q.queued_bytes, now, len(q.queue)) > linger
        }

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop accepting records, deliver everything accepted, then release the connection.

        With ``timeout`` (seconds), records still undelivered when it runs out fail with
        ``ProducerClosedError`` (in-flight ones: their write may or may not have happened) and
        are reported to ``on_error``. Nothing is dropped silently. Safe to call twice.
        """
        if self._state in ("closing", "closed"):
            return
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closing"
        self._space.set()  # wake blocked put() calls so that they raise ProducerClosedError
        try:
            async with asyncio.timeout(timeout):
                await self.flush()
        except TimeoutError:
            logger.warning(
                "producer for %r closing after %.1f s with %d records undelivered",
                self.stream_name,
                timeout,
                self._buffered_records,
            )
        closed: KinesioError = ProducerClosedError(
            "the producer was closed before this record was delivered"
        )
        for q in self._queues.values():
            self._fail_many(list(q.queue), closed)
            q.queue.clear()
            q.queued_bytes = 0
        self._queued_records = self._queued_bytes = 0
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        # A request task cancelled before its first step never ran its own failure path, and
        # one cancelled while handling an answer may hold records it had not resolved yet.
        orphans = [p for p in self._live if not p.future.done()]
        if orphans:
            self._fail_many(orphans, closed)
        if self._autosplit is not None:
            await self._autosplit.aclose()
        self._state = "closed"
        self._emit_metrics()
        await self._close_client()

    async def _close_client(self) -> None:
        if self._owns_kinesis and self._kinesis is not None:
            kinesis, self._kinesis = self._kinesis, None
            await kinesis.aclose()

    # -- the public API ----------------------------------------------------------------------

    async def put(
        self,
        data: bytes,
        partition_key: str,
        explicit_hash_key: int | str | None = None,
    ) -> asyncio.Future[PutResult]:
        """Accept one record; return a future of its :class:`PutResult`.

        Raises at once, accepting nothing: ``ValidationError`` for non-bytes data, a partition
        key that is not 1–256 characters, data + key over ``max_record_size`` bytes, or a
        malformed explicit hash key (an int or decimal string in ``[0, 2**128)``);
        ``ProducerClosedError`` after close. When the backlog is full, ``Block()`` waits (and
        raises ``BacklogFullError`` after its timeout), ``Raise()`` raises
        ``BacklogFullError``, ``Drop()`` returns a future failed with it.
        """
        return await self._accept(self.prepare(data, partition_key, explicit_hash_key))

    def prepare(
        self,
        data: bytes,
        partition_key: str,
        explicit_hash_key: int | str | None = None,
    ) -> PreparedRecord:
        """Validate a record without accepting it (no I/O; safe from any thread).

        Raises what ``put()`` raises for bad input, and ``ProducerClosedError`` when closed.
        """
        if self._state != "running":
            raise self._not_running()
        if not isinstance(data, bytes):
            if isinstance(data, bytearray | memoryview):
                data = bytes(data)
            else:
                raise ValidationError(
                    f"data must be bytes, got {type(data).__name__}"
                    + (" (encode the str first)" if isinstance(data, str) else "")
                )
        if not isinstance(partition_key, str):
            raise ValidationError(
                f"partition_key must be a str, got {type(partition_key).__name__}"
            )
        if not 1 <= len(partition_key) <= 256:
            raise ValidationError(
                f"partition_key must be 1 to 256 characters, got {len(partition_key)}"
            )
        if isinstance(explicit_hash_key, bool):
            raise ValidationError("explicit_hash_key must be an int or a decimal str, not bool")
        size = len(data) + len(partition_key.encode())
        if size > self.settings.max_record_size:
            raise ValidationError(
                f"record of {size} bytes (data + partition key) exceeds max_record_size "
                f"{self.settings.max_record_size}"
            )
        hash_key = aggregation.hash_key(partition_key, explicit_hash_key)
        ehk = None if explicit_hash_key is None else hash_key
        return PreparedRecord(ProducerRecord(data, partition_key, ehk), hash_key, size)

    def backlog_full(self, extra_records: int = 0, extra_bytes: int = 0) -> bool:
        """Whether the backlog (plus ``extra_*`` about to be added) is at its limits."""
        s = self.settings
        return (
            self._buffered_records + extra_records >= s.max_buffered_records
            or self._buffered_bytes + extra_bytes > s.max_buffered_bytes
        )

    async def _accept(self, prepared: PreparedRecord) -> asyncio.Future[PutResult]:
        """Apply the overflow policy and queue a prepared record (see ``put``)."""
        if self._state != "running":
            raise self._not_running()
        record, hash_key, size = prepared.record, prepared.hash_key, prepared.size
        s = self.settings
        if (
            self._buffered_records >= s.max_buffered_records
            or self._buffered_bytes + size > s.max_buffered_bytes
        ):
            overflow = s.overflow
            if isinstance(overflow, Raise):
                raise BacklogFullError(self._backlog_message())
            if isinstance(overflow, Drop):
                loop = asyncio.get_running_loop()
                future: asyncio.Future[PutResult] = loop.create_future()
                err = BacklogFullError(self._backlog_message())
                future.set_exception(err)
                self._metrics.user_records_dropped += 1
                self._notify_error(record, err)
                return future
            await self._wait_for_space(size, overflow)
        now = self._clock()
        future = asyncio.get_running_loop().create_future()
        gen = self._generation
        p = _Pending(
            record=record,
            hash_key=hash_key,
            size=size,
            future=future,
            created=now,
            deadline=now + s.record_ttl,
            generation=gen,
        )
        self._buffered_records += 1
        self._buffered_bytes += size
        self._unresolved[gen] = self._unresolved.get(gen, 0) + 1
        self._live.add(p)
        self._metrics.record_size.record_value(max(1, len(record.data)))
        self._enqueue(p, front=False)
        return future

    async def put_and_wait(
        self,
        data: bytes,
        partition_key: str,
        explicit_hash_key: int | str | None = None,
    ) -> PutResult:
        """``put()`` and wait for the result; raises the record's error if it failed."""
        return await (await self.put(data, partition_key, explicit_hash_key))

    async def flush(self) -> None:
        """Send everything accepted so far without waiting for linger; return when each of those
        records has its result (delivered or failed). Records put meanwhile are not waited for.
        """
        if not self._unresolved:
            return
        gen = self._generation
        self._generation += 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((gen, waiter))
        self._flushing += 1
        self._wake.set()
        try:
            await waiter
        finally:
            self._flushing -= 1

    def metrics(self) -> ProducerMetrics:
        """Cumulative metrics since the producer was created."""
        return self._metrics_past + self._metrics.snapshot(self._clock())

    @property
    def shard_map(self) -> ShardMap:
        """The producer's current view of the stream's open shards."""
        return self._map

    # -- internals: accepting --------------------------------------------------------------

    def _not_running(self) -> KinesioError:
        if self._fatal is not None:
            return ProducerClosedError(
                f"the producer stopped after an internal error: {self._fatal!r}"
            )
        if self._state == "new":
            return ProducerClosedError(
                "the producer is not started: use `async with AsyncProducer(...)` or await start()"
            )
        return ProducerClosedError("the producer is closed")

    def _backlog_message(self) -> str:
        s = self.settings
        return (
            f"producer backlog full ({self._buffered_records} records / "
            f"{self._buffered_bytes} bytes; limits {s.max_buffered_records} / "
            f"{s.max_buffered_bytes})"
        )

    async def _wait_for_space(self, size: int, policy: Block) -> None:
        s = self.settings
        try:
            async with asyncio.timeout(policy.timeout):
                while (
                    self._buffered_records >= s.max_buffered_records
                    or self._buffered_bytes + size > s.max_buffered_bytes
                ):
                    if self._state != "running":
                        raise self._not_running()
                    self._space.clear()
                    await self._space.wait()
        except TimeoutError:
            raise BacklogFullError(
                f"{self._backlog_message()}; no room after {policy.timeout} s"
            ) from None
        if self._state != "running":
            raise self._not_running()

    def _enqueue(self, p: _Pending, *, front: bool) -> None:
        shard = self._map.shard_for(p.hash_key)
        # No open shard covers the key only while the map is rebuilt: park it anywhere, the
        # rebuild re-routes every queued record.
        q = next(iter(self._queues.values())) if shard is None else self._queues[shard.shard_id]
        was_empty = self._queued_records == 0
        if front:
            q.queue.appendleft(p)
        else:
            q.queue.append(p)
        q.queued_bytes += p.size
        self._queued_records += 1
        self._queued_bytes += p.size
        s = self.settings
        if (
            was_empty
            or front
            or (q.queued_bytes >= s.max_aggregate_size if s.aggregate else False)
            or self._queued_records == s.max_batch_records
            or self._queued_bytes >= s.max_batch_bytes
        ):
            self._wake.set()

    # -- internals: resolving ----------------------------------------------------------------

    def _release(self, p: _Pending) -> None:
        self._live.discard(p)
        self._buffered_records -= 1
        self._buffered_bytes -= p.size
        left = self._unresolved[p.generation] - 1
        if left:
            self._unresolved[p.generation] = left
        else:
            del self._unresolved[p.generation]
            oldest = min(self._unresolved, default=None)
            for gen, waiter in list(self._flush_waiters):
                if oldest is None or oldest > gen:
                    self._flush_waiters.remove((gen, waiter))
                    if not waiter.done():
                        waiter.set_result(None)
        self._space.set()

    def _succeed(
        self, p: _Pending, shard_id: str, sequence_number: str, sub: int, now: float
    ) -> None:
        # Resolve before releasing: the future's callbacks must be scheduled ahead of a
        # flush() that the release may wake.
        if not p.future.done():
            p.future.set_result(PutResult(shard_id, sequence_number, sub, p.attempts))
        self._release(p)
        m = self._metrics
        m.user_records_put += 1
        m.user_bytes_put += len(p.record.data)
        m.latency_ms.record_value(max(1, int((now - p.created) * 1000)))
        m.attempts.record_value(max(1, p.attempts))

    def _fail_many(self, users: Sequence[_Pending], err: KinesioError) -> None:
        for p in users:
            self._metrics.user_records_failed += 1
            if not p.future.done():
                p.future.set_exception(err)
            self._release(p)
            self._notify_error(p.record, err)

    def _notify_error(self, record: ProducerRecord, err: KinesioError) -> None:
        self._events.emit(
            RecordFailed(
                partition_key=record.partition_key, error=str(err), error_type=type(err).__name__
            )
        )
        if self._on_error is None:
            return
        try:
            result = self._on_error(record, err)
            if inspect.isawaitable(result):
                self._spawn(_await_hook(result))
        except Exception:
            logger.exception("on_error hook raised for partition key %r", record.partition_key)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- internals: sending ------------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            self._wake.clear()
            timeout = self._dispatch(self._clock())
            if timeout is None:
                await self._wake.wait()
            elif timeout > 0:
                with suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        logger.error("producer sender for %r failed", self.stream_name, exc_info=exc)
        self._fatal = exc
        self._state = "closing"
        err = KinesioError(f"the producer stopped after an internal error: {exc!r}")
        for q in self._queues.values():
            self._fail_many(list(q.queue), err)
            q.queue.clear()
        self._space.set()

    def _dispatch(self, now: float) -> float | None:
        """Start as many requests as allowed; return seconds until it is worth looking again."""
        wait: float | None = None
        while self._in_flight < self._max_in_flight:
            if self.settings.ordered and any(
                n for epoch, n in self._in_flight_by_epoch.items() if epoch < self._map_epoch
            ):
                break  # records sent under the old shard map must land before newer ones go
            entries, hint = self._build_request(now)
            if hint is not None:
                wait = hint if wait is None else min(wait, hint)
            if not entries:
                break
            self._in_flight += 1
            self._in_flight_by_epoch[self._map_epoch] += 1
            for e in entries:
                e.shard.in_flight += 1
            task = asyncio.create_task(self._send(entries, self._map_epoch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return wait

    def _ready(self, now: float) -> float | None:
        """0 if a request should go now, else seconds until the oldest record's linger ends."""
        s = self.settings
        if self._queued_records == 0:
            return None
        if (
            self._flushing
            or self._state != "running"
            or self._queued_records >= s.max_batch_records
            or self._queued_bytes >= s.max_batch_bytes
        ):
            return 0.0
        oldest = min((q.queue[0].created for q in self._queues.values() if q.queue), default=now)
        if s.aggregate and any(
            q.queued_bytes >= s.max_aggregate_size for q in self._queues.values()
        ):
            return 0.0
        return max(0.0, oldest + s.linger - now)

    def _build_request(self, now: float) -> tuple[list[_Entry], float | None]:
        ready = self._ready(now)
        if ready is None or ready > 0:
            return [], ready
        s = self.settings
        entries: list[_Entry] = []
        request_bytes = 0
        wait: float | None = None
        queues = list(self._queues.values())
        n = len(queues)
        start = self._rr
        self._rr = (self._rr + 1) % max(1, n)
        for i in range(n):
            q = queues[(start + i) % n]
            if not q.queue:
                continue
            self._expire_heads(q, now)
            if not q.queue or (s.ordered and q.in_flight):
                continue
            if q.not_before > now:
                hint = q.not_before - now
                wait = hint if wait is None else min(wait, hint)
                continue
            while q.queue and len(entries) < s.max_batch_records:
                users, packed, nbytes = self._pack(q)
                if request_bytes + nbytes > s.max_batch_bytes:
                    return entries, 0.0  # this request is full; the next one takes the rest
                if not q.limiter.try_acquire(nbytes, now):
                    # Wait until the shard's tokens cover its queue (or a linger passes), not
                    # just the next record: a request per token would be tiny and costly.
                    hint = max(
                        q.limiter.wait_time(nbytes, now),
                        min(s.linger, q.limiter.wait_time(q.queued_bytes, now, len(q.queue))),
                    )
                    wait = hint if wait is None else min(wait, hint)
                    break
                for _ in users:
                    q.queue.popleft()
                taken = sum(p.size for p in users)
                q.queued_bytes -= taken
                self._queued_records -= len(users)
                self._queued_bytes -= taken
                for p in users:
                    p.attempts += 1
                entries.append(_Entry(q, users, self._entry(users, packed)))
                request_bytes += nbytes
                if s.ordered:
                    break
            if len(entries) >= s.max_batch_records:
                break
        return entries, wait

    def _pack(self, q: _ShardQueue) -> tuple[list[_Pending], _Packed, int]:
        """The next Kinesis record of ``q`` and its size, without removing anything from ``q``
        and without encoding it yet (the limiter may still say no)."""
        s = self.settings
        if s.aggregate and len(q.queue) > 1:
            builder = aggregation.AggregateBuilder(s.max_aggregate_size)
            users: list[_Pending] = []
            for p in q.queue:
                if not builder.try_add(p.record):
                    break
                users.append(p)
            if len(users) > 1:
                return users, builder, builder.size + len(users[0].record.partition_key.encode())
        head = q.queue[0]
        return [head], None, head.size

    @staticmethod
    def _entry(users: list[_Pending], packed: _Packed) -> PutRecordsEntry:
        head = users[0]
        if packed is not None:
            return PutRecordsEntry(packed.build(), head.record.partition_key, str(head.hash_key))
        r = head.record
        ehk = None if r.explicit_hash_key is None else str(r.explicit_hash_key)
        return PutRecordsEntry(r.data, r.partition_key, ehk)

    def _expire_heads(self, q: _ShardQueue, now: float) -> None:
        while q.queue and q.queue[0].deadline <= now:
            p = q.queue.popleft()
            q.queued_bytes -= p.size
            self._queued_records -= 1
            self._queued_bytes -= p.size
            self._fail_many([p], self._expired(p))

    def _expired(self, p: _Pending) -> RecordExpiredError:
        return RecordExpiredError(
            f"record not delivered after {p.attempts} attempt(s) within its TTL of "
            f"{self.settings.record_ttl} s (last error: {p.last_error or 'none'})",
            last_error=p.last_error,
            attempts=p.attempts,
        )

    async def _send(self, entries: list[_Entry], epoch: int) -> None:
        m = self._metrics
        m.put_records_calls += 1
        m.batch_size.record_value(len(entries))
        tallies: dict[str, _Tally] | None = {} if self._events.enabled else None
        error: str | None = None
        sent = answered = self._clock()
        try:
            try:
                try:
                    results = await self._kinesis_api().put_records(
                        self.stream_name, [e.entry for e in entries]
                    )
                finally:
                    answered = self._clock()
            except KinesioError as exc:
                error = getattr(exc, "code", "") or type(exc).__name__
                self._tally_failed(tallies, entries, error)
                if exc.retriable:
                    logger.debug("PutRecords failed (%s); retrying %d records", exc, len(entries))
                    if error in _THROTTLE_CODES:
                        self._emit_whole_call_throttle(entries)
                    now = self._clock()
                    for e in entries:
                        self._backoff(e.shard, now)
                        self._retry(e.users, error, now)
                else:
                    for e in entries:
                        self._fail_many(e.users, exc)
                return
            except asyncio.CancelledError:
                tallies = None  # closing: the records' fate is reported through their futures
                closed = ProducerClosedError(
                    "the producer was closed while this record's PutRecords call was in flight; "
                    "it may or may not have been written"
                )
                for e in entries:
                    self._fail_many(e.users, closed)
                raise
            except Exception as exc:
                logger.exception("unexpected error from PutRecords")
                error = type(exc).__name__
                self._tally_failed(tallies, entries, error)
                err = KinesioError(f"unexpected error from PutRecords: {exc!r}")
                err.__cause__ = exc
                for e in entries:
                    self._fail_many(e.users, err)
                return
            if len(results) != len(entries):
                error = "MissingResult"
                self._tally_failed(tallies, entries, error)
                err = KinesioError(
                    f"PutRecords answered {len(results)} results for {len(entries)} records"
                )
                for e in entries:
                    self._fail_many(e.users, err)
                return
            await self._handle_results(entries, results, epoch, tallies, sent)
        finally:
            self._in_flight -= 1
            self._in_flight_by_epoch[epoch] -= 1
            if not self._in_flight_by_epoch[epoch]:
                del self._in_flight_by_epoch[epoch]
            for e in entries:
                e.shard.in_flight -= 1
            self._wake.set()
            if tallies is not None:
                self._events.emit(
                    PutRecordsSent(
                        duration_ms=(answered - sent) * 1000.0,
                        error=error,
                        shards=tuple(t.freeze() for t in tallies.values()),
                    )
                )

    @staticmethod
    def _tally_failed(tallies: dict[str, _Tally] | None, entries: list[_Entry], code: str) -> None:
        if tallies is not None:
            for e in entries:
                _tally(tallies, e.shard.shard_id).failed(len(e.users), code)

    def _emit_whole_call_throttle(self, entries: list[_Entry]) -> None:
        per_shard = Counter(e.shard.shard_id for e in entries)
        for shard_id, records in per_shard.items():
            self._events.emit(Throttled(operation="PutRecords", shard_id=shard_id, records=records))

    async def _handle_results(
        self,
        entries: list[_Entry],
        results: list[PutRecordsResultEntry],
        epoch: int,
        tallies: dict[str, _Tally] | None = None,
        sent: float = 0.0,
    ) -> None:
        now = self._clock()
        m = self._metrics
        throttled: Counter[_ShardQueue] = Counter()
        failed: set[_ShardQueue] = set()
        misplaced: list[tuple[_Entry, PutRecordsResultEntry]] = []
        stale_map = False
        for e, r in zip(entries, results, strict=True):
            if r.error_code is None and r.shard_id is not None and r.sequence_number is not None:
                m.kinesis_records_put += 1
                tally = None
                if tallies is not None:
                    tally = _tally(tallies, r.shard_id)
                    tally.kinesis_records_put += 1
                    tally.kinesis_bytes_put += len(e.entry.data)
                if r.shard_id != e.shard.shard_id:
                    stale_map = True
                    if len(e.users) > 1:
                        # The aggregate was routed by its first record's hash key to a shard we
                        # did not predict: its other records may lie outside that shard's range,
                        # and consumers drop those. Decide per record once the map is fresh.
                        misplaced.append((e, r))
                        continue
                for i, p in enumerate(e.users):
                    self._succeed(
                        p, r.shard_id, r.sequence_number, i if len(e.users) > 1 else 0, now
                    )
                if tally is not None:
                    for p in e.users:
                        tally.delivered(p, sent, now)
            else:
                code = r.error_code or "MissingResult"
                if code in _THROTTLE_CODES:
                    m.throttled += 1
                    throttled[e.shard] += 1
                failed.add(e.shard)
                if tallies is not None:
                    _tally(tallies, e.shard.shard_id).failed(len(e.users), code)
                self._retry(e.users, code, now)
        if self._autosplit is not None:
            self._count_for_autosplit(entries, results)
        for q in failed:
            if q in throttled:
                q.limiter.on_throttled()
                self._events.emit(
                    Throttled(operation="PutRecords", shard_id=q.shard_id, records=throttled[q])
                )
            self._backoff(q, now)
        for e in entries:
            if e.shard not in failed:
                e.shard.backoff_level = 0
                e.shard.limiter.on_success()
        if stale_map:
            logger.debug("records landed on unexpected shards: refreshing the shard map")
            try:
                await self._refresh_shard_map(seen_epoch=epoch)
            except KinesioError as exc:
                logger.warning("shard map refresh failed: %s", exc)
        if misplaced:
            now = self._clock()
            for e, r in misplaced:
                assert r.shard_id is not None
                assert r.sequence_number is not None
                actual = self._map.get(r.shard_id)
                retry: list[_Pending] = []
                for i, p in enumerate(e.users):
                    if actual is not None and actual.contains(p.hash_key):
                        self._succeed(p, r.shard_id, r.sequence_number, i, now)
                        if tallies is not None:
                            _tally(tallies, r.shard_id).delivered(p, sent, now)
                    else:
                        retry.append(p)
                if tallies is not None:
                    _tally(tallies, r.shard_id).user_records_failed += len(retry)
                if retry:
                    self._retry(retry, "WrongShard", now)

    def _count_for_autosplit(
        self, entries: list[_Entry], results: list[PutRecordsResultEntry]
    ) -> None:
        """Feed the auto-split window: one call per Kinesis record, never per user record."""
        assert self._autosplit is not None
        add = self._autosplit.counts.add
        for e, r in zip(entries, results, strict=True):
            if r.error_code is None:
                entry = e.entry
                nbytes = len(entry.data) + len(entry.partition_key)
                add(e.shard.shard_id, e.users[0].hash_key, len(e.users), nbytes, throttled=False)
            elif r.error_code in _THROTTLE_CODES:
                add(e.shard.shard_id, e.users[0].hash_key, len(e.users), 0, throttled=True)

    def _retry(self, users: Sequence[_Pending], code: str, now: float) -> None:
        """Put failed records back at the front of their (re-predicted) shard queues."""
        max_attempts = self.settings.max_attempts
        for p in reversed(users):
            p.last_error = code
            if now >= p.deadline or (max_attempts is not None and p.attempts >= max_attempts):
                self._fail_many([p], self._expired(p))
            elif self._state == "closed":
                self._fail_many([p], ProducerClosedError("the producer is closed"))
            else:
                self._metrics.retries += 1
                self._enqueue(p, front=True)

    def _backoff(self, q: _ShardQueue, now: float) -> None:
        s = self.settings
        delay = min(s.max_retry_backoff, s.retry_backoff * (2**q.backoff_level))
        q.backoff_level = min(q.backoff_level + 1, 16)
        q.not_before = now + delay * (0.5 + self._rng.random() / 2)

    def _kinesis_api(self) -> KinesisAPI:
        if self._kinesis is None:
            raise ProducerClosedError("the producer is closed")
        return self._kinesis

    # -- internals: the shard map --------------------------------------------------------------

    async def _load_shard_map(self) -> None:
        shards = await self._kinesis_api().list_shards(self.stream_name)
        new = ShardMap(shards)
        if not len(new):
            raise ResourceNotFoundError(
                f"stream {self.stream_name!r} has no open shard",
                code="ResourceNotFoundException",
                operation="ListShards",
            )
        s = self.settings
        now = self._clock()
        old_queues = self._queues
        self._queues = {
            sh.shard_id: old_queues.get(sh.shard_id)
            or _ShardQueue(
                sh.shard_id,
                ShardLimiter(
                    s.shard_records_per_second * s.rate_limit,
                    s.shard_bytes_per_second * s.rate_limit,
                    now,
                    adaptive=s.adaptive,
                ),
            )
            for sh in new.open_shards
        }
        self._map = new
        self._map_epoch += 1
        moved = [p for q in old_queues.values() for p in q.queue]
        if any(q.shard_id not in self._queues for q in old_queues.values() if q.queue):
            # Re-route every queued record under the new map, keeping put order per key.
            for q in self._queues.values():
                q.queue.clear()
                q.queued_bytes = 0
            self._queued_records = self._queued_bytes = 0
            moved.sort(key=lambda p: p.created)
            for p in moved:
                self._enqueue(p, front=False)
        self._events.emit(ShardMapRefreshed(open_shards=len(new)))

    async def _refresh_shard_map(self, *, seen_epoch: int | None = None) -> None:
        async with self._refresh_lock:
            if seen_epoch is not None and self._map_epoch > seen_epoch:
                return  # refreshed by someone else since that request was sent
            await self._load_shard_map()
        self._wake.set()

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.shard_map_refresh_interval)
            try:
                await self._refresh_shard_map()
            except KinesioError as exc:
                logger.warning("periodic shard map refresh failed: %s", exc)

    # -- internals: metrics --------------------------------------------------------------------

    def _emit_metrics(self) -> None:
        now = self._clock()
        snapshot = self._metrics.snapshot(now)
        self._metrics_past = self._metrics_past + snapshot
        self._metrics = ProducerMetricsRecorder(now)
        if self._on_metrics is not None:
            try:
                result = self._on_metrics(snapshot)
                if inspect.isawaitable(result):
                    self._spawn(_await_hook(result))
            except Exception:
                logger.exception("on_metrics hook raised")

    async def _report_metrics_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.metrics_interval)
            self._emit_metrics()


async def _await_hook(result: Awaitable[object]) -> None:
    try:
        await result
    except Exception:
        logger.exception("producer hook raised")
