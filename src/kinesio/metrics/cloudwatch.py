"""Publishing producer and consumer metrics to Amazon CloudWatch (``kinesio[cloudwatch]``).

:class:`CloudWatchMetrics` is an ``on_event`` callback: it folds kinesio's diagnostic events
into one statistic set (count, sum, min, max) per metric and dimension set, and a background
task publishes them with PutMetricData every ``flush_interval`` seconds. Metric names are the
KPL's and the KCL's where those libraries have one (see :data:`METRICS` and the README)::

    async with CloudWatchMetrics(namespace="orders-app") as cloudwatch:
        async with AsyncProducer("orders", on_event=cloudwatch) as producer: ...

The credentials need ``cloudwatch:PutMetricData``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager, AsyncExitStack
from types import TracebackType
from typing import Any, Self

from aiobotocore.session import AioSession
from anyio.from_thread import BlockingPortal, start_blocking_portal

from kinesio._aws import AWSConfig, create_client, map_aws_errors
from kinesio._errors import ConfigurationError, InvalidArgumentError, KinesioError
from kinesio.events import DiagnosticEvent
from kinesio.metrics._cloudwatch_fold import LEVELS, METRICS, EventFold, Granularity

__all__ = [
    "METRICS",
    "MAX_DATUMS_PER_CALL",
    "BlockingCloudWatchMetrics",
    "CloudWatchMetrics",
    "Granularity",
]

logger = logging.getLogger("kinesio.cloudwatch")

#: PutMetricData takes at most 1000 metric data per request (and 1 MB; 1000 statistic sets
#: with a few dimensions stay far below that).
MAX_DATUMS_PER_CALL = 1000


class CloudWatchMetrics:
    """Aggregates kinesio's events and publishes them to CloudWatch; pass it as ``on_event=``.

    Use as ``async with CloudWatchMetrics(...) as cloudwatch:`` (or ``await start()`` /
    ``await aclose()``); one instance serves any number of producers and consumers.

    ``namespace``: the CloudWatch namespace (default: each event's stream name; pass your
    application name to match the KCL, which publishes under it). ``granularity``: which
    dimension sets each metric is published with (``"shard"``: none, ``StreamName``, and
    ``StreamName`` + ``ShardId``; ``"stream"``: the first two; ``"global"``: none) — every
    level is a separate custom metric, billed as such. ``dimensions``: extra dimensions added
    to every metric (e.g. ``{"Host": hostname}``). ``flush_interval``: seconds between
    publications (CloudWatch's standard resolution is one minute).

    Publishing: each interval's statistic sets (SampleCount, Sum, Minimum, Maximum, stamped
    with the publication time) go out in PutMetricData calls of at most
    :data:`MAX_DATUMS_PER_CALL` metric data. A failed call is logged and what it held is kept
    and sent again at the next flush, except data CloudWatch rejected as invalid
    (``InvalidArgumentError``), which is dropped with an error log. At most ``max_pending``
    metric data wait; beyond that the oldest are dropped with an error log (``dropped`` counts
    them). :meth:`flush` raises the error of a failed call (a :class:`kinesio.KinesioError`:
    ``AccessDeniedError`` without ``cloudwatch:PutMetricData``, ``EndpointConnectionError``,
    ...); the background task logs it and tries again next interval. :meth:`aclose` flushes
    one last time and raises that error if the final flush fails.

    AWS access is configured as for the producer (``aws`` / ``region_name`` /
    ``endpoint_url`` / ``session``; ``AWS_ENDPOINT_URL_CLOUDWATCH`` works too).
    """

    def __init__(
        self,
        *,
        namespace: str | None = None,
        granularity: Granularity = "shard",
        dimensions: Mapping[str, str] | None = None,
        flush_interval: float = 60.0,
        max_pending: int = 100_000,
        aws: AWSConfig | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        session: AioSession | None = None,
    ) -> None:
        if granularity not in LEVELS:
            raise ConfigurationError(
                f"granularity must be 'global', 'stream' or 'shard', not {granularity!r}"
            )
        if namespace is not None and not namespace:
            raise ConfigurationError("namespace must be a non-empty string or None")
        if not flush_interval > 0:
            raise ConfigurationError(f"flush_interval must be > 0 seconds, not {flush_interval}")
        if max_pending < MAX_DATUMS_PER_CALL:
            raise ConfigurationError(f"max_pending must be >= {MAX_DATUMS_PER_CALL}")
        self.namespace = namespace
        self.granularity: Granularity = granularity
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._aws = aws or AWSConfig(
            region_name=region_name, endpoint_url=endpoint_url, session=session
        )
        self._fold = EventFold(namespace, granularity, tuple(sorted((dimensions or {}).items())))
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self.dropped = 0
        self.last_error: KinesioError | None = None
        self._flush_lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

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
        """Create the CloudWatch client and start the periodic flush (idempotent)."""
        if self._closed:
            raise ConfigurationError("this CloudWatchMetrics is closed")
        await self._ensure_client()
        if self._task is None:
            self._task = asyncio.create_task(self._flush_periodically(), name="kinesio-cloudwatch")

    async def aclose(self) -> None:
        """Stop the periodic flush, publish what is left, close the client (idempotent).

        Raises the error of the final flush if it fails (after closing the client): the data
        it held is then lost, and the log says how much."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush()
        except KinesioError:
            logger.error("closing with %d CloudWatch metric data unpublished", len(self._pending))
            raise
        finally:
            if self._stack is not None:
                stack, self._stack = self._stack, None
                self._client = None
                await stack.aclose()

    async def _ensure_client(self) -> Any:
        if self._client is None:
            stack = AsyncExitStack()
            try:
                self._client = await create_client("cloudwatch", self._aws, stack, max_attempts=3)
            except BaseException:
                await stack.aclose()
                raise
            self._stack = stack
        return self._client

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except KinesioError:
                continue  # logged by flush(); the data waits for the next interval
            except Exception:
                logger.exception("unexpected error publishing metrics to CloudWatch")

    # -- the on_event callback -------------------------------------------------------------

    def __call__(self, event: DiagnosticEvent) -> None:
        self._fold(event)

    # -- publishing ------------------------------------------------------------------------

    async def flush(self) -> None:
        """Publish what was aggregated so far, and what earlier failed flushes kept.

        Raises the :class:`kinesio.KinesioError` of a failed PutMetricData call (logged too);
        the data not yet published stays for the next flush."""
        async with self._flush_lock:
            self._roll()
            if not self._pending:
                return
            client = await self._ensure_client()
            while self._pending:
                # The oldest datum's namespace, with as many of that namespace as one call takes.
                namespace = self._pending[0][0]
                taken = [i for i, (ns, _) in enumerate(self._pending) if ns == namespace]
                taken = taken[:MAX_DATUMS_PER_CALL]
                batch = [self._pending[i][1] for i in taken]
                try:
                    with map_aws_errors("PutMetricData"):
                        await client.put_metric_data(Namespace=namespace, MetricData=batch)
                except InvalidArgumentError as exc:
                    self.last_error = exc
                    self._remove(taken)
                    self.dropped += len(batch)
                    logger.error(
                        "CloudWatch rejected %d metric data of namespace %r; dropped: %s",
                        len(batch),
                        namespace,
                        exc,
                    )
                    raise
                except KinesioError as exc:
                    self.last_error = exc
                    logger.warning(
                        "publishing %d metric data to CloudWatch failed (kept for the next "
                        "flush): %s",
                        len(self._pending),
                        exc,
                    )
                    raise
                self._remove(taken)
            self.last_error = None

    def _remove(self, indices: list[int]) -> None:
        gone = set(indices)
        self._pending = [item for i, item in enumerate(self._pending) if i not in gone]

    def _roll(self) -> None:
        """Turn the interval's aggregates into pending metric data stamped now."""
        now = dt.datetime.now(dt.UTC)
        for (namespace, name, dims), agg in self._fold.take():
            if not agg.count:
                continue
            self._pending.append(
                (
                    namespace,
                    {
                        "MetricName": name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                        "Timestamp": now,
                        "Unit": agg.unit,
                        "StatisticValues": {
                            "SampleCount": float(agg.count),
                            "Sum": agg.total,
                            "Minimum": agg.minimum,
                            "Maximum": agg.maximum,
                        },
                    },
                )
            )
        excess = len(self._pending) - self.max_pending
        if excess > 0:
            del self._pending[:excess]
            self.dropped += excess
            logger.error(
                "more than %d CloudWatch metric data waiting: dropped the %d oldest",
                self.max_pending,
                excess,
            )


class BlockingCloudWatchMetrics:
    """:class:`CloudWatchMetrics` for blocking code (e.g. with :class:`kinesio.Producer` and
    :class:`kinesio.Consumer`): its client and periodic flush live on a private event-loop
    thread. Arguments are those of :class:`CloudWatchMetrics`.

    The constructor starts it; use it as a context manager or call :meth:`close`. Pass it as
    ``on_event=``; calling it only aggregates (thread-safe, never blocks on I/O). :meth:`flush`
    and :meth:`close` block, and raise what ``flush()`` / ``aclose()`` raise.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal("asyncio")
        self._portal = self._portal_cm.__enter__()
        self._closed = False
        try:
            self.core = CloudWatchMetrics(**kwargs)
            self._portal.call(self.core.start)
        except BaseException:
            self._closed = True
            self._portal_cm.__exit__(None, None, None)
            raise

    def __call__(self, event: DiagnosticEvent) -> None:
        self.core(event)

    def flush(self) -> None:
        """Publish now and wait (see :meth:`CloudWatchMetrics.flush`)."""
        self._portal.call(self.core.flush)

    def close(self) -> None:
        """Publish what is left, then stop (see :meth:`CloudWatchMetrics.aclose`)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self.core.aclose)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
