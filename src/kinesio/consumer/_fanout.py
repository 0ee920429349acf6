"""Enhanced fan-out: one shard read through SubscribeToShard (see :mod:`._fetcher`)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from kinesio._errors import KinesioError, ResourceInUseError, ResourceNotFoundError
from kinesio.consumer._fetcher import Backoff, FetcherBase, FetchOptions
from kinesio.events import SubscriptionRenewed

if TYPE_CHECKING:
    from typing import Unpack

    from kinesio._kinesis import KinesisAPI
    from kinesio._models import ExtendedSequenceNumber, Shard

__all__ = ["FanOutFetcher", "ensure_stream_consumer"]

logger = logging.getLogger("kinesio.consumer.fetcher")


async def ensure_stream_consumer(
    kinesis: KinesisAPI, stream_arn: str, consumer_name: str, *, timeout: float = 120.0
) -> str:
    """Register the enhanced fan-out consumer if missing, wait until ACTIVE, return its ARN.

    Registration takes seconds on the service. Retriable errors (throttling, service errors)
    are retried with backoff; a consumer being deleted is waited for and registered again.
    Raises ``ResourceInUseError`` if it is not ACTIVE after ``timeout`` seconds,
    ``ResourceNotFoundError`` if the stream does not exist, and other non-retriable errors
    as they come.
    """
    deadline = time.monotonic() + timeout
    backoff = Backoff(0.2, 2.0)
    status = "absent"
    while True:
        try:
            try:
                consumer = await kinesis.describe_stream_consumer(stream_arn, consumer_name)
            except ResourceNotFoundError:
                consumer = await kinesis.register_stream_consumer(stream_arn, consumer_name)
            status = consumer.status
            if status == "ACTIVE":
                return consumer.consumer_arn
        except KinesioError as exc:
            if not exc.retriable:
                raise
            logger.debug("stream consumer %s: %s; retrying", consumer_name, exc)
        if time.monotonic() >= deadline:
            raise ResourceInUseError(
                f"stream consumer {consumer_name!r} of {stream_arn} still {status} after "
                f"{timeout:.0f} s",
                code="ResourceInUseException",
                operation="DescribeStreamConsumer",
            )
        await asyncio.sleep(min(backoff.delay(), max(0.0, deadline - time.monotonic())))


class FanOutFetcher(FetcherBase):
    """Reads one shard through enhanced fan-out (SubscribeToShard, 2 MiB/s per shard).

    One subscription at a time; when it ends (after 5 minutes, or when the server closes it)
    the next one starts after the last continuation sequence number. ``ResourceInUseError``
    (the previous subscription of this consumer to the shard is still alive, e.g. right after
    the lease moved here) and other retriable errors are retried after an exponential backoff
    with jitter (0.5 s doubling to 10 s); non-retriable errors (consumer or shard gone, access
    denied) stop the fetcher and next_batch() raises them.

    While the queue is full (``max_prefetch_records`` user records or ``max_prefetch_bytes``
    data bytes) no event is taken from the subscription, so the server's flow control holds
    the rest. ``stream_name`` is used for ListShards (children at shard end) and to check a
    possible shard end with GetRecords when the service does not signal it. ``start``,
    ``initial_timestamp`` and ``clock`` are as for :class:`PollingFetcher`. ``events``
    receives a ``RecordsFetched`` per subscription event, a ``SubscriptionRenewed`` per
    subscription after the first and a ``Throttled`` per throttled SubscribeToShard.
    """

    def __init__(
        self,
        kinesis: KinesisAPI,
        consumer_arn: str,
        shard: Shard,
        start: ExtendedSequenceNumber,
        *,
        stream_name: str,
        **options: Unpack[FetchOptions],
    ) -> None:
        super().__init__(kinesis, stream_name, shard, start, **options)
        self._consumer_arn = consumer_arn
        self._continuation: str | None = None

    async def _run(self) -> None:
        backoff = Backoff()
        subscriptions = 0
        ended_by = "expired"  # what ended the last subscription (see SubscriptionRenewed)
        while True:
            await self._queue.wait_for_room()
            position = self._resume_position(self._continuation)
            events_seen = 0
            try:
                async with self._kinesis.subscribe_to_shard(
                    self._consumer_arn, self.shard_id, position
                ) as events:
                    subscriptions += 1
                    if subscriptions > 1:
                        self._events.emit(
                            SubscriptionRenewed(
                                shard_id=self.shard_id, subscription=subscriptions, reason=ended_by
                            )
                        )
                    ended_by = "expired"
                    async for event in events:
                        events_seen += 1
                        backoff.reset()
                        known_closed = self._known_closed
                        records = self._user_records(event.records)
                        self._fetched(
                            "SubscribeToShard",
                            len(event.records),
                            records,
                            event.millis_behind_latest,
                        )
                        if event.continuation_sequence_number is not None:
                            self._continuation = event.continuation_sequence_number
                        elif event.child_shards or self._known_closed:
                            await self._finish(
                                records, event.millis_behind_latest, event.child_shards
                            )
                            return
                        self._deliver(records, event.millis_behind_latest)
                        if not event.records and not event.millis_behind_latest:
                            if known_closed and await self._drained():
                                return
                            await self._check_closed()
                        await self._queue.wait_for_room()
            except ResourceNotFoundError as exc:
                await self._end_if_gone(exc)
                return
            except KinesioError as exc:
                if not exc.retriable:
                    raise
                ended_by = getattr(exc, "code", "") or type(exc).__name__
                self._throttled(exc, "SubscribeToShard")
                await self._back_off(backoff, exc)
                continue
            if events_seen == 0:
                # A subscription that ends without a single event: do not spin on it.
                await asyncio.sleep(backoff.delay())

    async def _drained(self) -> bool:
        """For a closed shard whose subscription looks caught up: confirm with GetRecords
        after the last record read that nothing is left (an event may have been built
        before the last records arrived), and end the shard if so."""
        try:
            iterator = await self._kinesis.get_shard_iterator(
                self._stream_name, self.shard_id, self._resume_position(self._continuation)
            )
            out = await self._kinesis.get_records(iterator, limit=1)
        except KinesioError as exc:
            if not exc.retriable:
                raise
            return False
        if out.records:
            return False  # more to come through the subscription
        await self._finish([], 0, out.child_shards)
        return True
