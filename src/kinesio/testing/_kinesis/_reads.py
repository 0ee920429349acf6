"""Reading: DescribeStreamSummary, ListShards, GetShardIterator and GetRecords."""

from __future__ import annotations

from kinesio._errors import ValidationError
from kinesio._kinesis import StartingPosition
from kinesio._models import (
    GetRecordsOutput,
    Shard,
    StreamSummary,
)
from kinesio.testing._kinesis._limits import (
    MAX_GET_RECORDS,
    MAX_GET_RECORDS_BYTES,
)
from kinesio.testing._kinesis._positions import Positions


class Reads(Positions):
    """The polling read calls, with the per-shard read limits."""

    async def describe_stream_summary(self, stream_name: str) -> StreamSummary:
        """DescribeStreamSummary. Raises ``ResourceNotFoundError`` for an unknown stream."""
        op = "DescribeStreamSummary"
        lost = await self._enter(op)
        stream = self._stream(stream_name, op)
        summary = StreamSummary(
            stream_name=stream.name,
            stream_arn=stream.arn,
            status=self._status(stream),
            open_shard_count=len(stream.open_shards),
            retention_period_hours=stream.retention_hours,
            consumer_count=len(stream.consumers),
        )
        self._raise_lost(lost, op)
        return summary

    async def list_shards(self, stream_name: str) -> list[Shard]:
        """Every shard (open, and closed ones not yet trimmed), in shard id order.

        Raises ``ResourceNotFoundError`` for an unknown stream, ``ResourceInUseError`` while it
        is CREATING.
        """
        op = "ListShards"
        lost = await self._enter(op)
        stream = self._stream(stream_name, op)
        if self._status(stream) == "CREATING":
            raise self._err("ResourceInUseException", self._state_message(stream), op)
        shards = [s.model() for s in stream.shards.values()]
        self._raise_lost(lost, op)
        return shards

    async def get_shard_iterator(
        self, stream_name: str, shard_id: str, position: StartingPosition
    ) -> str:
        """GetShardIterator: an opaque iterator, valid for ``iterator_ttl`` seconds.

        Raises ``ResourceNotFoundError`` (unknown or CREATING stream, unknown or trimmed
        shard) and ``InvalidArgumentError`` (missing sequence number or timestamp, a sequence
        number this shard did not issue, an unknown iterator type).
        """
        op = "GetShardIterator"
        lost = await self._enter(op)
        stream = self._data_stream(stream_name, op)
        shard = self._shard(stream, shard_id, op)
        after = self._resolve(stream, shard, position, op)
        iterator = self._encode_iterator(stream, shard, after, self._clock())
        self._raise_lost(lost, op)
        return iterator

    async def get_records(self, shard_iterator: str, *, limit: int = 10_000) -> GetRecordsOutput:
        """GetRecords: up to ``limit`` records (at most 10 000 and 10 MiB) after the iterator.

        ``next_shard_iterator`` is None, and ``child_shards`` lists the children, once a closed
        shard has returned its last record (unless ``child_shards_at_end`` is off).
        ``millis_behind_latest`` is 0 when the response reaches the newest record. Raises
        ``ExpiredIteratorError`` for an iterator older than ``iterator_ttl``,
        ``ThrottlingError`` over 5 calls/s or 2 MiB/s on the shard (with ``enforce_limits``;
        a big response borrows ahead, so the calls after a 10 MiB one are throttled for about
        4 s), ``InvalidArgumentError`` for a malformed iterator or ``limit`` over 10 000,
        ``ValidationError`` for ``limit`` below 1, ``ResourceNotFoundError`` when the stream
        or shard is gone.
        """
        op = "GetRecords"
        lost = await self._enter(op)
        if not shard_iterator:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid length for parameter "
                "ShardIterator, value: 0, valid min length: 1"
            )
        if limit < 1:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid value for parameter Limit, "
                f"value: {limit}, valid min value: 1"
            )
        if limit > MAX_GET_RECORDS:
            raise self._err(
                "InvalidArgumentException",
                f"Limit {limit} is greater than the maximum of {MAX_GET_RECORDS}",
                op,
            )
        stream, shard, after, issued = self._decode_iterator(shard_iterator, op)
        now = self._clock()
        if now - issued > self.iterator_ttl:
            raise self._err(
                "ExpiredIteratorException",
                f"Iterator expired. The iterator was created at time {self._wall(issued)} "
                f"while right now it is {self._wall(now)} which is further in the future than "
                f"the tolerated delay of {round(self.iterator_ttl * 1000)} milliseconds.",
                op,
            )
        shard.stats["get_records_calls"] += 1
        if self.enforce_limits:
            shard.read_calls.refill(now)
            shard.read_bytes.refill(now)
            if shard.read_calls.tokens < 1 or shard.read_bytes.tokens <= 0:
                shard.stats["throttled_get_records"] += 1
                raise self._err(
                    "ProvisionedThroughputExceededException", self._rate_message(stream, shard), op
                )
            shard.read_calls.tokens -= 1
        batch, after, size = self._take(shard, after, limit, MAX_GET_RECORDS_BYTES)
        if self.enforce_limits:
            shard.read_bytes.tokens -= size
        shard.stats["records_out"] += len(batch)
        shard.stats["bytes_out"] += size
        at_end = self._at_end(shard, after)
        output = GetRecordsOutput(
            records=batch,
            next_shard_iterator=None
            if at_end
            else self._encode_iterator(stream, shard, after, now),
            millis_behind_latest=self._millis_behind(shard, after, now),
            child_shards=self._child_shards(stream, shard) if at_end else [],
        )
        self._raise_lost(lost, op)
        return output
