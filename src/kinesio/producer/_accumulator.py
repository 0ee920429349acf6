"""The accumulator: accepted records in per-shard queues, the backlog and the overflow policy.

``accept()`` applies the overflow policy and appends a record to its predicted shard's queue.
The sender (``_sender.py``) takes records from the front of the queues (``pack()`` says what the
next Kinesis record of a shard would be) and hands results back through ``succeed()`` /
``fail_many()``, which release the backlog and wake ``flush()`` waiters.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from kinesio import aggregation
from kinesio._config import Block, Drop, ProducerSettings, Raise
from kinesio._errors import BacklogFullError, KinesioError, RecordExpiredError
from kinesio._models import ProducerRecord, PutResult
from kinesio.events import Emitter, RecordFailed
from kinesio.metrics import ProducerMetricsRecorder
from kinesio.producer._limiter import ShardLimiter
from kinesio.producer._shard_map import ShardMap

logger = logging.getLogger("kinesio.producer")

ErrorHook = Callable[[ProducerRecord, KinesioError], object]


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


Packed = aggregation.AggregateBuilder | None  # an aggregate to build, or a lone record


class Accumulator:
    """Per-shard queues of accepted records and the backlog accounting around them.

    Not thread-safe: everything runs on the producer's event loop.
    """

    def __init__(
        self,
        settings: ProducerSettings,
        events: Emitter,
        on_error: ErrorHook | None,
        clock: Callable[[], float],
        spawn: Callable[[Awaitable[None]], None],
        metrics: ProducerMetricsRecorder,
    ) -> None:
        self.settings = settings
        self.events = events
        self.on_error = on_error
        self.clock = clock
        self.spawn = spawn
        self.metrics = metrics
        self.running = False  # accepting records; False while closing (send everything now)
        self.closed = False
        self.map = ShardMap(())
        self.map_epoch = 0
        self.queues: dict[str, _ShardQueue] = {}
        self.queued_records = 0
        self.queued_bytes = 0
        self.buffered_records = 0
        self.buffered_bytes = 0
        # Unresolved records per flush generation: flush() waits for the generations before it
        # without adding a callback to every future (that cost ~10 µs a record at 100k).
        self.generation = 0
        self.unresolved: dict[int, int] = {}
        # Every accepted, unresolved record: aclose() fails whatever is still here at the end,
        # so a record no path resolved (a request cancelled before it ran) cannot vanish.
        self.live: set[_Pending] = set()
        self.flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.flushing = 0
        self.wake = asyncio.Event()  # the sender's: something may be ready to send
        self.space = asyncio.Event()  # blocked put() calls': the backlog shrank

    # -- the shard map -------------------------------------------------------------------------

    def set_map(self, new: ShardMap) -> None:
        """Switch to ``new``: keep the queues of shards still open, re-route the others."""
        s = self.settings
        now = self.clock()
        old_queues = self.queues
        self.queues = {
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
        self.map = new
        self.map_epoch += 1
        moved = [p for q in old_queues.values() for p in q.queue]
        if any(q.shard_id not in self.queues for q in old_queues.values() if q.queue):
            # Re-route every queued record under the new map, keeping put order per key.
            for q in self.queues.values():
                q.queue.clear()
                q.queued_bytes = 0
            self.queued_records = self.queued_bytes = 0
            moved.sort(key=lambda p: p.created)
            for p in moved:
                self.enqueue(p, front=False)

    def held_back(self) -> dict[str, int]:
        """Per shard, the queued user records its rate limiter cannot admit within ``linger``
        (the shard is asked for more than its limit); read once per auto-split window."""
        now, linger = self.clock(), self.settings.linger
        return {
            q.shard_id: len(q.queue)
            for q in self.queues.values()
            if q.queue and q.limiter.wait_time(q.queued_bytes, now, len(q.queue)) > linger
        }

    # -- accepting -----------------------------------------------------------------------------

    def backlog_full(self, extra_records: int = 0, extra_bytes: int = 0) -> bool:
        """Whether the backlog (plus ``extra_*`` about to be added) is at its limits."""
        s = self.settings
        return (
            self.buffered_records + extra_records >= s.max_buffered_records
            or self.buffered_bytes + extra_bytes > s.max_buffered_bytes
        )

    def backlog_message(self) -> str:
        s = self.settings
        return (
            f"producer backlog full ({self.buffered_records} records / "
            f"{self.buffered_bytes} bytes; limits {s.max_buffered_records} / "
            f"{s.max_buffered_bytes})"
        )

    async def accept(
        self, prepared: PreparedRecord, not_running: Callable[[], KinesioError]
    ) -> asyncio.Future[PutResult]:
        """Apply the overflow policy and queue a prepared record (see ``AsyncProducer.put``)."""
        record, hash_key, size = prepared.record, prepared.hash_key, prepared.size
        s = self.settings
        if (
            self.buffered_records >= s.max_buffered_records
            or self.buffered_bytes + size > s.max_buffered_bytes
        ):
            overflow = s.overflow
            if isinstance(overflow, Raise):
                raise BacklogFullError(self.backlog_message())
            if isinstance(overflow, Drop):
                loop = asyncio.get_running_loop()
                future: asyncio.Future[PutResult] = loop.create_future()
                err = BacklogFullError(self.backlog_message())
                future.set_exception(err)
                self.metrics.user_records_dropped += 1
                self.notify_error(record, err)
                return future
            await self._wait_for_space(size, overflow, not_running)
        now = self.clock()
        future = asyncio.get_running_loop().create_future()
        gen = self.generation
        p = _Pending(
            record=record,
            hash_key=hash_key,
            size=size,
            future=future,
            created=now,
            deadline=now + s.record_ttl,
            generation=gen,
        )
        self.buffered_records += 1
        self.buffered_bytes += size
        self.unresolved[gen] = self.unresolved.get(gen, 0) + 1
        self.live.add(p)
        self.metrics.record_size.record_value(max(1, len(record.data)))
        self.enqueue(p, front=False)
        return future

    async def _wait_for_space(
        self, size: int, policy: Block, not_running: Callable[[], KinesioError]
    ) -> None:
        s = self.settings
        try:
            async with asyncio.timeout(policy.timeout):
                while (
                    self.buffered_records >= s.max_buffered_records
                    or self.buffered_bytes + size > s.max_buffered_bytes
                ):
                    if not self.running:
                        raise not_running()
                    self.space.clear()
                    await self.space.wait()
        except TimeoutError:
            raise BacklogFullError(
                f"{self.backlog_message()}; no room after {policy.timeout} s"
            ) from None
        if not self.running:
            raise not_running()

    def enqueue(self, p: _Pending, *, front: bool) -> None:
        shard = self.map.shard_for(p.hash_key)
        # No open shard covers the key only while the map is rebuilt: park it anywhere, the
        # rebuild re-routes every queued record.
        q = next(iter(self.queues.values())) if shard is None else self.queues[shard.shard_id]
        was_empty = self.queued_records == 0
        if front:
            q.queue.appendleft(p)
        else:
            q.queue.append(p)
        q.queued_bytes += p.size
        self.queued_records += 1
        self.queued_bytes += p.size
        s = self.settings
        if (
            was_empty
            or front
            or (q.queued_bytes >= s.max_aggregate_size if s.aggregate else False)
            or self.queued_records == s.max_batch_records
            or self.queued_bytes >= s.max_batch_bytes
        ):
            self.wake.set()

    # -- flush ---------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every record accepted so far has its result (see ``AsyncProducer``)."""
        if not self.unresolved:
            return
        gen = self.generation
        self.generation += 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.flush_waiters.append((gen, waiter))
        self.flushing += 1
        self.wake.set()
        try:
            await waiter
        finally:
            self.flushing -= 1

    # -- what the sender takes -----------------------------------------------------------------

    def ready(self, now: float) -> float | None:
        """0 if a request should go now, else seconds until the oldest record's linger ends."""
        s = self.settings
        if self.queued_records == 0:
            return None
        if (
            self.flushing
            or not self.running
            or self.queued_records >= s.max_batch_records
            or self.queued_bytes >= s.max_batch_bytes
        ):
            return 0.0
        oldest = min((q.queue[0].created for q in self.queues.values() if q.queue), default=now)
        if s.aggregate and any(
            q.queued_bytes >= s.max_aggregate_size for q in self.queues.values()
        ):
            return 0.0
        return max(0.0, oldest + s.linger - now)

    def pack(self, q: _ShardQueue) -> tuple[list[_Pending], Packed, int]:
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

    def take(self, q: _ShardQueue, users: list[_Pending]) -> None:
        """Remove ``users`` (the front of ``q``, as ``pack`` gave them) for sending."""
        for _ in users:
            q.queue.popleft()
        taken = sum(p.size for p in users)
        q.queued_bytes -= taken
        self.queued_records -= len(users)
        self.queued_bytes -= taken
        for p in users:
            p.attempts += 1

    def expire_heads(self, q: _ShardQueue, now: float) -> None:
        while q.queue and q.queue[0].deadline <= now:
            p = q.queue.popleft()
            q.queued_bytes -= p.size
            self.queued_records -= 1
            self.queued_bytes -= p.size
            self.fail_many([p], self.expired(p))

    def expired(self, p: _Pending) -> KinesioError:
        return RecordExpiredError(
            f"record not delivered after {p.attempts} attempt(s) within its TTL of "
            f"{self.settings.record_ttl} s (last error: {p.last_error or 'none'})",
            last_error=p.last_error,
            attempts=p.attempts,
        )

    def fail_queued(self, err: KinesioError) -> None:
        """Fail every queued record with ``err`` (closing)."""
        for q in self.queues.values():
            self.fail_many(list(q.queue), err)
            q.queue.clear()
            q.queued_bytes = 0
        self.queued_records = self.queued_bytes = 0

    def fail_orphans(self, err: KinesioError) -> None:
        """Fail every accepted record no path resolved (a request cancelled mid-way)."""
        orphans = [p for p in self.live if not p.future.done()]
        if orphans:
            self.fail_many(orphans, err)

    # -- resolving -----------------------------------------------------------------------------

    def _release(self, p: _Pending) -> None:
        self.live.discard(p)
        self.buffered_records -= 1
        self.buffered_bytes -= p.size
        left = self.unresolved[p.generation] - 1
        if left:
            self.unresolved[p.generation] = left
        else:
            del self.unresolved[p.generation]
            oldest = min(self.unresolved, default=None)
            for gen, waiter in list(self.flush_waiters):
                if oldest is None or oldest > gen:
                    self.flush_waiters.remove((gen, waiter))
                    if not waiter.done():
                        waiter.set_result(None)
        self.space.set()

    def succeed(
        self, p: _Pending, shard_id: str, sequence_number: str, sub: int, now: float
    ) -> None:
        # Resolve before releasing: the future's callbacks must be scheduled ahead of a
        # flush() that the release may wake.
        if not p.future.done():
            p.future.set_result(PutResult(shard_id, sequence_number, sub, p.attempts))
        self._release(p)
        m = self.metrics
        m.user_records_put += 1
        m.user_bytes_put += len(p.record.data)
        m.latency_ms.record_value(max(1, int((now - p.created) * 1000)))
        m.attempts.record_value(max(1, p.attempts))

    def fail_many(self, users: Sequence[_Pending], err: KinesioError) -> None:
        for p in users:
            self.metrics.user_records_failed += 1
            if not p.future.done():
                p.future.set_exception(err)
            self._release(p)
            self.notify_error(p.record, err)

    def notify_error(self, record: ProducerRecord, err: KinesioError) -> None:
        self.events.emit(
            RecordFailed(
                partition_key=record.partition_key, error=str(err), error_type=type(err).__name__
            )
        )
        if self.on_error is None:
            return
        try:
            result = self.on_error(record, err)
            if inspect.isawaitable(result):
                self.spawn(await_hook(result))
        except Exception:
            logger.exception("on_error hook raised for partition key %r", record.partition_key)


async def await_hook(result: Awaitable[object]) -> None:
    try:
        await result
    except Exception:
        logger.exception("producer hook raised")
