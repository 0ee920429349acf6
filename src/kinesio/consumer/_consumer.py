"""The asyncio consumer: leases from the coordinator, one fetcher and one stream per shard, and
the ways to drive them (a handler per record or per list, a KCL-style processor)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiobotocore.session import AioSession

from kinesio._aws import AioKinesis, AWSConfig
from kinesio._config import ConsumerSettings, FanOut
from kinesio._errors import KinesioError, ValidationError
from kinesio._kinesis import KinesisAPI
from kinesio._models import Record
from kinesio.consumer._batches import check_batch_arguments, consume_shard_batches
from kinesio.consumer._checkpointer import Checkpointer
from kinesio.consumer._concurrency import DeadLetterHook, HandlerPolicy, consume_shard
from kinesio.consumer._coordinator import LeaseCoordinator, LeaseHandle
from kinesio.consumer._fanout import FanOutFetcher, ensure_stream_consumer
from kinesio.consumer._fetcher import ShardFetcher
from kinesio.consumer._handlers import RecordHandler, consume_shard_plain
from kinesio.consumer._polling import PollingFetcher
from kinesio.consumer._processor import (
    RecordProcessor,
    run_processor,
)
from kinesio.consumer._shared import SharedShardList
from kinesio.consumer._stream import ShardStream
from kinesio.events import (
    Emitter,
    EventHook,
)
from kinesio.leases.base import LeaseStore
from kinesio.leases.dynamodb import DynamoDBLeaseStore

logger = logging.getLogger("kinesio.consumer")


def default_worker_id() -> str:
    """hostname:pid:random — unique per process, readable in the lease table."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def _then_done(work: Coroutine[Any, Any, None], stream: ShardStream) -> None:
    try:
        await work
    finally:
        try:
            # a lease being handed off is let go only after the final checkpoint above
            await stream._handle.finish_handoff()
        except KinesioError as exc:
            logger.warning("hand-off of %s: %s", stream.shard_id, exc)
        finally:
            stream.done.set()


