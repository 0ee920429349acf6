"""Blocking facades: the asyncio core run on a private event-loop thread.

Each call is forwarded to that thread (an anyio blocking portal); no logic lives here, so the
blocking and the asyncio APIs behave the same. Safe to call from many threads at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Self

from aiobotocore.session import AioSession
from anyio.from_thread import BlockingPortal, start_blocking_portal

from kinesio._aws import AWSConfig
from kinesio._config import ProducerSettings
from kinesio._kinesis import KinesisAPI
from kinesio._models import PutResult
from kinesio.metrics import ProducerMetrics
from kinesio.producer._producer import AsyncProducer, ErrorHook, MetricsHook


def _chain(source: asyncio.Future[PutResult], target: concurrent.futures.Future[PutResult]) -> None:
    def done(f: asyncio.Future[PutResult]) -> None:
        if f.cancelled():
            target.cancel()
        elif (exc := f.exception()) is not None:
            target.set_exception(exc)
        else:
            target.set_result(f.result())

    source.add_done_callback(done)


class Producer:
    """The blocking producer: :class:`AsyncProducer` behind a thread-safe, blocking API.

    The constructor connects (raising what ``AsyncProducer.start()`` raises); use it as a
    context manager or call :meth:`close`. ``put()`` blocks only while the backlog is full
    (under the default ``Block()`` policy) and returns a ``concurrent.futures.Future`` of the
    record's :class:`PutResult`. Arguments are those of :class:`AsyncProducer`.
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
    ) -> None:
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal("asyncio")
        self._portal = self._portal_cm.__enter__()
        self._closed = False
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
            )
            self._portal.call(self._core.start)
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
        return self._portal.call(self._put, data, partition_key, explicit_hash_key)

    async def _put(
        self, data: bytes, partition_key: str, explicit_hash_key: int | str | None
    ) -> concurrent.futures.Future[PutResult]:
        source = await self._core.put(data, partition_key, explicit_hash_key)
        target: concurrent.futures.Future[PutResult] = concurrent.futures.Future()
        _chain(source, target)
        return target

    def put_and_wait(
        self, data: bytes, partition_key: str, explicit_hash_key: int | str | None = None
    ) -> PutResult:
        """Put one record and block until it is delivered; raises its error if it failed."""
        return self.put(data, partition_key, explicit_hash_key).result()

    def flush(self) -> None:
        """Block until every record accepted so far has its result."""
        self._portal.call(self._core.flush)

    def metrics(self) -> ProducerMetrics:
        """Cumulative metrics since the producer was created."""
        return self._portal.call(self._metrics)

    async def _metrics(self) -> ProducerMetrics:
        return self._core.metrics()

    def close(self, timeout: float | None = None) -> None:
        """Deliver everything accepted, then stop (see ``AsyncProducer.aclose``)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self._core.aclose, timeout)
        finally:
            self._portal_cm.__exit__(None, None, None)
