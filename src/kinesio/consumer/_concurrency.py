"""Processing one shard's records concurrently, in order per partition key, with retries and a
dead-letter hook — and checkpoints that never pass a record still running or failed.

:class:`Frontier` is the checkpoint rule: it only ever yields the last record of the longest
prefix of records that have all finished. :class:`KeyedRunner` runs the handler: records of
different partition keys at once (up to ``max_concurrency``), records of one key strictly one
after another, at most ``max_in_flight_records`` / ``max_in_flight_bytes`` per shard admitted at
a time (``submit`` waits for room, which holds the fetcher back). :func:`consume_shard` is
``AsyncConsumer.consume_with``'s per-shard loop over them.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kinesio._errors import KinesioError, LeaseLost, ValidationError
from kinesio._models import Record
from kinesio.events import Emitter, HandlerRetried, RecordDeadLettered

if TYPE_CHECKING:
    from kinesio.consumer._checkpointer import Checkpointer
    from kinesio.consumer._stream import ShardStream

logger = logging.getLogger("kinesio.consumer")

#: ``dead_letter(record, error, attempts)``: called (sync or async) with a record whose handler
#: failed ``attempts`` times; when it returns, the record counts as processed.
DeadLetterHook = Callable[[Record, BaseException, int], object]


@dataclass(frozen=True, slots=True)
class HandlerPolicy:
    """How ``consume_with`` runs a handler (see :meth:`kinesio.AsyncConsumer.consume_with`).

    ``max_concurrency``: records of different partition keys of one shard handled at once (1:
    one record at a time, in shard order). ``max_in_flight_records`` / ``max_in_flight_bytes``
    (data bytes): per shard, how much may be admitted and not yet finished; reading waits
    beyond that. ``retries``: how many times a failing record is tried again, after
    ``retry_backoff`` seconds, doubling up to ``max_retry_backoff``. ``dead_letter``: called
    with a record that still fails; without it, a record that still fails stops the consumer.
    """

    max_concurrency: int = 1
    max_in_flight_records: int = 1000
    max_in_flight_bytes: int = 16 * 1024 * 1024
    retries: int = 0
    retry_backoff: float = 0.1
    max_retry_backoff: float = 10.0
    dead_letter: DeadLetterHook | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValidationError(f"max_concurrency must be >= 1, not {self.max_concurrency}")
        if self.max_in_flight_records < 1 or self.max_in_flight_bytes < 1:
            raise ValidationError("max_in_flight_records and max_in_flight_bytes must be >= 1")
        if self.retries < 0:
            raise ValidationError(f"retries must be >= 0, not {self.retries}")
        if self.retry_backoff < 0 or self.max_retry_backoff < self.retry_backoff:
            raise ValidationError("need 0 <= retry_backoff <= max_retry_backoff (seconds)")

    @property
    def plain(self) -> bool:
        """True for today's one-record-at-a-time loop with no retries and no dead letters."""
        return self.max_concurrency == 1 and self.retries == 0 and self.dead_letter is None


async def with_retries(
    call: Callable[[], Awaitable[None]],
    policy: HandlerPolicy,
    on_retry: Callable[[int, Exception, float], None],
) -> tuple[Exception | None, int]:
    """Await ``call()`` until it succeeds or ``policy.retries`` retries have failed, sleeping
    ``retry_backoff`` seconds (doubling, at most ``max_retry_backoff``) in between and telling
    ``on_retry(attempt, error, backoff)`` before each retry. Returns the last error (None on
    success) and the number of attempts."""
    attempts = 0
    backoff = policy.retry_backoff
    while True:
        attempts += 1
        try:
            await call()
            return None, attempts
        except Exception as exc:
            if attempts > policy.retries:
                return exc, attempts
            on_retry(attempts, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, policy.max_retry_backoff)


def retried(record: Record, attempt: int, exc: BaseException) -> HandlerRetried:
    return HandlerRetried(
        shard_id=record.shard_id,
        sequence_number=record.sequence_number,
        sub_sequence_number=record.sub_sequence_number,
        attempt=attempt,
        error=str(exc),
        error_type=type(exc).__name__,
    )


def dead_lettered(record: Record, attempts: int, exc: BaseException) -> RecordDeadLettered:
    return RecordDeadLettered(
        shard_id=record.shard_id,
        sequence_number=record.sequence_number,
        sub_sequence_number=record.sub_sequence_number,
        attempts=attempts,
        error=str(exc),
        error_type=type(exc).__name__,
    )


