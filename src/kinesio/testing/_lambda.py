"""Lambda Kinesis events built from user records, for unit tests of Lambda functions."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable
from typing import Any

from kinesio._errors import ValidationError
from kinesio._models import ProducerRecord
from kinesio.aggregation import AggregateBuilder

__all__ = ["LambdaEventBuilder", "lambda_event"]

# The service's sequence numbers are 56 decimal digits; these keep that shape.
_SEQUENCE_BASE = 49590338271490256608559692538361571095921575989136588898
_MAX_RECORD = 1_048_576


class LambdaEventBuilder:
    """Builds the event a Kinesis event source mapping hands a Lambda function.

    Each ``add*`` call appends one Kinesis record (with the next sequence number, which it
    returns) to one shard of one stream. :meth:`build` returns the event as a new dict, in the
    service's shape (``Records[].kinesis.data`` base64, ``eventID`` ``"<shard>:<sequence>"``,
    ``approximateArrivalTimestamp`` in float seconds). Never blocks, makes no AWS call.
    """

    def __init__(
        self,
        stream_name: str = "test-stream",
        *,
        shard_id: str = "shardId-000000000000",
        region: str = "us-east-1",
        account_id: str = "123456789012",
        first_sequence_number: int = _SEQUENCE_BASE,
        arrival: dt.datetime | None = None,
    ) -> None:
        self.stream_arn = f"arn:aws:kinesis:{region}:{account_id}:stream/{stream_name}"
        self.shard_id = shard_id
        self._region = region
        self._account_id = account_id
        self._next = first_sequence_number
        self._arrival = arrival or dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        self._records: list[dict[str, Any]] = []

    def add(self, data: bytes, partition_key: str) -> str:
        """Append a plain (not aggregated) record; returns its sequence number."""
        return self.add_raw(data, partition_key)

    def add_aggregate(self, records: Iterable[ProducerRecord]) -> str:
        """Append ONE KPL aggregate of ``records`` (kinesio's encoder, outer partition key the
        first record's, as the KPL does); returns its sequence number.

        Raises :class:`~kinesio.ValidationError` for no records, a record the KPL format cannot
        carry, or records that do not fit in one 1 MiB Kinesis record.
        """
        builder = AggregateBuilder(max_size=_MAX_RECORD)
        for record in records:
            if not builder.try_add(record):
                raise ValidationError("the records do not fit in one 1 MiB aggregate")
        data = builder.build()
        return self.add_raw(data, builder.records[0].partition_key)

    def add_raw(self, data: bytes, partition_key: str) -> str:
        """Append a Kinesis record of exactly these bytes (an aggregate from another library, a
        corrupt one, ...); returns its sequence number."""
        sequence_number = str(self._next)
        self._next += 1
        arrival = self._arrival + dt.timedelta(milliseconds=len(self._records))
        self._records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": partition_key,
                    "sequenceNumber": sequence_number,
                    "data": base64.b64encode(data).decode("ascii"),
                    "approximateArrivalTimestamp": arrival.timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{self.shard_id}:{sequence_number}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{self._account_id}:role/lambda-role",
                "awsRegion": self._region,
                "eventSourceARN": self.stream_arn,
            }
        )
        return sequence_number

    def build(self) -> dict[str, Any]:
        """The event so far, as a new dict (later ``add*`` calls do not change it)."""
        return {"Records": [_copy(r) for r in self._records]}


def _copy(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "kinesis": dict(record["kinesis"])}


def lambda_event(
    records: Iterable[ProducerRecord],
    *,
    aggregate: bool = False,
    stream_name: str = "test-stream",
    shard_id: str = "shardId-000000000000",
) -> dict[str, Any]:
    """A Lambda Kinesis event of ``records``: one Kinesis record each, or with ``aggregate=True``
    packed into KPL aggregates (as few as fit, 1 MiB each, kinesio's encoder).

    Plain records carry no explicit hash key (Lambda events have no such field); aggregated ones
    keep it. Raises :class:`~kinesio.ValidationError` for a record the KPL format cannot carry
    (``aggregate=True``). Sizes are not checked: build what the test needs.
    """
    builder = LambdaEventBuilder(stream_name, shard_id=shard_id)
    if not aggregate:
        for record in records:
            builder.add(record.data, record.partition_key)
        return builder.build()
    agg = AggregateBuilder(max_size=_MAX_RECORD)
    for record in records:
        if not agg.try_add(record):
            builder.add_raw(agg.build(), agg.records[0].partition_key)
            agg.reset()
            # An empty builder takes any record, so this cannot be refused.
            agg.try_add(record)
    if len(agg):
        builder.add_raw(agg.build(), agg.records[0].partition_key)
    return builder.build()
