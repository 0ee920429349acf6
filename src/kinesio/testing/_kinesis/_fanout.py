"""Enhanced fan-out: consumers and SubscribeToShard subscriptions."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from kinesio._errors import ValidationError
from kinesio._kinesis import StartingPosition
from kinesio._models import (
    KinesisRecord,
    StreamConsumer,
    SubscribeEvent,
)
from kinesio.testing._kinesis._limits import (
    FANOUT_BYTES_PER_SECOND,
    MAX_CONSUMERS_PER_STREAM,
    MAX_GET_RECORDS,
    NAME_RE,
    SUBSCRIPTION_TAKEOVER_AFTER,
)
from kinesio.testing._kinesis._positions import Positions
from kinesio.testing._kinesis._shards import (
    Bucket,
    ConsumerState,
    ShardState,
    StreamState,
    Subscription,
)


class FanOut(Positions):
    """Registering fan-out consumers and serving their subscriptions."""

    async def register_stream_consumer(self, stream_arn: str, consumer_name: str) -> StreamConsumer:
        """RegisterStreamConsumer, or the consumer already registered under that name.

        The consumer is ACTIVE at once (after ``consumer_creating_delay``). Raises
        ``ResourceNotFoundError`` for an unknown stream ARN, ``ResourceInUseError`` while the
        stream is CREATING and ``ThrottlingError`` (LimitExceededException) beyond 20
        consumers per stream.
        """
        op = "RegisterStreamConsumer"
        lost = await self._enter(op)
        if not consumer_name:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid length for parameter "
                "ConsumerName, value: 0, valid min length: 1"
            )
        if not NAME_RE.fullmatch(consumer_name):
            raise self._err(
                "ValidationException",
                f"1 validation error detected: Value '{consumer_name}' at 'consumerName' "
                "failed to satisfy constraint: Member must satisfy regular expression "
                "pattern: [a-zA-Z0-9_.-]+",
                op,
            )
        stream = self._stream_by_arn(stream_arn, op)
        if self._status(stream) == "CREATING":
            raise self._err("ResourceInUseException", self._state_message(stream), op)
        if consumer_name in stream.consumers:
            # The service answers ResourceInUseException; AioKinesis then describes it.
            existing = await self.describe_stream_consumer(stream_arn, consumer_name)
            self._raise_lost(lost, op)
            return existing
        if len(stream.consumers) >= MAX_CONSUMERS_PER_STREAM:
            raise self._err(
                "LimitExceededException",
                f"Stream {stream.arn} already has {MAX_CONSUMERS_PER_STREAM} registered consumers",
                op,
            )
        now = self._clock()
        epoch = int(self._wall(now).timestamp())
        consumer = ConsumerState(
            name=consumer_name,
            arn=f"{stream.arn}/consumer/{consumer_name}:{epoch}",
            active_at=now + self.consumer_creating_delay,
        )
        stream.consumers[consumer_name] = consumer
        result = StreamConsumer(consumer.name, consumer.arn, self._consumer_status(consumer))
        self._raise_lost(lost, op)
        return result

    async def describe_stream_consumer(self, stream_arn: str, consumer_name: str) -> StreamConsumer:
        """DescribeStreamConsumer. Raises ``ResourceNotFoundError`` for an unknown stream or
        consumer.
        """
        op = "DescribeStreamConsumer"
        lost = await self._enter(op)
        stream = self._stream_by_arn(stream_arn, op)
        consumer = stream.consumers.get(consumer_name)
        if consumer is None:
            raise self._err(
                "ResourceNotFoundException",
                f"Consumer {consumer_name} under stream {stream.arn} not found",
                op,
            )
        result = StreamConsumer(consumer.name, consumer.arn, self._consumer_status(consumer))
        self._raise_lost(lost, op)
        return result

    async def deregister_stream_consumer(self, stream_arn: str, consumer_name: str) -> None:
        """DeregisterStreamConsumer: remove a fan-out consumer; its subscriptions then fail
        with ``ResourceNotFoundError``. Raises ``ResourceNotFoundError`` if it does not exist.
        """
        op = "DeregisterStreamConsumer"
        lost = await self._enter(op)
        stream = self._stream_by_arn(stream_arn, op)
        if stream.consumers.pop(consumer_name, None) is None:
            raise self._err(
                "ResourceNotFoundException",
                f"Consumer {consumer_name} under {stream_arn} not found",
                op,
            )
        self._wake(stream)
        self._raise_lost(lost, op)

    def subscribe_to_shard(
        self, consumer_arn: str, shard_id: str, position: StartingPosition
    ) -> AbstractAsyncContextManager[AsyncIterator[SubscribeEvent]]:
        """SubscribeToShard: an async context manager yielding the subscription's events.

        Events carry the records from ``position`` on, then new ones as they arrive (at most
        10 000 records and 2 MiB per event; with ``enforce_limits`` at most 2 MiB/s), each
        with a ``continuation_sequence_number`` to resubscribe with AFTER_SEQUENCE_NUMBER.
        The first event comes at once (possibly empty); then an empty one every
        ``heartbeat_interval`` without records. The iterator ends after ``subscription_ttl``
        seconds, or after the event with ``child_shards`` (and no continuation) at the end of
        a closed shard.

        Entering raises ``ResourceNotFoundError`` (unknown consumer or shard),
        ``ResourceInUseError`` (consumer still CREATING, or another subscription of the same
        consumer and shard started less than 5 s ago; a later one takes over and the earlier
        one's iterator raises ``ResourceInUseError``) and ``InvalidArgumentError`` (bad
        position). Iterating raises ``ResourceNotFoundError`` when the stream, shard or
        consumer goes away.
        """
        return self._subscribe(consumer_arn, shard_id, position)

    @asynccontextmanager
    async def _subscribe(
        self, consumer_arn: str, shard_id: str, position: StartingPosition
    ) -> AsyncIterator[AsyncIterator[SubscribeEvent]]:
        op = "SubscribeToShard"
        lost = await self._enter(op)
        stream, consumer = self._consumer_by_arn(consumer_arn, op)
        if self._consumer_status(consumer) != "ACTIVE":
            raise self._err("ResourceInUseException", f"Consumer {consumer.arn} is not ACTIVE", op)
        shard = self._shard(stream, shard_id, op)
        after = self._resolve(stream, shard, position, op)
        now = self._clock()
        key = (consumer_arn, shard_id)
        previous = self._subscriptions.get(key)
        if previous is not None and previous.active:
            if now - previous.started < SUBSCRIPTION_TAKEOVER_AFTER:
                raise self._err(
                    "ResourceInUseException",
                    f"Another active subscription exists for consumer {consumer_arn} "
                    f"and shard {shard_id}",
                    op,
                )
            previous.superseded = True
            previous.active = False
            shard.notify()
        sub = Subscription(
            consumer_arn=consumer_arn,
            stream_name=stream.name,
            incarnation=stream.incarnation,
            shard_id=shard_id,
            after=after,
            started=now,
            bucket=Bucket(FANOUT_BYTES_PER_SECOND, now),
        )
        self._subscriptions[key] = sub
        self._raise_lost(lost, op)
        events = self._events(sub)
        try:
            yield events
        finally:
            sub.active = False
            if self._subscriptions.get(key) is sub:
                del self._subscriptions[key]
            await events.aclose()

    async def _events(self, sub: Subscription) -> AsyncGenerator[SubscribeEvent, None]:
        op = "SubscribeToShard"
        first = True
        last_sent = sub.started
        try:
            while True:
                if sub.superseded:
                    raise self._err(
                        "ResourceInUseException",
                        f"Subscription to {sub.shard_id} was taken over by a newer one",
                        op,
                    )
                stream, shard = self._subscription_target(sub, op)
                now = self._clock()
                if now - sub.started >= self.subscription_ttl:
                    return
                paced = False
                if self.enforce_limits:
                    sub.bucket.refill(now)
                    paced = sub.bucket.tokens <= 0
                batch: list[KinesisRecord] = []
                if not paced:
                    batch, sub.after, size = self._take(
                        shard, sub.after, MAX_GET_RECORDS, FANOUT_BYTES_PER_SECOND
                    )
                    if self.enforce_limits:
                        sub.bucket.tokens -= size
                at_end = not paced and self._at_end(shard, sub.after)
                heartbeat = (
                    self.heartbeat_interval is not None
                    and now - last_sent >= self.heartbeat_interval
                )
                if batch or at_end or first or heartbeat:
                    first = False
                    last_sent = now
                    yield SubscribeEvent(
                        records=batch,
                        continuation_sequence_number=(
                            None if at_end else self._continuation(shard, sub.after)
                        ),
                        millis_behind_latest=self._millis_behind(shard, sub.after, now),
                        child_shards=self._child_shards(stream, shard) if at_end else [],
                    )
                    if at_end:
                        return
                    continue
                await self._wait(shard)
        finally:
            sub.active = False

    def _subscription_target(
        self, sub: Subscription, operation: str
    ) -> tuple[StreamState, ShardState]:
        stream = self._streams.get(sub.stream_name)
        if stream is None or stream.incarnation != sub.incarnation:
            raise self._not_found(sub.stream_name, operation)
        if not any(c.arn == sub.consumer_arn for c in stream.consumers.values()):
            raise self._err(
                "ResourceNotFoundException", f"Consumer {sub.consumer_arn} not found", operation
            )
        return stream, self._shard(stream, sub.shard_id, operation)
