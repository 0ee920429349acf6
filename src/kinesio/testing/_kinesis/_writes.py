"""Writing: PutRecords, with validation and the per-shard write limits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from kinesio._errors import ValidationError
from kinesio._models import (
    MAX_HASH_KEY,
    KinesisRecord,
    PutRecordsEntry,
    PutRecordsResultEntry,
)
from kinesio.testing._kinesis._core import Core
from kinesio.testing._kinesis._faults import PER_RECORD_MESSAGES
from kinesio.testing._kinesis._limits import (
    HASH_KEY_RE,
    MAX_PARTITION_KEY_CHARS,
    MAX_PUT_RECORDS,
    MAX_PUT_RECORDS_BYTES,
)
from kinesio.testing._kinesis._shards import (
    ShardState,
    Stored,
    hash_key,
    record_size,
)


class Writes(Core):
    """PutRecords."""

    async def put_records(
        self, stream_name: str, entries: Sequence[PutRecordsEntry]
    ) -> list[PutRecordsResultEntry]:
        """PutRecords: store each entry on the open shard owning its hash key.

        The result list is parallel to ``entries``. Entries over a shard's write limits (with
        ``enforce_limits``) or hit by a per-record fault get an ``error_code`` and are not
        stored; the others are. The whole call fails with ``ValidationError`` (no entries,
        empty partition key), ``InvalidArgumentError`` (more than 500 entries, a partition key
        over 256 characters, a malformed or too large ExplicitHashKey, an entry over the
        stream's maximum record size or a request over 10 MiB; sizes count data plus
        partition key) or ``ResourceNotFoundError`` (unknown or still CREATING stream).
        """
        op = "PutRecords"
        lost = await self._enter(op)
        if not entries:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid length for parameter Records, "
                "value: 0, valid min length: 1"
            )
        for i, e in enumerate(entries):
            if not e.partition_key:
                raise ValidationError(
                    f"{op}: Parameter validation failed:\nInvalid length for parameter "
                    f"Records[{i}].PartitionKey, value: 0, valid min length: 1"
                )
        if len(entries) > MAX_PUT_RECORDS:
            raise self._err(
                "ValidationException",
                f"1 validation error detected: Value '{len(entries)} records' at 'records' "
                f"failed to satisfy constraint: Member must have length less than or equal "
                f"to {MAX_PUT_RECORDS}",
                op,
            )
        for i, e in enumerate(entries):
            if len(e.partition_key) > MAX_PARTITION_KEY_CHARS:
                raise self._err(
                    "ValidationException",
                    f"1 validation error detected: Value at 'records.{i + 1}.member."
                    "partitionKey' failed to satisfy constraint: Member must have length less "
                    f"than or equal to {MAX_PARTITION_KEY_CHARS}",
                    op,
                )
            if e.explicit_hash_key is not None and not HASH_KEY_RE.fullmatch(e.explicit_hash_key):
                raise self._err(
                    "ValidationException",
                    f"1 validation error detected: Value '{e.explicit_hash_key}' at "
                    f"'records.{i + 1}.member.explicitHashKey' failed to satisfy constraint: "
                    "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
                    op,
                )
        stream = self._data_stream(stream_name, op)
        sizes = [record_size(e.data, e.partition_key) for e in entries]
        for i, (e, size) in enumerate(zip(entries, sizes, strict=True)):
            if size > stream.max_record_size:
                raise self._err(
                    "InvalidArgumentException",
                    f"Record {i} of {size} bytes (data and partition key) exceeds the maximum "
                    f"record size of {stream.max_record_size} bytes",
                    op,
                )
            if e.explicit_hash_key is not None and int(e.explicit_hash_key) > MAX_HASH_KEY:
                raise self._err(
                    "InvalidArgumentException",
                    f"Invalid ExplicitHashKey. ExplicitHashKey must be in the range: "
                    f"[0, {MAX_HASH_KEY}]. Specified value was {e.explicit_hash_key}",
                    op,
                )
        if sum(sizes) > MAX_PUT_RECORDS_BYTES:
            raise self._err(
                "InvalidArgumentException",
                f"Records size {sum(sizes)} bytes exceeds the 10 MiB limit of a PutRecords call",
                op,
            )

        now = self._clock()
        arrival = self._wall(now)
        results: list[PutRecordsResultEntry] = []
        fault_latency = 0.0
        touched: set[ShardState] = set()
        for e, size in zip(entries, sizes, strict=True):
            shard = stream.route(hash_key(e))
            fault = self._per_record_fault(op)
            if fault is not None:
                fault_latency = max(fault_latency, fault.latency)
                shard.stats["faulted_records"] += 1
                code = fault.error_code or "InternalFailure"
                results.append(
                    PutRecordsResultEntry(
                        error_code=code,
                        error_message=PER_RECORD_MESSAGES.get(code, fault.message),
                    )
                )
                continue
            if self.enforce_limits:
                shard.write_records.refill(now)
                shard.write_bytes.refill(now)
                if shard.write_records.tokens < 1 or shard.write_bytes.tokens < size:
                    shard.stats["throttled_records"] += 1
                    results.append(
                        PutRecordsResultEntry(
                            error_code="ProvisionedThroughputExceededException",
                            error_message=self._rate_message(stream, shard),
                        )
                    )
                    continue
                shard.write_records.tokens -= 1
                shard.write_bytes.tokens -= size
            seq = self._next_seq(stream, shard.shard_id)
            record = KinesisRecord(
                sequence_number=str(seq),
                data=bytes(e.data),
                partition_key=e.partition_key,
                approximate_arrival_timestamp=arrival,
            )
            shard.records.append(Stored(seq, size, now, record))
            shard.seqs.append(seq)
            shard.stats["records_in"] += 1
            shard.stats["bytes_in"] += size
            touched.add(shard)
            results.append(PutRecordsResultEntry(shard_id=shard.shard_id, sequence_number=str(seq)))
        for shard in touched:
            shard.notify()
        if fault_latency:
            await asyncio.sleep(fault_latency)
        self._raise_lost(lost, op)
        return results
