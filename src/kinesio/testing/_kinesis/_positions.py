"""Where a reader stands in a shard: starting positions, shard iterators and taking records."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json

from kinesio._kinesis import StartingPosition
from kinesio._models import KinesisRecord
from kinesio.testing._kinesis._core import Core
from kinesio.testing._kinesis._limits import (
    ITERATOR_TYPES,
    SEQ_RE,
)
from kinesio.testing._kinesis._shards import (
    ShardState,
    StreamState,
    arrival,
    sequence_ceiling,
)


class Positions(Core):
    """Resolving starting positions and taking the records after one, for GetRecords and
    SubscribeToShard."""

    def _resolve(
        self,
        stream: StreamState,
        shard: ShardState,
        position: StartingPosition,
        operation: str,
    ) -> int:
        """The position as "records with a sequence number greater than this"."""
        kind = position.type
        if kind not in ITERATOR_TYPES:
            raise self._err(
                "ValidationException",
                f"1 validation error detected: Value '{kind}' at 'shardIteratorType' failed "
                "to satisfy constraint: Member must satisfy enum value set: "
                f"{sorted(ITERATOR_TYPES)}",
                operation,
            )
        if kind == "TRIM_HORIZON":
            return shard.start_seq
        if kind == "LATEST":
            return sequence_ceiling(self._seq)
        if kind == "AT_TIMESTAMP":
            ts = position.timestamp
            if ts is None:
                raise self._err(
                    "InvalidArgumentException",
                    "Timestamp must be specified for ShardIteratorType AT_TIMESTAMP",
                    operation,
                )
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=dt.UTC)
            for stored in shard.records:
                if arrival(stored) >= ts:
                    return stored.seq - 1
            return sequence_ceiling(self._seq)
        text = position.sequence_number
        if text is None:
            raise self._err(
                "InvalidArgumentException",
                f"StartingSequenceNumber must be specified for ShardIteratorType {kind}",
                operation,
            )
        if not SEQ_RE.fullmatch(text):
            raise self._err(
                "ValidationException",
                f"1 validation error detected: Value '{text}' at 'startingSequenceNumber' "
                "failed to satisfy constraint: Member must satisfy regular expression "
                "pattern: 0|([1-9]\\d{0,128})",
                operation,
            )
        seq = int(text)
        owner = stream.seq_owner.get(seq)
        if owner != shard.shard_id:
            raise self._err(
                "InvalidArgumentException",
                f"Invalid StartingSequenceNumber. It encodes {owner or 'no shard of this stream'}"
                f", while it was used in a call to a shard with {shard.shard_id}",
                operation,
            )
        return seq - 1 if kind == "AT_SEQUENCE_NUMBER" else seq

    def _encode_iterator(
        self, stream: StreamState, shard: ShardState, after: int, issued: float
    ) -> str:
        payload = {
            "s": stream.name,
            "i": stream.incarnation,
            "h": shard.shard_id,
            "a": str(after),
            "t": issued,
        }
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.b64encode(raw).decode("ascii")

    def _decode_iterator(
        self, iterator: str, operation: str
    ) -> tuple[StreamState, ShardState, int, float]:
        try:
            payload = json.loads(base64.b64decode(iterator.encode("ascii"), validate=True))
            stream_name = str(payload["s"])
            incarnation = int(payload["i"])
            shard_id = str(payload["h"])
            after = int(payload["a"])
            issued = float(payload["t"])
        except (ValueError, KeyError, TypeError) as exc:
            raise self._err(
                "InvalidArgumentException", "Invalid ShardIterator.", operation
            ) from exc
        stream = self._streams.get(stream_name)
        if stream is None or stream.incarnation != incarnation:
            raise self._not_found(stream_name, operation)
        return stream, self._shard(stream, shard_id, operation), after, issued

    def _take(
        self, shard: ShardState, after: int, limit: int, max_bytes: int
    ) -> tuple[list[KinesisRecord], int, int]:
        """Records after ``after`` up to ``limit`` and ``max_bytes`` (at least one record):
        returns them, the new position and their size."""
        start = shard.first_after(after)
        batch: list[KinesisRecord] = []
        size = 0
        for stored in shard.records[start : start + limit]:
            if batch and size + stored.size > max_bytes:
                break
            batch.append(stored.record)
            size += stored.size
            after = stored.seq
        return batch, after, size

    def _at_end(self, shard: ShardState, after: int) -> bool:
        return (
            self.child_shards_at_end
            and not shard.is_open
            and shard.first_after(after) >= len(shard.records)
        )

    def _millis_behind(self, shard: ShardState, after: int, now: float) -> int:
        index = shard.first_after(after)
        if index >= len(shard.records):
            return 0
        return max(0, round((now - shard.records[index].at) * 1000))

    def _continuation(self, shard: ShardState, after: int) -> str:
        """A sequence number of this shard equivalent to ``after`` for AFTER_SEQUENCE_NUMBER."""
        index = shard.first_after(after)
        if index > 0:
            return str(shard.seqs[index - 1])
        return str(shard.start_seq)

    async def _wait(self, shard: ShardState) -> None:
        """Until new records (or a close) on ``shard``, or ``poll_interval`` real seconds."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        shard.waiters.add(fut)
        try:
            await asyncio.wait([fut], timeout=self.poll_interval)
        finally:
            shard.waiters.discard(fut)
            if not fut.done():
                fut.cancel()
