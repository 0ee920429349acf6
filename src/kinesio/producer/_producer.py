"""The asyncio producer: the public ``AsyncProducer`` over an accumulator and a sender.

The send path, by file: ``put()`` here validates a record (``_validate.py``) and hands it to
the accumulator (``_accumulator.py``), which predicts its shard from the shard map
(``_shard_map.py``) and appends it to that shard's queue (``_pending.py``: the per-record and
per-shard objects), or applies the overflow policy. The sender (``_sender.py``) builds
PutRecords requests under the per-shard limiters (``_requests.py``, ``_limiter.py``), sends
them, resolves the futures from the answers and retries what failed. This module owns the
lifecycle; ``_upkeep.py`` keeps the shard map current and reports the metrics.
``kinesio.sync.Producer`` is the same core behind a blocking API (its futures:
``_blocking_future.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from types import TracebackType
from typing import Self

from aiobotocore.session import AioSession

from kinesio._aws import AioKinesis, AWSConfig
from kinesio._config import ProducerSettings
from kinesio._errors import (
    ConfigurationError,
    KinesioError,
    ProducerClosedError,
    ResourceInUseError,
    ValidationError,
)
from kinesio._kinesis import KinesisAdminAPI, KinesisAPI
from kinesio._models import ProducerRecord, PutResult
from kinesio.events import Emitter, EventHook
from kinesio.metrics import ProducerMetrics, ProducerMetricsRecorder
from kinesio.producer._accumulator import Accumulator, ErrorHook
from kinesio.producer._autosplit import AutoSplitter
from kinesio.producer._pending import ResultFuture
from kinesio.producer._sender import Sender
from kinesio.producer._shard_map import ShardMap
from kinesio.producer._upkeep import MetricsHook, MetricsReporter, ShardMapKeeper
from kinesio.producer._validate import Checked, PreparedRecord, check

__all__ = ["AsyncProducer", "ErrorHook", "MetricsHook", "PreparedRecord"]

logger = logging.getLogger("kinesio.producer")


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
        self._clock = time.monotonic
        self._state = "new"  # new -> starting -> running -> closing -> closed
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._fatal: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop  # the loop start() ran in
        self._acc = Accumulator(
            self.settings,
            self._events,
            on_error,
            self._clock,
            self._spawn,
            ProducerMetricsRecorder(self._clock()),
            self._not_running,
        )
        self._shards = ShardMapKeeper(stream_name, self._acc, self._events, self._kinesis_api)
        self._reporter = MetricsReporter(self._acc, on_metrics, self._clock, self._spawn)
        self._sender = Sender(
            self._acc, stream_name, self._events, self._kinesis_api, self._shards.refresh
        )
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
            await self._shards.load()
            if self.settings.auto_split is not None:
                self._autosplit = self._new_autosplitter(self._kinesis)
                self._sender.autosplit = self._autosplit
        except BaseException:
            self._state = "closed"
            self._acc.closed = True
            await self._close_client()
            raise
        s = self.settings
        self._sender.max_in_flight = s.max_in_flight or min(24, max(4, 2 * len(self._acc.map)))
        self._loop = asyncio.get_running_loop()
        self._state = "running"
        self._acc.running = True
        sender = asyncio.create_task(
            self._sender.run(), name=f"kinesio-producer-{self.stream_name}"
        )
        sender.add_done_callback(self._sender_done)
        self._background = [
            sender,
            asyncio.create_task(self._shards.run(s.shard_map_refresh_interval)),
            asyncio.create_task(self._reporter.run(s.metrics_interval)),
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
            shard_of=lambda shard_id: self._acc.map.get(shard_id),
            open_shards=lambda: self._acc.map.open_shards,
            refresh=self._shards.refresh,
            clock=self._clock,
            held_back=self._acc.held_back,
        )

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
            self._acc.closed = True
            return
        acc = self._acc
        self._state = "closing"
        acc.running = False
        acc.space.set()  # wake blocked put() calls so that they raise ProducerClosedError
        try:
            async with asyncio.timeout(timeout):
                await self.flush()
        except TimeoutError:
            logger.warning(
                "producer for %r closing after %.1f s with %d records undelivered",
                self.stream_name,
                timeout,
                acc.buffered_records,
            )
        closed: KinesioError = ProducerClosedError(
            "the producer was closed before this record was delivered"
        )
        acc.fail_queued(closed)
        requests = self._sender.tasks | self._hook_tasks
        for task in requests:
            task.cancel()
        await asyncio.gather(*requests, return_exceptions=True)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        # A request task cancelled before its first step never ran its own failure path, and
        # one cancelled while handling an answer may hold records it had not resolved yet.
        orphans = self._sender.orphaned()
        if orphans:
            acc.fail_many(orphans, closed)
        if self._autosplit is not None:
            await self._autosplit.aclose()
        self._state = "closed"
        acc.closed = True
        self._reporter.emit()
        await self._close_client()

    async def _close_client(self) -> None:
        if self._owns_kinesis and self._kinesis is not None:
            kinesis, self._kinesis = self._kinesis, None
            await kinesis.aclose()

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        logger.error("producer sender for %r failed", self.stream_name, exc_info=exc)
        self._fatal = exc
        self._state = "closing"
        self._acc.running = False
        err = KinesioError(f"the producer stopped after an internal error: {exc!r}")
        self._acc.fail_queued(err)
        orphans = self._sender.orphaned()  # taken for a request that never started
        if orphans:
            self._acc.fail_many(orphans, err)
        self._acc.space.set()

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
        ``ProducerClosedError`` after close. When the backlog is full — in all, or for the
        record's shard, which may queue what its rate limit sends within half the record TTL
        (never less than ``max_batch_records``), so that accepted records do not expire in
        the queue — ``Block()`` waits (and raises ``BacklogFullError`` after its timeout),
        ``Raise()`` raises ``BacklogFullError``, ``Drop()`` returns a future failed with it.
        The future may be left unawaited: nothing is lost, and failures also reach
        ``on_error``.
        """
        if self._state != "running":
            raise self._not_running()
        checked = check(data, partition_key, explicit_hash_key, self.settings.max_record_size)
        future: asyncio.Future[PutResult] = self._loop.create_future()
        if not self._acc.add(*checked, future):
            await self._acc.accept(*checked, future)
        return future

    async def submit(
        self,
        data: bytes,
        partition_key: str,
        explicit_hash_key: int | str | None = None,
    ) -> None:
        """Accept one record as ``put()`` does, without a per-record result.

        For callers that never look at a record's :class:`PutResult`: no future is made, which
        saves about a third of a record's CPU (the future, and the garbage collector walking
        it while the record waits in the backlog). Nothing else changes: ``flush()`` and
        ``close()`` wait for the record, limits, retries and metrics apply, and a record that
        fails still reaches ``on_error``, a ``RecordFailed`` event and
        ``metrics().user_records_failed``. Raises and waits exactly as ``put()`` does (under
        ``Drop()`` a dropped record goes to ``on_error``, as it would with ``put()``).
        """
        if self._state != "running":
            raise self._not_running()
        checked = check(data, partition_key, explicit_hash_key, self.settings.max_record_size)
        if not self._acc.add(*checked, None):
            await self._acc.accept(*checked, None)

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
        data, pk, ehk, hash_key, size = check(
            data, partition_key, explicit_hash_key, self.settings.max_record_size
        )
        return PreparedRecord(ProducerRecord(data, pk, ehk), hash_key, size)

    def _check(
        self, data: bytes, partition_key: str, explicit_hash_key: int | str | None
    ) -> Checked:
        """``prepare()`` without the object, for the blocking Producer's calling thread."""
        if self._state != "running":
            raise self._not_running()
        return check(data, partition_key, explicit_hash_key, self.settings.max_record_size)

    def backlog_full(self, extra_records: int = 0, extra_bytes: int = 0) -> bool:
        """Whether the backlog (plus ``extra_*`` about to be added) is at its limits."""
        return self._acc.backlog_full(extra_records, extra_bytes)

    def _offer(self, checked: Checked, future: ResultFuture) -> bool:
        """Queue a checked record whose result goes to ``future`` unless it must wait for room
        (then False: ``await _accept(...)``). The blocking Producer's loop side."""
        if self._state != "running":
            raise self._not_running()
        return self._acc.add(*checked, future)

    async def _accept(self, checked: Checked, future: ResultFuture) -> None:
        """Queue a checked record whose result goes to ``future`` (the blocking Producer's
        loop side); raises what ``put()`` raises for a closed producer or a full backlog."""
        if self._state != "running":
            raise self._not_running()
        if not self._acc.add(*checked, future):
            await self._acc.accept(*checked, future)

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
        await self._acc.flush()

    def metrics(self) -> ProducerMetrics:
        """Cumulative metrics since the producer was created."""
        return self._reporter.total()

    @property
    def shard_map(self) -> ShardMap:
        """The producer's current view of the stream's open shards."""
        return self._acc.map

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

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_tasks.discard)

    def _kinesis_api(self) -> KinesisAPI:
        if self._kinesis is None:
            raise ProducerClosedError("the producer is closed")
        return self._kinesis