@dataclass
class _Failure:
    error: BaseException | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class AsyncConsumer:
    """Consumes one stream as part of a group of workers sharing a KCL-compatible lease table.

    ``application_name`` names the group and (by default) its DynamoDB lease table. Run as many
    workers (processes, hosts) with the same application name as you like: they share the
    shards fairly through the lease table, take over the shards of a worker that dies after
    ``failover_time``, and hand shards over at once on graceful shutdown.

    Use as ``async with AsyncConsumer(...) as consumer:`` then :meth:`consume_with` (a handler
    per record), :meth:`run` (a KCL-style processor per shard) or :meth:`shards` (a stream per
    shard). AWS access follows boto3 as for :class:`kinesio.AsyncProducer`; ``lease_store``
    (e.g. ``kinesio.leases.MemoryLeaseStore()``) and ``kinesis`` replace the defaults.
    ``on_event`` receives a :class:`kinesio.events.DiagnosticEvent` for every lease and shard
    step (acquired, renewed, lost, released, blocked on parent, started, ended, checkpoint),
    every read (records fetched, subscription renewed, throttled) and every processed batch.
    """

    def __init__(
        self,
        stream_name: str,
        *,
        application_name: str,
        settings: ConsumerSettings | None = None,
        lease_store: LeaseStore | None = None,
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
        if not application_name:
            raise ValidationError("application_name must be a non-empty string")
        self.stream_name = stream_name
        self.application_name = application_name
        self.settings = settings or ConsumerSettings()
        self.worker_id = self.settings.worker_id or default_worker_id()
        self._aws = aws or AWSConfig(
            region_name=region_name, endpoint_url=endpoint_url, session=session
        )
        self._kinesis = kinesis
        self._owns_kinesis = kinesis is None
        self._store = lease_store
        self._owns_store = lease_store is None
        self._coordinator: LeaseCoordinator
        self._shared: SharedShardList | None = None  # one ListShards for all fetchers
        self._consumer_arn: str | None = None
        self._stopping = asyncio.Event()
        self._started = False
        self._closed = False
        self.streams: dict[str, ShardStream] = {}

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
        """Connect, create the lease table if missing and allowed, sync shards to leases, and
        start taking leases. Raises ``ResourceNotFoundError`` for a missing stream or (with
        ``create_lease_table=False``) table, ``ConfigurationError`` for a table with the wrong
        key schema."""
        if self._started:
            return
        self._started = True
        try:
            if self._kinesis is None:
                self._kinesis = await AioKinesis.create(self._aws)
            summary = await self._kinesis.describe_stream_summary(self.stream_name)
            if self._store is None:
                self._store = DynamoDBLeaseStore(
                    self.settings.lease_table_name or self.application_name,
                    aws=self._aws,
                    create_if_missing=self.settings.create_lease_table,
                )
            if isinstance(self.settings.retrieval, FanOut):
                self._consumer_arn = await ensure_stream_consumer(
                    self._kinesis, summary.stream_arn, self.settings.retrieval.consumer_name
                )
            self._coordinator = LeaseCoordinator(
                self._store,
                self._kinesis,
                self.stream_name,
                self.worker_id,
                self.settings,
                events=self._events,
            )
            await self._coordinator.start()
        except BaseException:
            await self._close_clients()
            raise
        logger.info("worker %s consuming %r", self.worker_id, self.stream_name)

    def request_shutdown(self) -> None:
        """Ask every shard to stop after its current batch (safe from a handler)."""
        self._stopping.set()
        if self._started:
            self._coordinator.stop_taking()

    async def aclose(self) -> None:
        """Graceful shutdown: stop taking leases, let each shard finish its batch and
        checkpoint, then release every lease so other workers resume at once."""
        if self._closed:
            return
        self._closed = True
        self.request_shutdown()
        if self._started:
            pending = [s.done.wait() for s in self.streams.values()]
            if pending:
                try:
                    async with asyncio.timeout(self.settings.shutdown_timeout):
                        await asyncio.gather(*pending)
                except TimeoutError:
                    logger.warning("shards still busy after %.0f s", self.settings.shutdown_timeout)
            await self._coordinator.stop()
        await self._close_clients()

    async def _close_clients(self) -> None:
        if self._owns_store and self._store is not None:
            await self._store.aclose()
        if self._owns_kinesis and self._kinesis is not None:
            kinesis, self._kinesis = self._kinesis, None
            await kinesis.aclose()

    async def _fetcher_for(self, handle: LeaseHandle) -> ShardFetcher:
        assert self._kinesis is not None
        if self._shared is None:
            self._shared = SharedShardList(self._kinesis)
        shard = await self._coordinator.shard(handle.key, handle.lease)
        s = self.settings
        timestamp = s.initial_position.timestamp
        if isinstance(s.retrieval, FanOut):
            assert self._consumer_arn is not None
            return FanOutFetcher(
                self._shared,
                self._consumer_arn,
                shard,
                handle.lease.checkpoint,
                stream_name=self.stream_name,
                initial_timestamp=timestamp,
                max_prefetch_records=s.max_prefetch_records,
                max_prefetch_bytes=s.max_prefetch_bytes,
                events=self._events,
            )
        return PollingFetcher(
            self._shared,
            self.stream_name,
            shard,
            handle.lease.checkpoint,
            polling=s.retrieval,
            initial_timestamp=timestamp,
            max_prefetch_records=s.max_prefetch_records,
            max_prefetch_bytes=s.max_prefetch_bytes,
            events=self._events,
        )

    # -- the three ways to consume ---------------------------------------------------------

    async def shards(self) -> AsyncGenerator[ShardStream, None]:
        """Yield a :class:`ShardStream` for each lease as this worker acquires it; ends at
        shutdown. Process each stream in its own task (records of one shard arrive in order)."""
        if not self._started:
            await self.start()
        while not self._stopping.is_set():
            handle = await self._coordinator.acquired.get()
            if handle is None or self._stopping.is_set():
                return
            if not handle.active:
                continue
            stream = ShardStream(self, handle)
            self.streams[handle.key] = stream
            yield stream

    async def _drive(self, work: Callable[[ShardStream], Coroutine[Any, Any, None]]) -> None:
        failure = _Failure()

        def done(task: asyncio.Task[None]) -> None:
            failure.tasks.discard(task)
            if not task.cancelled() and task.exception() is not None and failure.error is None:
                failure.error = task.exception()
                logger.error("shard processing failed; shutting down", exc_info=failure.error)
                self.request_shutdown()

        cancelled = False
        try:
            async for stream in self.shards():
                stream._driven = True
                task = asyncio.create_task(
                    _then_done(work(stream), stream), name=f"shard-{stream.shard_id}"
                )
                failure.tasks.add(task)
                task.add_done_callback(done)
        except asyncio.CancelledError:
            # Cancelling consume_with / run is a graceful stop: every shard finishes its batch
            # and checkpoints, within shutdown_timeout; then the cancellation goes on.
            cancelled = True
            self.request_shutdown()
            raise
        finally:
            if failure.tasks:
                timeout = self.settings.shutdown_timeout if cancelled else None
                _, late = await asyncio.wait(set(failure.tasks), timeout=timeout)
                for task in late:
                    logger.warning("%s did not stop within shutdown_timeout", task.get_name())
                    task.cancel()
                if late:
                    await asyncio.wait(late)
        if failure.error is not None:
            raise failure.error

    async def consume_with(
        self,
        handler: RecordHandler,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        in_thread: bool = False,
        max_concurrency: int = 1,
        max_in_flight_records: int = 1000,
        max_in_flight_bytes: int = 16 * 1024 * 1024,
        retries: int = 0,
        retry_backoff: float = 0.1,
        max_retry_backoff: float = 10.0,
        dead_letter: DeadLetterHook | None = None,
    ) -> None:
        """Call ``handler(record)`` (sync or async) for every record of every leased shard,
        until :meth:`request_shutdown` / :meth:`aclose` or a handler error.

        With ``in_thread=True`` a sync handler runs in a worker thread, a batch at a time, so
        that a blocking handler does not hold up the other shards (the blocking
        :class:`kinesio.Consumer` does this).

        Checkpoints after every ``checkpoint_every`` records or ``checkpoint_interval``
        seconds per shard, and at shutdown and lease hand-over, only ever up to records the
        handler has returned from. A checkpoint that fails with a retriable AWS error is logged
        and written with the next one (at worst, records after the last checkpoint written are
        delivered again). If the handler raises, the consumer shuts down gracefully
        (checkpointing what was processed, releasing its leases) and re-raises the error: the
        failed record is delivered again to whichever worker takes the shard next. Cancelling
        the call is a graceful stop too: every shard finishes its batch and checkpoints (a
        handler still running after ``shutdown_timeout`` is cancelled), then the
        ``CancelledError`` propagates.

        **Concurrency inside a shard** (opt-in): with ``max_concurrency`` > 1, records of
        different partition keys of one shard are handled at once (async handlers as tasks, sync
        ones in a pool of ``max_concurrency`` threads per shard), records of one key strictly in
        order. At most ``max_in_flight_records`` records and ``max_in_flight_bytes`` data bytes
        per shard are admitted and unfinished at a time; reading that shard waits beyond that.
        Checkpoints only ever go to the end of the longest prefix of records that have all
        finished (with sub-sequence numbers for aggregated records), never past a record still
        running or failed. At shutdown and before a shard end every admitted record finishes
        first; on lease loss running handlers are cancelled and nothing is checkpointed.

        **Failures without a dead shard** (opt-in): a record whose handler raises is tried again
        up to ``retries`` times, after ``retry_backoff`` seconds doubling up to
        ``max_retry_backoff`` (each retry is a :class:`kinesio.events.HandlerRetried` event).
        If it still fails and ``dead_letter`` is given, ``dead_letter(record, error, attempts)``
        (sync or async) is called, and once it returns the record counts as processed (a
        :class:`kinesio.events.RecordDeadLettered` event); without ``dead_letter`` — the default —
        the consumer stops as described above, so nothing is skipped unless you chose a hook.
        A ``dead_letter`` hook that raises stops the consumer the same way.
        """
        if checkpoint_every < 1 or checkpoint_interval <= 0:
            raise ValidationError("checkpoint_every must be >= 1 and checkpoint_interval > 0")
        policy = HandlerPolicy(
            max_concurrency=max_concurrency,
            max_in_flight_records=max_in_flight_records,
            max_in_flight_bytes=max_in_flight_bytes,
            retries=retries,
            retry_backoff=retry_backoff,
            max_retry_backoff=max_retry_backoff,
            dead_letter=dead_letter,
        )
        if not policy.plain:

            async def governed(stream: ShardStream) -> None:
                await consume_shard(
                    stream,
                    handler,
                    policy,
                    checkpoint_every=checkpoint_every,
                    checkpoint_interval=checkpoint_interval,
                    in_thread=in_thread,
                    events=self._events,
                    stop=self.request_shutdown,
                )

            await self._drive(governed)
            return

        async def work(stream: ShardStream) -> None:
            await consume_shard_plain(
                stream,
                handler,
                checkpoint_every=checkpoint_every,
                checkpoint_interval=checkpoint_interval,
                in_thread=in_thread,
            )

        await self._drive(work)

    async def consume_batches_with(
        self,
        handler: Callable[[list[Record]], object],
        *,
        max_records: int = 100,
        max_wait: float = 1.0,
        retries: int = 0,
        retry_backoff: float = 0.1,
        max_retry_backoff: float = 10.0,
        dead_letter: DeadLetterHook | None = None,
        in_thread: bool = False,
    ) -> None:
        """Call ``handler(records)`` (sync or async) with lists of one shard's records, in
        order, until :meth:`request_shutdown` / :meth:`aclose` or a handler error.

        A list holds up to ``max_records`` records; a shorter one is handed over once its
        oldest record has waited ``max_wait`` seconds (also while the shard is idle), and
        before the shard end. Each list is checkpointed (its last record, sub-sequence number
        included) as soon as the handler returns from it: one lease-table write per list, so
        raise ``max_records`` for busy shards. A failing list is retried whole (``retries``,
        ``retry_backoff`` doubling up to ``max_retry_backoff``); if it still fails,
        ``dead_letter(record, error, attempts)`` is called for each of its records, or without
        a hook the consumer stops as :meth:`consume_with` does (the list is delivered again to
        the next owner). ``in_thread=True`` runs a sync handler in a worker thread.
        """
        check_batch_arguments(max_records, max_wait)
        HandlerPolicy(
            retries=retries, retry_backoff=retry_backoff, max_retry_backoff=max_retry_backoff
        )  # validates the retry arguments

        async def work(stream: ShardStream) -> None:
            await consume_shard_batches(
                stream,
                handler,
                max_records=max_records,
                max_wait=max_wait,
                retries=retries,
                retry_backoff=retry_backoff,
                max_retry_backoff=max_retry_backoff,
                dead_letter=dead_letter,
                in_thread=in_thread,
                events=self._events,
            )

        await self._drive(work)

    async def run(
        self,
        processor_factory: Callable[[], RecordProcessor],
        *,
        wrap_checkpointer: Callable[[Checkpointer], object] | None = None,
        in_thread: bool = False,
    ) -> None:
        """Drive a KCL-style :class:`RecordProcessor` (one per shard, from
        ``processor_factory``) until shutdown or a processor error (see :meth:`consume_with`).

        ``wrap_checkpointer`` and ``in_thread`` serve the blocking facade: processors get a
        blocking checkpointer and their sync methods run in a worker thread.
        """

        async def work(stream: ShardStream) -> None:
            await run_processor(
                stream,
                processor_factory,
                wrap_checkpointer=wrap_checkpointer,
                in_thread=in_thread,
            )

        await self._drive(work)