async def checkpoint_staged(cp: Checkpointer, shard_id: str) -> None:
    """Write the staged position, if any. A retriable AWS error is logged and left for the next
    checkpoint to write; :class:`LeaseLost` and other errors are raised."""
    if not cp.pending:
        return
    try:
        await cp.checkpoint()
    except KinesioError as exc:
        if isinstance(exc, LeaseLost) or not exc.retriable:
            raise
        logger.warning("checkpoint of %s failed: %s", shard_id, exc)


class Frontier:
    """The longest finished prefix of a shard's records, in the order they were added."""

    __slots__ = ("_done", "_entries")

    def __init__(self) -> None:
        # each entry: [record, finished]; finished entries at the left are popped by advance()
        self._entries: collections.deque[list[Any]] = collections.deque()
        self._done = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, record: Record) -> list[Any]:
        """Register the next record; returns its slot for :meth:`finish`."""
        slot: list[Any] = [record, False]
        self._entries.append(slot)
        return slot

    def finish(self, slot: list[Any]) -> None:
        slot[1] = True

    def advance(self) -> tuple[Record | None, int]:
        """How far the finished prefix grew since the last call: its new last record (None:
        it did not grow) and how many records it grew by.

        Every record up to and including that one has finished; nothing after it is assumed to.
        """
        entries = self._entries
        last: Record | None = None
        count = 0
        while entries and entries[0][1]:
            last = entries.popleft()[0]
            count += 1
        return last, count


