"""Kinesis records to user records: KPL deaggregation as the KCL does it (SPEC §3)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from kinesio import aggregation
from kinesio._errors import AggregationError
from kinesio._models import MAX_HASH_KEY, KinesisRecord, ProducerRecord, Record, Shard

__all__ = ["KEY_CACHE_SIZE", "deaggregate", "plain_record"]

#: Partition keys whose "inside this shard?" answer one reader remembers across aggregates
#: (the cache is emptied when it grows past this; a key is an MD5 away from its answer).
KEY_CACHE_SIZE = 8192

# Record is a frozen, slotted dataclass: its __init__ sets each of its eight fields through
# object.__setattr__ (~3 µs a record, the largest single cost of a plain record). Setting the
# slots through their descriptors builds the same object (equal, hashable, frozen) in a third
# of that, as aggregation._decode does for ProducerRecord.
_NEW = object.__new__


def _slot_setter(name: str) -> Callable[[Record, object], None]:
    setter: Callable[[Record, object], None] = vars(Record)[name].__set__
    return setter


_SET_DATA = _slot_setter("data")
_SET_PK = _slot_setter("partition_key")
_SET_SEQ = _slot_setter("sequence_number")
_SET_SUB = _slot_setter("sub_sequence_number")
_SET_EHK = _slot_setter("explicit_hash_key")
_SET_TS = _slot_setter("approximate_arrival_timestamp")
_SET_SHARD = _slot_setter("shard_id")
_SET_AGG = _slot_setter("aggregated")


def _record(
    data: bytes,
    partition_key: str,
    sequence_number: str,
    sub_sequence_number: int,
    explicit_hash_key: int | None,
    arrival: dt.datetime | None,
    shard_id: str,
    aggregated: bool,
) -> Record:
    r: Record = _NEW(Record)
    _SET_DATA(r, data)
    _SET_PK(r, partition_key)
    _SET_SEQ(r, sequence_number)
    _SET_SUB(r, sub_sequence_number)
    _SET_EHK(r, explicit_hash_key)
    _SET_TS(r, arrival)
    _SET_SHARD(r, shard_id)
    _SET_AGG(r, aggregated)
    return r


def plain_record(record: KinesisRecord, shard_id: str) -> Record:
    """``record`` as ONE plain :class:`Record` (sub-sequence 0, ``aggregated=False``)."""
    return _record(
        record.data,
        record.partition_key,
        record.sequence_number,
        0,
        None,
        record.approximate_arrival_timestamp,
        shard_id,
        False,
    )


def deaggregate(
    record: KinesisRecord, shard: Shard, inside: dict[str, bool] | None = None
) -> list[Record]:
    """User records of one Kinesis record, in order, with sub_sequence_number 0..n-1 for aggregates.

    Not an aggregate, or an aggregate that does not decode (``AggregationError``: wrong MD5,
    malformed protobuf, ...): passed through as ONE plain :class:`Record` (sub-sequence 0,
    ``aggregated=False``), like the KCL. Aggregated user records whose hash key (explicit hash
    key, else MD5 of the partition key) is outside ``shard``'s ``[starting, ending]`` range are
    dropped: after a reshard the producer re-sent them to the shard that owns them now. The
    kept records keep their index inside the aggregate as sub-sequence number, so numbers may
    have gaps. ``shard_id`` and the arrival timestamp are set on every record. Never raises for
    a record GetRecords or SubscribeToShard returned.

    ``inside`` remembers, per partition key, whether the key hashes into ``shard``: a reader
    passes the same dict for every record of its shard (never one of another shard), so a key
    is hashed once, not once per aggregate. It is emptied past :data:`KEY_CACHE_SIZE` keys.
    """
    users: list[ProducerRecord] | None = None
    if aggregation.is_aggregate(record.data):
        try:
            users = aggregation.decode(record.data)
        except AggregationError:
            users = None
    if users is None:
        return [plain_record(record, shard.shard_id)]
    out: list[Record] = []
    append = out.append
    sequence_number = record.sequence_number
    arrival = record.approximate_arrival_timestamp
    shard_id = shard.shard_id
    everything = shard.starting_hash_key == 0 and shard.ending_hash_key == MAX_HASH_KEY
    if inside is None:
        inside = {}
    elif len(inside) > KEY_CACHE_SIZE:
        inside.clear()
    new = _record
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
        append(new(user.data, key, sequence_number, index, explicit, arrival, shard_id, True))
    return out
