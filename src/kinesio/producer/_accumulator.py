"""The accumulator: accepted records in per-shard queues, the backlog and the overflow policy.

``accept()`` applies the overflow policy and appends a record to its predicted shard's queue.
The sender (``_sender.py``) takes records from the front of the queues (``pack()`` says what the
next Kinesis record of a shard would be) and hands results back through ``release()`` /
``fail_many()``, which shrink the backlog and wake ``flush()`` waiters.

Two bounds apply at ``accept()``: the whole backlog (``max_buffered_records`` /
``max_buffered_bytes``) and each shard's share of it. A shard's queue may hold what its rate
limit sends within half the record TTL (never less than one full request): past that, records
would expire in the queue behind the others, so the overflow policy applies to them instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterable

from kinesio import aggregation
from kinesio._config import Block, Drop, ProducerSettings, Raise
from kinesio._errors import BacklogFullError, KinesioError, RecordExpiredError
from kinesio._models import ProducerRecord
from kinesio.events import Emitter, RecordFailed
from kinesio.metrics import ProducerMetricsRecorder
from kinesio.producer._limiter import ShardLimiter
from kinesio.producer._pending import RELEASED, ResultFuture, _Pending, _ShardQueue
from kinesio.producer._shard_map import ShardMap

logger = logging.getLogger("kinesio.producer")

ErrorHook = Callable[[ProducerRecord, KinesioError], object]


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
        not_running: Callable[[], KinesioError],
    ) -> None:
        self.settings = settings
        self.not_running = not_running  # the error for a put() that finds the producer closed
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
        self.flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.flushing = 0
        self.wake = asyncio.Event()  # the sender's: something may be ready to send
        # The shard map as parallel lists of hash ranges and queues, for add()'s lookup.
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._by_index: list[_ShardQueue] = []
        s = settings
        self._shard_floor = s.max_batch_records  # a shard queue shorter than this always fits
        self._max_records, self._max_bytes = s.max_buffered_records, s.max_buffered_bytes
        self._batch_records, self._batch_bytes = s.max_batch_records, s.max_batch_bytes
        self._aggregate, self._aggregate_size = s.aggregate, s.max_aggregate_size
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
        opened = new.open_shards  # sorted by starting hash key
        self._starts = [sh.starting_hash_key for sh in opened]
        self._ends = [sh.ending_hash_key for sh in opened]
        self._by_index = [self.queues[sh.shard_id] for sh in opened]
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

    def _queue_for(self, hash_key: int) -> _ShardQueue:
        shard = self.map.shard_for(hash_key)
        # No open shard covers the key only while the map is rebuilt: park it anywhere, the
        # rebuild re-routes every queued record.
        return next(iter(self.queues.values())) if shard is None else self.queues[shard.shard_id]

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

    def _room(self, q: _ShardQueue, size: int) -> str | None:
        """None if a record of ``size`` bytes for ``q`` fits, else why not."""
        s = self.settings
        if (
            self.buffered_records >= s.max_buffered_records
            or self.buffered_bytes + size > s.max_buffered_bytes
        ):
            return (
                f"producer backlog full ({self.buffered_records} records / "
                f"{self.buffered_bytes} bytes; limits {s.max_buffered_records} / "
                f"{s.max_buffered_bytes})"
            )
        return q.over_ttl_bound(size, s)

    def add(
        self,
        data: bytes,
        partition_key: str,
        explicit_hash_key: int | None,
        hash_key: int,
        size: int,
        future: ResultFuture | None,
    ) -> bool:
        """Queue a validated record whose result goes to ``future``, or apply the overflow
        policy: ``Raise()`` raises ``BacklogFullError``, ``Drop()`` fails ``future`` with it.
        False only under ``Block()`` with no room: then ``await accept(...)`` waits for it."""
        # The shard lookup and the bounds, inlined: this runs once per user record.
        i = bisect_right(self._starts, hash_key) - 1
        q = self._by_index[i] if i >= 0 and hash_key <= self._ends[i] else self._queue_for(hash_key)
        queue = q.queue
        n = len(queue)
        if (
            (n >= self._shard_floor and (n >= q.room_len or q.queued_bytes + size > q.room_bytes))
            or self.buffered_records >= self._max_records
            or self.buffered_bytes + size > self._max_bytes
        ) and (full := self._room(q, size)) is not None:
            overflow = self.settings.overflow
            if isinstance(overflow, Raise):
                raise BacklogFullError(full)
            if not isinstance(overflow, Drop):
                return False
            err = BacklogFullError(full)
            if future is not None:
                future.set_exception(err)
            self.metrics.user_records_dropped += 1
            self.notify_error(ProducerRecord(data, partition_key, explicit_hash_key), err)
            return True
        gen = self.generation
        queue.append(
            _Pending(
                data, partition_key, explicit_hash_key, hash_key, size, future, self.clock(), gen
            )
        )
        self.buffered_records += 1
        self.buffered_bytes += size
        unresolved = self.unresolved
        unresolved[gen] = unresolved.get(gen, 0) + 1
        sizes = self.metrics.record_size_counts
        n = len(data) or 1
        sizes[n] = sizes.get(n, 0) + 1
        q.queued_bytes += size
        queued = self.queued_records = self.queued_records + 1
        self.queued_bytes += size
        if (
            queued == 1
            or queued == self._batch_records
            or (self._aggregate and q.queued_bytes >= self._aggregate_size)
            or self.queued_bytes >= self._batch_bytes
        ):
            self.wake.set()
        return True

    async def accept(
        self,
        data: bytes,
        partition_key: str,
        explicit_hash_key: int | None,
        hash_key: int,
        size: int,
        future: ResultFuture | None,
    ) -> None:
        """``add()``, waiting for room under ``Block()`` (raising ``BacklogFullError`` after
        its timeout, or the closed error if the producer closes meanwhile)."""
        while not self.add(data, partition_key, explicit_hash_key, hash_key, size, future):
            await self._wait_for_space(hash_key, size, self.settings.overflow)

    async def _wait_for_space(self, hash_key: int, size: int, policy: object) -> None:
        timeout = policy.timeout if isinstance(policy, Block) else None
        full: str | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not self.running:
                        raise self.not_running()
                    full = self._room(self._queue_for(hash_key), size)
                    if full is None:
                        return
                    self.space.clear()
                    await self.space.wait()
        except TimeoutError:
            raise BacklogFullError(f"{full}; no room after {timeout} s") from None

    def _append(self, q: _ShardQueue, p: _Pending) -> None:
        was_empty = self.queued_records == 0
        q.queue.append(p)
        q.queued_bytes += p.size
        self.queued_records += 1
        self.queued_bytes += p.size
        s = self.settings
        if (
            was_empty
            or (q.queued_bytes >= s.max_aggregate_size if s.aggregate else False)
            or self.queued_records == s.max_batch_records
            or self.queued_bytes >= s.max_batch_bytes
        ):
            self.wake.set()

    def enqueue(self, p: _Pending, *, front: bool) -> None:
        """Queue an accepted record again (a retry at the front, a re-route at the back)."""
        q = self._queue_for(p.hash_key)
        if not front:
            self._append(q, p)
            return
        q.queue.appendleft(p)
        q.queued_bytes += p.size
        self.queued_records += 1
        self.queued_bytes += p.size
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
            add = builder._add_fields  # the records were checked at put()
            users: list[_Pending] = []
            for p in q.queue:
                if not add(p.data, p.partition_key, p.explicit_hash_key):
                    break
                users.append(p)
            if len(users) > 1:
                return users, builder, builder.size + len(users[0].partition_key.encode())
        head = q.queue[0]
        return [head], None, head.size

    def take(self, q: _ShardQueue, users: list[_Pending]) -> None:
        """Remove ``users`` (the front of ``q``, as ``pack`` gave them) for sending."""
        popleft = q.queue.popleft
        taken = 0
        for p in users:
            popleft()
            taken += p.size
            p.attempts += 1
        q.queued_bytes -= taken
        self.queued_records -= len(users)
        self.queued_bytes -= taken

    def expire_heads(self, q: _ShardQueue, now: float) -> None:
        oldest_alive = now - self.settings.record_ttl
        while q.queue and q.queue[0].created <= oldest_alive:
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

    # -- resolving -----------------------------------------------------------------------------

    def release(self, users: Iterable[_Pending]) -> None:
        """Take resolved records out of the backlog; wake flush() and blocked put() calls.

        Called once per request with all its resolved records (not once per record)."""
        unresolved = self.unresolved
        records = nbytes = 0
        emptied = False
        for p in users:
            records += 1
            nbytes += p.size
            gen = p.generation
            p.generation = RELEASED
            left = unresolved[gen] - 1
            if left:
                unresolved[gen] = left
            else:
                del unresolved[gen]
                emptied = True
        if not records:
            return
        self.buffered_records -= records
        self.buffered_bytes -= nbytes
        if emptied and self.flush_waiters:
            oldest = min(unresolved, default=None)
            for gen, waiter in list(self.flush_waiters):
                if oldest is None or oldest > gen:
                    self.flush_waiters.remove((gen, waiter))
                    if not waiter.done():
                        waiter.set_result(None)
        self.space.set()

    def fail_many(self, users: list[_Pending], err: KinesioError) -> None:
        """Fail accepted, unreleased records with ``err``: their futures (unless the caller
        cancelled one), the backlog, the ``on_error`` hook and a ``RecordFailed`` event."""
        self.metrics.user_records_failed += len(users)
        for p in users:
            f = p.future
            if f is not None and not f.done():
                f.set_exception(err)
        self.release(users)
        for p in users:
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
