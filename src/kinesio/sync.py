"""Blocking facades: the asyncio core run on a private event-loop thread.

Each call is forwarded to that thread (an anyio blocking portal); no logic lives here, so the
blocking and the asyncio APIs behave the same. Safe to call from many threads at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Self

import anyio.from_thread
from aiobotocore.session import AioSession
from anyio.from_thread import BlockingPortal, start_blocking_portal

from kinesio._aws import AWSConfig
from kinesio._config import ProducerSettings, Raise
from kinesio._errors import BacklogFullError, ProducerClosedError
from kinesio._kinesis import KinesisAPI
from kinesio._models import ExtendedSequenceNumber, PutResult, Record
from kinesio.consumer._checkpointer import Checkpointer, PreparedCheckpoint
from kinesio.consumer._consumer import AsyncConsumer
from kinesio.consumer._processor import RecordProcessor
from kinesio.events import EventHook
from kinesio.metrics import ProducerMetrics
from kinesio.producer._blocking_future import PutFuture
from kinesio.producer._producer import AsyncProducer, ErrorHook, MetricsHook
from kinesio.producer._validate import Checked


class Producer:
    """The blocking producer: :class:`AsyncProducer` behind a thread-safe, blocking API.

    The constructor connects (raising what ``AsyncProducer.start()`` raises); use it as a
    context manager or call :meth:`close`. ``put()`` validates in the calling thread (raising
    ``ValidationError`` / ``ProducerClosedError`` at once) and returns a
    ``concurrent.futures.Future`` of the record's :class:`PutResult`. Records cross to the
    event-loop thread in batches, so a put costs no thread round trip. Backpressure: ``put()``
    blocks while ``max_buffered_records`` records wait to cross (and, under ``Block()``, while
    the producer's backlog is full); under ``Raise()`` it raises ``BacklogFullError`` when the
    whole backlog is full, under ``Drop()`` the returned future fails with it. A record refused
    on the loop thread by its shard's bound (see ``AsyncProducer.put``) fails its future with
    ``BacklogFullError`` under ``Raise()`` too: it has already crossed. The futures are
    :class:`concurrent.futures.Future` objects, running from the start (``cancel()`` returns
    False). Arguments are those of :class:`AsyncProducer`.
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
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal("asyncio")
        self._portal = self._portal_cm.__enter__()
        self._closed = False
        # Two parallel lists rather than a list of pairs: one object fewer per record for the
        # garbage collector to walk while records wait to cross.
        self._inbox: list[Checked] = []
        self._inbox_futures: list[PutFuture] = []
        self._cond = threading.Condition()
        self._drain_scheduled = False
        self._drain_task: asyncio.Task[None] | None = None
        try:
            self._core = AsyncProducer(
                stream_name,
                settings=settings,
                on_error=on_error,
                on_metrics=on_metrics,
                kinesis=kinesis,
                aws=aws,
                region_name=region_name,
                endpoint_url=endpoint_url,
                session=session,
                on_event=on_event,
            )
            self._inbox_limit = self._core.settings.max_buffered_records
            self._portal.call(self._core.start)
            self._loop: asyncio.AbstractEventLoop = self._portal.call(_running_loop)
        except BaseException:
            self._closed = True
            self._portal_cm.__exit__(None, None, None)
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def stream_name(self) -> str:
        return self._core.stream_name

    def put(
        self, data: bytes, partition_key: str, explicit_hash_key: int | str | None = None
    ) -> concurrent.futures.Future[PutResult]:
        """Accept one record (see ``AsyncProducer.put``); returns a future of its result."""
        if self._closed:
            raise ProducerClosedError("the producer is closed")
        checked = self._core._check(data, partition_key, explicit_hash_key)
        # Running from the start (cancel() returns False): the loop thread resolves it directly.
        target = PutFuture()
        with self._cond:
            if isinstance(self._core.settings.overflow, Raise) and self._core.backlog_full(
                len(self._inbox), checked[4]
            ):
                raise BacklogFullError("producer backlog full")
            while len(self._inbox) >= self._inbox_limit and not self._closed:
                self._cond.wait()
            if self._closed:
                raise ProducerClosedError("the producer is closed")
            self._inbox.append(checked)
            self._inbox_futures.append(target)
            wake = not self._drain_scheduled
            self._drain_scheduled = True
        if wake:
            self._loop.call_soon_threadsafe(self._start_drain)
        return target

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        """Loop side: hand the records put by other threads to the asyncio core, in order."""
        while True:
            with self._cond:
                batch, self._inbox = self._inbox, []
                targets, self._inbox_futures = self._inbox_futures, []
                if not batch:
                    self._drain_scheduled = False
                    return
                self._cond.notify_all()
            offer, accept = self._core._offer, self._core._accept
            for checked, target in zip(batch, targets, strict=True):
                # The core resolves ``target`` itself: no asyncio future, no callback between.
                try:
                    if not offer(checked, target):
                        await accept(checked, target)
                except BaseException as exc:
                    target.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise

    async def _drained(self) -> None:
        while self._drain_task is not None and not self._drain_task.done():
            await asyncio.shield(self._drain_task)

    def put_and_wait(
        self, data: bytes, partition_key: str, explicit_hash_key: int | str | None = None
    ) -> PutResult:
        """Put one record and block until it is delivered; raises its error if it failed."""
        return self.put(data, partition_key, explicit_hash_key).result()

    def flush(self) -> None:
        """Block until every record accepted so far has its result."""
        self._portal.call(self._flush)

    async def _flush(self) -> None:
        await self._drained()
        await self._core.flush()
        # the records' futures are resolved; let their hand-over callbacks (already queued on
        # the loop) run before the caller looks at its concurrent futures
        await asyncio.sleep(0)

    def metrics(self) -> ProducerMetrics:
        """Cumulative metrics since the producer was created."""
        return self._portal.call(self._metrics)

    async def _metrics(self) -> ProducerMetrics:
        return self._core.metrics()

    def close(self, timeout: float | None = None) -> None:
        """Deliver everything accepted, then stop (see ``AsyncProducer.aclose``)."""
        if self._closed:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        try:
            self._portal.call(self._close, timeout)
        finally:
            self._portal_cm.__exit__(None, None, None)

    async def _close(self, timeout: float | None) -> None:
        await self._drained()
        await self._core.aclose(timeout)
        await asyncio.sleep(0)  # as in _flush


def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


class BlockingCheckpointer:
    """The blocking face of a :class:`kinesio.Checkpointer`, for processors run by
    :class:`Consumer` (their methods run in a worker thread)."""

    def __init__(self, checkpointer: Checkpointer) -> None:
        self._checkpointer = checkpointer
        self.shard_id = checkpointer.shard_id

    @property
    def last_checkpoint(self) -> ExtendedSequenceNumber:
        return self._checkpointer.last_checkpoint

    def stage(self, record: Record) -> None:
        """Mark ``record`` processed (no I/O)."""
        self._checkpointer.stage(record)

    def checkpoint(self, record: Record | ExtendedSequenceNumber | None = None) -> None:
        """Write the checkpoint and block until done; raises :class:`kinesio.LeaseLost` if the
        lease is no longer held (see ``Checkpointer.checkpoint``)."""
        anyio.from_thread.run(self._checkpointer.checkpoint, record)

    @property
    def pending_checkpoint(self) -> ExtendedSequenceNumber | None:
        """See ``Checkpointer.pending_checkpoint``."""
        return self._checkpointer.pending_checkpoint

    def prepare_checkpoint(
        self, record: Record | ExtendedSequenceNumber | None = None
    ) -> BlockingPreparedCheckpoint:
        """Write a pending checkpoint and block until done (see
        ``Checkpointer.prepare_checkpoint``); ``commit()`` on the result makes it the
        checkpoint."""
        prepared = anyio.from_thread.run(self._checkpointer.prepare_checkpoint, record)
        return BlockingPreparedCheckpoint(prepared)


class BlockingPreparedCheckpoint:
    """The blocking face of a ``PreparedCheckpoint``."""

    def __init__(self, prepared: PreparedCheckpoint) -> None:
        self._prepared = prepared
        self.position = prepared.position

    def commit(self) -> None:
        """Make the pending checkpoint the checkpoint; blocks until written (see
        ``PreparedCheckpoint.commit``)."""
        anyio.from_thread.run(self._prepared.commit)


class Consumer:
    """The blocking consumer: :class:`AsyncConsumer` on a private event-loop thread.

    Arguments are those of :class:`AsyncConsumer`. :meth:`consume_with` and :meth:`run` block
    until shutdown; called from the main thread they turn SIGTERM and SIGINT into a graceful
    shutdown (finish the batch, checkpoint, release the leases). A sync handler runs in a worker
    thread a batch at a time, so a slow handler on one shard does not stall the others.
    """

    def __init__(self, stream_name: str, *, application_name: str, **kwargs: Any) -> None:
        self._args = (stream_name, application_name, kwargs)
        self._portal: BlockingPortal | None = None
        self._core: AsyncConsumer | None = None
        self._shutdown_requested = False

    def consume_with(
        self,
        handler: Callable[[Record], object],
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        max_concurrency: int = 1,
        max_in_flight_records: int = 1000,
        max_in_flight_bytes: int = 16 * 1024 * 1024,
        retries: int = 0,
        retry_backoff: float = 0.1,
        max_retry_backoff: float = 10.0,
        dead_letter: Callable[[Record, BaseException, int], object] | None = None,
    ) -> None:
        """Call ``handler(record)`` for every record until shutdown (see
        ``AsyncConsumer.consume_with``, also for concurrency inside a shard, retries and
        ``dead_letter``); re-raises the handler's error after shutting down. The handler runs
        in worker threads (``max_concurrency`` per shard); ``dead_letter`` runs on the event
        loop's thread, so it must be quick or async."""

        async def go(core: AsyncConsumer) -> None:
            await core.consume_with(
                handler,
                checkpoint_every=checkpoint_every,
                checkpoint_interval=checkpoint_interval,
                in_thread=True,
                max_concurrency=max_concurrency,
                max_in_flight_records=max_in_flight_records,
                max_in_flight_bytes=max_in_flight_bytes,
                retries=retries,
                retry_backoff=retry_backoff,
                max_retry_backoff=max_retry_backoff,
                dead_letter=dead_letter,
            )

        self._run(go)

    def consume_batches_with(
        self,
        handler: Callable[[list[Record]], object],
        *,
        max_records: int = 100,
        max_wait: float = 1.0,
        retries: int = 0,
        retry_backoff: float = 0.1,
        max_retry_backoff: float = 10.0,
        dead_letter: Callable[[Record, BaseException, int], object] | None = None,
    ) -> None:
        """Call ``handler(records)`` with lists of one shard's records until shutdown (see
        ``AsyncConsumer.consume_batches_with``); the handler runs in a worker thread, each
        list is checkpointed when it returns."""

        async def go(core: AsyncConsumer) -> None:
            await core.consume_batches_with(
                handler,
                max_records=max_records,
                max_wait=max_wait,
                retries=retries,
                retry_backoff=retry_backoff,
                max_retry_backoff=max_retry_backoff,
                dead_letter=dead_letter,
                in_thread=True,
            )

        self._run(go)

    def run(self, processor_factory: Callable[[], RecordProcessor]) -> None:
        """Drive a KCL-style processor per shard until shutdown (see ``AsyncConsumer.run``).

        Sync methods run in a worker thread and get a :class:`BlockingCheckpointer`.
        """

        async def go(core: AsyncConsumer) -> None:
            await core.run(
                processor_factory, wrap_checkpointer=BlockingCheckpointer, in_thread=True
            )

        self._run(go)

    def request_shutdown(self) -> None:
        """Ask the consumer to stop gracefully; safe from any thread or a signal handler."""
        self._shutdown_requested = True
        portal, core = self._portal, self._core
        if portal is not None and core is not None:
            portal.start_task_soon(self._request, core)

    @staticmethod
    async def _request(core: AsyncConsumer) -> None:
        core.request_shutdown()

    def _run(self, body: Callable[[AsyncConsumer], Awaitable[None]]) -> None:
        stream_name, application_name, kwargs = self._args

        async def main() -> None:
            core = AsyncConsumer(stream_name, application_name=application_name, **kwargs)
            self._core = core
            try:
                await core.start()
                if self._shutdown_requested:
                    core.request_shutdown()
                await body(core)
            finally:
                await core.aclose()

        previous: dict[signal.Signals, Any] = {}
        with start_blocking_portal("asyncio") as portal:
            self._portal = portal
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT):
                    previous[sig] = signal.signal(sig, lambda *_: self.request_shutdown())
            try:
                portal.call(main)
            finally:
                for sig, old in previous.items():
                    signal.signal(sig, old)
                self._portal = None
