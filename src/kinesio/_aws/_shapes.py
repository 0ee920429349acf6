"""Kinesis response and request dicts to and from kinesio's models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kinesio._kinesis import StartingPosition
from kinesio._models import (
    ChildShard,
    KinesisRecord,
    Shard,
)


def shard_from(item: dict[str, Any]) -> Shard:
    rng = item["HashKeyRange"]
    seq = item.get("SequenceNumberRange", {})
    return Shard(
        shard_id=item["ShardId"],
        starting_hash_key=int(rng["StartingHashKey"]),
        ending_hash_key=int(rng["EndingHashKey"]),
        parent_shard_id=item.get("ParentShardId"),
        adjacent_parent_shard_id=item.get("AdjacentParentShardId"),
        starting_sequence_number=seq.get("StartingSequenceNumber", "0"),
        ending_sequence_number=seq.get("EndingSequenceNumber"),
    )


def records_from(items: Sequence[dict[str, Any]]) -> list[KinesisRecord]:
    return [
        KinesisRecord(
            sequence_number=r["SequenceNumber"],
            data=bytes(r["Data"]),
            partition_key=r["PartitionKey"],
            approximate_arrival_timestamp=r.get("ApproximateArrivalTimestamp"),
        )
        for r in items
    ]


def child_shards_from(items: Sequence[dict[str, Any]] | None) -> list[ChildShard]:
    return [
        ChildShard(
            shard_id=c["ShardId"],
            parent_shards=tuple(c.get("ParentShards", ())),
            starting_hash_key=int(c["HashKeyRange"]["StartingHashKey"]),
            ending_hash_key=int(c["HashKeyRange"]["EndingHashKey"]),
        )
        for c in items or ()
    ]


def position_args(position: StartingPosition, *, type_key: str) -> dict[str, Any]:
    args: dict[str, Any] = {type_key: position.type}
    if position.sequence_number is not None:
        args["StartingSequenceNumber"] = position.sequence_number
    if position.timestamp is not None:
        args["Timestamp"] = position.timestamp
    return args


def subscribe_position(position: StartingPosition) -> dict[str, Any]:
    # SubscribeToShard names the fields Type / SequenceNumber / Timestamp, unlike
    # GetShardIterator's ShardIteratorType / StartingSequenceNumber / Timestamp.
    args: dict[str, Any] = {"Type": position.type}
    if position.sequence_number is not None:
        args["SequenceNumber"] = position.sequence_number
    if position.timestamp is not None:
        args["Timestamp"] = position.timestamp
    return args
