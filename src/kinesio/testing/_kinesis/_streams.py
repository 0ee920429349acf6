"""Stream lifecycle: CreateStream, DeleteStream and waiting for ACTIVE."""

from __future__ import annotations

import asyncio
import time

from kinesio._errors import (
    ResourceInUseError,
    ValidationError,
)
from kinesio._models import (
    MAX_HASH_KEY,
    StreamSummary,
)
from kinesio.testing._kinesis._limits import (
    MAX_SHARDS_PER_STREAM,
    NAME_RE,
)
from kinesio.testing._kinesis._reads import Reads
from kinesio.testing._kinesis._shards import (
    StreamState,
    even_starts,
)


class Streams(Reads):
    """Creating and deleting streams."""

    async def create_stream(
        self,
        stream_name: str,
        shard_count: int,
        *,
        max_record_size_kib: int = 1024,
        retention_period_hours: int = 24,
    ) -> None:
        """CreateStream with ``shard_count`` shards splitting the hash key space evenly.

        The stream is ACTIVE at once (after ``creating_delay``). ``max_record_size_kib``
        (1024..10240) caps data plus partition key of one record. Raises
        ``ResourceInUseError`` if the name is taken, ``ValidationError`` for an empty name or
        ``shard_count`` below 1, ``InvalidArgumentError`` for a malformed name or more than
        10 000 shards.
        """
        op = "CreateStream"
        lost = await self._enter(op)
        if not stream_name:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid length for parameter "
                "StreamName, value: 0, valid min length: 1"
            )
        if shard_count < 1:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid value for parameter ShardCount, "
                f"value: {shard_count}, valid min value: 1"
            )
        if max_record_size_kib < 1024:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid value for parameter "
                f"MaxRecordSizeInKiB, value: {max_record_size_kib}, valid min value: 1024"
            )
        if not NAME_RE.fullmatch(stream_name):
            raise self._err(
                "ValidationException",
                f"1 validation error detected: Value '{stream_name}' at 'streamName' failed "
                "to satisfy constraint: Member must satisfy regular expression pattern: "
                "[a-zA-Z0-9_.-]+ and have length less than or equal to 128",
                op,
            )
        if max_record_size_kib > 10240:
            raise self._err(
                "InvalidArgumentException", "MaxRecordSizeInKiB must be at most 10240", op
            )
        if shard_count > MAX_SHARDS_PER_STREAM:
            raise self._err("InvalidArgumentException", "ShardCount must be at most 10000", op)
        if stream_name in self._streams:
            raise self._err(
                "ResourceInUseException",
                f"Stream {stream_name} under account {self.account_id} already exists.",
                op,
            )
        now = self._clock()
        self._incarnations += 1
        stream = StreamState(
            name=stream_name,
            arn=f"arn:aws:kinesis:{self.region}:{self.account_id}:stream/{stream_name}",
            incarnation=self._incarnations,
            active_at=now + self.creating_delay,
            retention_hours=retention_period_hours,
            max_record_size=max_record_size_kib * 1024,
        )
        starts = even_starts(shard_count)
        ends = [s - 1 for s in starts[1:]] + [MAX_HASH_KEY]
        for start, end in zip(starts, ends, strict=True):
            self._new_shard(stream, start, end, None, None, now)
        stream.reindex()
        self._streams[stream_name] = stream
        self._raise_lost(lost, op)

    async def delete_stream(self, stream_name: str) -> None:
        """DeleteStream, with its consumers; open subscriptions then fail with
        ``ResourceNotFoundError``. Raises ``ResourceNotFoundError`` for an unknown stream.
        """
        op = "DeleteStream"
        lost = await self._enter(op)
        stream = self._stream(stream_name, op)
        del self._streams[stream_name]
        self._wake(stream)
        self._raise_lost(lost, op)

    async def wait_for_active(
        self,
        stream_name: str,
        *,
        timeout: float = 60.0,
    ) -> StreamSummary:
        """Poll DescribeStreamSummary until the stream is ACTIVE.

        Gives up with ``ResourceInUseError`` after ``timeout`` seconds of either the fake's
        clock or real time, whichever passes first (so a clock nobody advances cannot hang a
        test). Raises ``ResourceNotFoundError`` for an unknown stream.
        """
        deadline = self._clock() + timeout
        real_deadline = time.monotonic() + timeout
        while True:
            summary = await self.describe_stream_summary(stream_name)
            if summary.status == "ACTIVE":
                return summary
            if self._clock() > deadline or time.monotonic() > real_deadline:
                raise ResourceInUseError(
                    f"stream {stream_name!r} still {summary.status} after {timeout:.0f} s",
                    code="ResourceInUseException",
                    operation="DescribeStreamSummary",
                )
            await asyncio.sleep(self.poll_interval)