class KeyedRunner:
    """Runs ``handler`` over one shard's records: concurrently across partition keys, in order
    within a key, bounded, with retries and the dead-letter hook of ``policy``.

    The first record that fails for good (no retries left, no dead-letter hook, or the hook
    raised) becomes :attr:`error`: nothing new is started after it, ``on_failure()`` is called
    (the consumer then shuts down), and :meth:`submit` and :meth:`drain` raise it.
    """

    def __init__(
        self,
        handler: Callable[[Record], object],
        policy: HandlerPolicy,
        *,
        executor: Executor | None,
        events: Emitter,
        on_failure: Callable[[], object] = lambda: None,
    ) -> None:
        self._handler = handler
        self._on_failure = on_failure
        self._policy = policy
        self._executor = executor
        self._events = events
        self._sync = not inspect.iscoroutinefunction(handler)
        self.frontier = Frontier()
        self._slots = asyncio.Semaphore(policy.max_concurrency)
        self._queues: dict[str, collections.deque[tuple[Record, list[Any]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._records = 0
        self._bytes = 0
        self._room = asyncio.Condition()
        self.error: BaseException | None = None

    @property
    def in_flight(self) -> int:
        """Records admitted and not finished yet."""
        return self._records

    def _key(self, record: Record) -> str:
        # one key for everything keeps a concurrency of 1 in shard order
        return record.partition_key if self._policy.max_concurrency > 1 else ""

    async def submit(self, record: Record) -> None:
        """Admit ``record`` once there is room (one record is always admitted when nothing is
        in flight, however big), and start it unless its key is busy."""
        policy = self._policy
        size = len(record.data)
        async with self._room:
            await self._room.wait_for(
                lambda: (
                    self.error is not None
                    or self._records == 0
                    or (
                        self._records < policy.max_in_flight_records
                        and self._bytes + size <= policy.max_in_flight_bytes
                    )
                )
            )
        if self.error is not None:
            raise self.error
        self._records += 1
        self._bytes += size
        slot = self.frontier.add(record)
        key = self._key(record)
        queue = self._queues.get(key)
        if queue is not None:
            queue.append((record, slot))
            return
        self._queues[key] = collections.deque([(record, slot)])
        task = asyncio.create_task(self._chain(key), name=f"records-{record.shard_id}-{key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _chain(self, key: str) -> None:
        """Handle a key's records one after another until its queue is empty."""
        queue = self._queues[key]
        try:
            while queue and self.error is None:
                record, slot = queue[0]
                async with self._slots:
                    if self.error is not None:
                        return
                    ok = await self._attempt(record)
                if not ok:
                    return
                queue.popleft()
                self.frontier.finish(slot)
                await self._release(len(record.data))
        finally:
            if self._queues.get(key) is queue:
                del self._queues[key]

    async def _release(self, size: int) -> None:
        self._records -= 1
        self._bytes -= size
        async with self._room:
            self._room.notify_all()

    async def _call(self, record: Record) -> None:
        if self._sync:
            if self._executor is None:
                self._handler(record)
            else:
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._handler, record
                )
            return
        result = self._handler(record)
        if inspect.isawaitable(result):
            await result

    async def _attempt(self, record: Record) -> bool:
        """Handle one record with retries; False when it failed for good (``error`` set)."""

        def on_retry(attempt: int, exc: Exception, backoff: float) -> None:
            self._events.emit(retried(record, attempt, exc))
            logger.warning(
                "handler failed on %s/%s (attempt %d of %d), retrying in %.2f s: %s",
                record.sequence_number,
                record.sub_sequence_number,
                attempt,
                self._policy.retries + 1,
                backoff,
                exc,
            )

        error, attempts = await with_retries(lambda: self._call(record), self._policy, on_retry)
        if error is None:
            return True
        return await self._dead_letter(record, error, attempts)

    async def _dead_letter(self, record: Record, exc: Exception, attempts: int) -> bool:
        hook = self._policy.dead_letter
        if hook is None:
            await self._fail(exc)
            return False
        try:
            result = hook(record, exc, attempts)
            if inspect.isawaitable(result):
                await result
        except Exception as hook_error:
            logger.error("dead_letter hook raised for %s", record.sequence_number)
            await self._fail(hook_error)
            return False
        self._events.emit(dead_lettered(record, attempts, exc))
        return True

    async def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            self._on_failure()
        # wake a submit() waiting for room: it raises the error
        async with self._room:
            self._room.notify_all()

    async def drain(self) -> None:
        """Wait until every admitted record has finished (or, after a failure, until the
        records already running have); raises the failure."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        if self.error is not None:
            raise self.error

    async def cancel(self) -> None:
        """Cancel what is running (a sync handler already in its thread runs to its end, but
        nothing waits for it or counts it as finished)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))


async def consume_shard(
    stream: ShardStream,
    handler: Callable[[Record], object],
    policy: HandlerPolicy,
    *,
    checkpoint_every: int,
    checkpoint_interval: float,
    in_thread: bool,
    events: Emitter,
    stop: Callable[[], object],
) -> None:
    """``consume_with``'s loop for one shard under a :class:`HandlerPolicy` that is not plain.

    Checkpoints (every ``checkpoint_every`` finished records or ``checkpoint_interval``
    seconds, at shutdown and before the shard end) go to the end of the finished prefix only.
    On lease loss the running handlers are cancelled and nothing is checkpointed; at shutdown
    and at the shard end everything admitted finishes first. A sync handler runs in a pool of
    ``max_concurrency`` threads when ``max_concurrency > 1`` or ``in_thread``, else inline.
    A record that fails for good calls ``stop()`` (the consumer's graceful shutdown) and is
    re-raised once the records already running have finished and the prefix is checkpointed.
    """
    executor: ThreadPoolExecutor | None = None
    if not inspect.iscoroutinefunction(handler) and (policy.max_concurrency > 1 or in_thread):
        executor = ThreadPoolExecutor(
            max_workers=policy.max_concurrency, thread_name_prefix=f"kinesio-{stream.shard_id}"
        )
    cp = stream.checkpointer
    runner = KeyedRunner(handler, policy, executor=executor, events=events, on_failure=stop)
    finished = 0
    last = time.monotonic()

    def stage() -> None:
        nonlocal finished
        record, count = runner.frontier.advance()
        if record is not None:
            cp.stage(record)
            finished += count

    async def flush() -> None:
        stage()
        await checkpoint_staged(cp, stream.shard_id)

    async def drain_then_flush() -> None:
        await runner.drain()
        await flush()

    stream._before_shard_end = drain_then_flush
    try:
        async for batch in stream.records():
            for record in batch:
                if stream.lost:
                    raise LeaseLost(f"lease {stream.shard_id} lost mid-batch")
                await runner.submit(record)
            stage()
            now = time.monotonic()
            if finished >= checkpoint_every or now - last >= checkpoint_interval:
                await flush()
                finished = 0
                last = now
        if stream.lost:
            await runner.cancel()
        elif not stream.ended:
            await drain_then_flush()
    except LeaseLost:
        await runner.cancel()
        logger.info("lease %s lost while processing; stopping that shard", stream.shard_id)
    except BaseException as exc:
        if stream.lost:
            await runner.cancel()
            raise
        try:
            # the records already running finish, then the finished prefix is checkpointed
            await runner.drain()
        except Exception as other:
            if other is not exc:
                logger.error("handler failed on %s while stopping: %r", stream.shard_id, other)
        try:
            await flush()
        except (LeaseLost, KinesioError) as flush_error:
            logger.warning("final checkpoint of %s failed: %s", stream.shard_id, flush_error)
        raise
    finally:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
