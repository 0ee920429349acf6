"""The in-memory Kinesis's state, configuration, fault plumbing and lookups, shared by every
API group."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import math
import random
import time
from collections.abc import Callable

from kinesio._aws import error_from_code
from kinesio._errors import (
    AWSError,
    ConfigurationError,
    EndpointConnectionError,
)
from kinesio._models import (
    ChildShard,
    KinesisRecord,
)
from kinesio.testing._kinesis._faults import (
    CONNECTION_ERROR,
    ArmedFault,
    Fault,
)
from kinesio.testing._kinesis._shards import (
    ConsumerState,
    ShardState,
    ShardStats,
    StreamState,
    Subscription,
    arrival,
    sequence_number,
)


class Core:
    """Configuration, streams, faults and the lookups every call starts with."""

    def __init__(
        self,
        *,
        enforce_limits: bool = True,
        clock: Callable[[], float] = time.monotonic,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        iterator_ttl: float = 300.0,
        creating_delay: float = 0.0,
        updating_delay: float = 0.0,
        consumer_creating_delay: float = 0.0,
        child_shards_at_end: bool = True,
        subscription_ttl: float = 300.0,
        heartbeat_interval: float | None = 5.0,
        poll_interval: float = 0.02,
        seed: int = 0,
    ) -> None:
        if iterator_ttl <= 0 or subscription_ttl <= 0 or poll_interval <= 0:
            raise ConfigurationError("iterator_ttl, subscription_ttl, poll_interval must be > 0")
        if min(creating_delay, updating_delay, consumer_creating_delay) < 0:
            raise ConfigurationError("delays must be >= 0 seconds")
        self.enforce_limits = enforce_limits
        self.region = region
        self.account_id = account_id
        self.iterator_ttl = iterator_ttl
        self.creating_delay = creating_delay
        self.updating_delay = updating_delay
        self.consumer_creating_delay = consumer_creating_delay
        self.child_shards_at_end = child_shards_at_end
        self.subscription_ttl = subscription_ttl
        self.heartbeat_interval = heartbeat_interval
        self.poll_interval = poll_interval
        #: API calls made so far, by AWS operation name (``"PutRecords"``, ...).
        self.calls: collections.Counter[str] = collections.Counter()
        self._clock = clock
        self._wall_offset = time.time() - clock()
        self._rng = random.Random(seed)
        self._streams: dict[str, StreamState] = {}
        self._faults: list[ArmedFault] = []
        self._subscriptions: dict[tuple[str, str], Subscription] = {}
        self._seq = 0
        self._incarnations = 0

    def inject(self, fault: Fault) -> None:
        """Add a fault; faults are checked in the order they were injected."""
        self._faults.append(ArmedFault(fault, fault.count))

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._faults.clear()

    def now(self) -> dt.datetime:
        """The current wall time as this fake sees it (aware, UTC, millisecond precision)."""
        return self._wall(self._clock())

    def records(self, stream_name: str, shard_id: str) -> list[KinesisRecord]:
        """Every record the shard still holds (not trimmed), oldest first. Not an API call.

        Raises ``ResourceNotFoundError`` for an unknown stream or shard.
        """
        shard = self._shard(self._stream(stream_name, "Records"), shard_id, "Records")
        return [r.record for r in shard.records]

    def stats(self, stream_name: str) -> dict[str, ShardStats]:
        """Per shard id, counts of records written, throttled, faulted and read.

        Raises ``ResourceNotFoundError`` for an unknown stream.
        """
        stream = self._stream(stream_name, "Stats")
        return {sid: ShardStats(**s.stats) for sid, s in stream.shards.items()}

    def trim(self, stream_name: str, older_than: dt.datetime | None = None) -> int:
        """Drop records that arrived before ``older_than``, as retention would.

        ``older_than`` defaults to now minus the stream's retention period (24 hours); a naive
        datetime is taken as UTC. Closed shards that closed before ``older_than`` and hold no
        record any more disappear from ListShards. TRIM_HORIZON then starts at the oldest
        record left. Returns how many records were dropped; raises ``ResourceNotFoundError``
        for an unknown stream.
        """
        stream = self._stream(stream_name, "Trim")
        if older_than is None:
            older_than = self.now() - dt.timedelta(hours=stream.retention_hours)
        elif older_than.tzinfo is None:
            older_than = older_than.replace(tzinfo=dt.UTC)
        dropped = 0
        for shard in list(stream.shards.values()):
            keep = 0
            while keep < len(shard.records) and (arrival(shard.records[keep]) < older_than):
                keep += 1
            if keep:
                del shard.records[:keep]
                del shard.seqs[:keep]
                dropped += keep
            if shard.closed_at is not None and shard.closed_at < older_than and not shard.records:
                del stream.shards[shard.shard_id]
                shard.notify()
        return dropped

    def _err(self, code: str, message: str, operation: str) -> AWSError:
        if code == CONNECTION_ERROR:
            return EndpointConnectionError(
                f"{operation}: could not reach the endpoint: {message}",
                code="EndpointConnectionError",
                operation=operation,
            )
        return error_from_code(code, message, operation=operation)

    async def _enter(self, operation: str) -> Fault | None:
        """Count the call and apply whole-call faults; returns a ``response_lost`` fault."""
        self.calls[operation] += 1
        fired = [
            armed.fault
            for armed in self._faults
            if armed.fires(operation, self._rng, per_record=False)
        ]
        for fault in fired:
            if fault.latency:
                await asyncio.sleep(fault.latency)
        lost: Fault | None = None
        for fault in fired:
            if fault.error_code is None:
                continue
            if fault.response_lost:
                lost = lost or fault
                continue
            raise self._err(fault.error_code, fault.message, operation)
        return lost

    def _raise_lost(self, lost: Fault | None, operation: str) -> None:
        if lost is not None and lost.error_code is not None:
            raise self._err(lost.error_code, lost.message, operation)

    def _per_record_fault(self, operation: str) -> Fault | None:
        for armed in self._faults:
            if armed.fires(operation, self._rng, per_record=True):
                return armed.fault
        return None

    def _wall(self, clock_time: float) -> dt.datetime:
        millis = math.floor((self._wall_offset + clock_time) * 1000)
        return dt.datetime.fromtimestamp(millis / 1000, dt.UTC)

    def _next_seq(self, stream: StreamState, shard_id: str) -> int:
        self._seq += 1
        seq = sequence_number(self._seq, shard_id)
        stream.seq_owner[seq] = shard_id
        return seq

    def _status(self, stream: StreamState) -> str:
        now = self._clock()
        if now < stream.active_at:
            return "CREATING"
        if now < stream.updating_until:
            return "UPDATING"
        return "ACTIVE"

    def _consumer_status(self, consumer: ConsumerState) -> str:
        return "ACTIVE" if self._clock() >= consumer.active_at else "CREATING"

    def _state_message(self, stream: StreamState) -> str:
        return (
            f"Stream {stream.name} under account {self.account_id} not ACTIVE, instead in "
            f"state {self._status(stream)}"
        )

    def _rate_message(self, stream: StreamState, shard: ShardState) -> str:
        return (
            f"Rate exceeded for shard {shard.shard_id} in stream {stream.name} under account "
            f"{self.account_id}."
        )

    def _not_found(self, stream_name: str, operation: str) -> AWSError:
        return self._err(
            "ResourceNotFoundException",
            f"Stream {stream_name} under account {self.account_id} not found.",
            operation,
        )

    def _stream(self, stream_name: str, operation: str) -> StreamState:
        stream = self._streams.get(stream_name)
        if stream is None:
            raise self._not_found(stream_name, operation)
        return stream

    def _data_stream(self, stream_name: str, operation: str) -> StreamState:
        # The service answers data calls on a CREATING stream as if it did not exist yet.
        stream = self._stream(stream_name, operation)
        if self._status(stream) == "CREATING":
            raise self._not_found(stream_name, operation)
        return stream

    def _active_stream(self, stream_name: str, operation: str) -> StreamState:
        stream = self._stream(stream_name, operation)
        if self._status(stream) != "ACTIVE":
            raise self._err("ResourceInUseException", self._state_message(stream), operation)
        return stream

    def _stream_by_arn(self, stream_arn: str, operation: str) -> StreamState:
        for stream in self._streams.values():
            if stream.arn == stream_arn:
                return stream
        raise self._err("ResourceNotFoundException", f"Stream {stream_arn} not found", operation)

    def _consumer_by_arn(
        self, consumer_arn: str, operation: str
    ) -> tuple[StreamState, ConsumerState]:
        for stream in self._streams.values():
            for consumer in stream.consumers.values():
                if consumer.arn == consumer_arn:
                    return stream, consumer
        raise self._err(
            "ResourceNotFoundException", f"Consumer {consumer_arn} not found", operation
        )

    def _shard(self, stream: StreamState, shard_id: str, operation: str) -> ShardState:
        shard = stream.shards.get(shard_id)
        if shard is None:
            raise self._err(
                "ResourceNotFoundException",
                f"Shard {shard_id} in stream {stream.name} under account {self.account_id} "
                "does not exist",
                operation,
            )
        return shard

    def _new_shard(
        self,
        stream: StreamState,
        start: int,
        end: int,
        parent: str | None,
        adjacent: str | None,
        now: float,
    ) -> ShardState:
        shard_id = f"shardId-{stream.next_shard_index:012d}"
        stream.next_shard_index += 1
        shard = ShardState(
            shard_id=shard_id,
            start_key=start,
            end_key=end,
            parent=parent,
            adjacent=adjacent,
            start_seq=self._next_seq(stream, shard_id),
            created=now,
        )
        stream.shards[shard_id] = shard
        return shard

    def _child_shards(self, stream: StreamState, shard: ShardState) -> list[ChildShard]:
        out: list[ChildShard] = []
        for child_id in shard.children:
            child = stream.shards.get(child_id)
            if child is not None:
                out.append(ChildShard(child_id, child.parent_ids, child.start_key, child.end_key))
        return out

    def _wake(self, stream: StreamState) -> None:
        for shard in stream.shards.values():
            shard.notify()
