"""Kinesis records to user records: KPL deaggregation as the KCL does it (SPEC §3)."""

from __future__ import annotations

from kinesio import aggregation
from kinesio._errors import AggregationError
from kinesio._models import MAX_HASH_KEY, KinesisRecord, ProducerRecord, Record, Shard


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
    append = out.append
    sequence_number = record.sequence_number
    arrival = record.approximate_arrival_timestamp
    shard_id = shard.shard_id
    everything = shard.starting_hash_key == 0 and shard.ending_hash_key == MAX_HASH_KEY
    # An aggregate's records share a partition-key table: each key is hashed once.
    inside: dict[str, bool] = {}
    for index, user in enumerate(users):
        key = user.partition_key
        explicit = user.explicit_hash_key
        if not everything:
            # decode() has validated the explicit hash key and the UTF-8 of the partition key,
            # so hash_key() cannot fail here.
            if explicit is not None:
                keep = shard.contains(aggregation.hash_key(key, explicit))
            else:
                found = inside.get(key)
                if found is None:
                    found = inside[key] = shard.contains(aggregation.hash_key(key))
                keep = found
            if not keep:
                continue
        append(
            Record(
                data=user.data,
                partition_key=key,
                sequence_number=sequence_number,
                sub_sequence_number=index,
                explicit_hash_key=explicit,
                approximate_arrival_timestamp=arrival,
                shard_id=shard_id,
                aggregated=True,
            )
        )
    return out
