"""Kinesis records to user records: KPL deaggregation as the KCL does it (SPEC §3)."""

from __future__ import annotations

from kinesio import aggregation
from kinesio._errors import AggregationError
from kinesio._models import KinesisRecord, ProducerRecord, Record, Shard


def deaggregate(record: KinesisRecord, shard: Shard) -> list[Record]:
    """User records of one Kinesis record, in order, with sub_sequence_number 0..n-1 for aggregates.

    Not an aggregate, or an aggregate that does not decode (``AggregationError``: wrong MD5,
    malformed protobuf, ...): passed through as ONE plain :class:`Record` (sub-sequence 0,
    ``aggregated=False``), like the KCL. Aggregated user records whose hash key (explicit hash
    key, else MD5 of the partition key) is outside ``shard``'s ``[starting, ending]`` range are
    dropped: after a reshard the producer re-sent them to the shard that owns them now. The
    kept records keep their index inside the aggregate as sub-sequence number, so numbers may
    have gaps. ``shard_id`` and the arrival timestamp are set on every record. Never raises for
    a record GetRecords or SubscribeToShard returned.
    """
    users: list[ProducerRecord] | None = None
    if aggregation.is_aggregate(record.data):
        try:
            users = aggregation.decode(record.data)
        except AggregationError:
            users = None
    if users is None:
        return [
            Record(
                data=record.data,
                partition_key=record.partition_key,
                sequence_number=record.sequence_number,
                approximate_arrival_timestamp=record.approximate_arrival_timestamp,
                shard_id=shard.shard_id,
            )
        ]
    out: list[Record] = []
    for index, user in enumerate(users):
        # decode() has validated the explicit hash key and the UTF-8 of the partition key, so
        # hash_key() cannot fail here.
        if not shard.contains(aggregation.hash_key(user.partition_key, user.explicit_hash_key)):
            continue
        out.append(
            Record(
                data=user.data,
                partition_key=user.partition_key,
                sequence_number=record.sequence_number,
                sub_sequence_number=index,
                explicit_hash_key=user.explicit_hash_key,
                approximate_arrival_timestamp=record.approximate_arrival_timestamp,
                shard_id=shard.shard_id,
                aggregated=True,
            )
        )
    return out
