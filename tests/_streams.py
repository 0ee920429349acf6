"""Helpers for producer tests: read back what a stream holds, as the consumer would see it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from kinesio import aggregation
from kinesio._models import ProducerRecord
from kinesio.local import LocalEndpoint
from kinesio.testing import InMemoryKinesis


async def stored_user_records(
    kinesis: InMemoryKinesis, stream: str
) -> dict[str, list[tuple[str, int, ProducerRecord]]]:
    """Per shard, the user records it holds in order, deaggregated, as (seq, sub, record).

    Like the KCL, user records of an aggregate whose hash key lies outside the shard's range
    are left out: a consumer drops them (the producer must have re-sent them elsewhere).
    """
    out: dict[str, list[tuple[str, int, ProducerRecord]]] = {}
    for shard in await kinesis.list_shards(stream):
        rows: list[tuple[str, int, ProducerRecord]] = []
        for r in kinesis.records(stream, shard.shard_id):
            if aggregation.is_aggregate(r.data):
                for i, u in enumerate(aggregation.decode(r.data)):
                    if shard.contains(aggregation.hash_key(u.partition_key, u.explicit_hash_key)):
                        rows.append((r.sequence_number, i, u))
            else:
                rows.append((r.sequence_number, 0, ProducerRecord(r.data, r.partition_key)))
        out[shard.shard_id] = rows
    return out


async def all_user_records(kinesis: InMemoryKinesis, stream: str) -> list[ProducerRecord]:
    return [u for rows in (await stored_user_records(kinesis, stream)).values() for _, _, u in rows]


def stored_raw(endpoint: LocalEndpoint, stream: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(shard id, GetRecords record) of every stored record, shard by shard, read with boto3."""
    client: Any = boto3.client("kinesis", endpoint_url=endpoint.endpoint_url)
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            resp = client.get_records(ShardIterator=it, Limit=10_000)
            for r in resp["Records"]:
                yield shard["ShardId"], r
            if not resp["Records"]:
                break
            it = resp.get("NextShardIterator")


def stored_by_shard(endpoint: LocalEndpoint, stream: str) -> dict[str, list[ProducerRecord]]:
    """Per shard, its user records in stored order (deaggregated), read with plain boto3.

    Every listed shard has an entry, an empty one if it holds nothing."""
    client: Any = boto3.client("kinesis", endpoint_url=endpoint.endpoint_url)
    out: dict[str, list[ProducerRecord]] = {
        shard["ShardId"]: [] for shard in client.list_shards(StreamName=stream)["Shards"]
    }
    for shard_id, r in stored_raw(endpoint, stream):
        rows = out.setdefault(shard_id, [])
        if aggregation.is_aggregate(r["Data"]):
            rows.extend(aggregation.decode(r["Data"]))
        else:
            rows.append(ProducerRecord(r["Data"], r["PartitionKey"]))
    return out


def stored_data(endpoint: LocalEndpoint, stream: str) -> Counter[bytes]:
    """How many times each payload is in the stream (user records, deaggregated)."""
    return Counter(r.data for rows in stored_by_shard(endpoint, stream).values() for r in rows)


@contextmanager
def moto_stream(endpoint: LocalEndpoint, name: str, shards: int = 3) -> Iterator[str]:
    """A stream on moto's server for the block: created, waited for, deleted afterwards."""
    client: Any = boto3.client("kinesis", endpoint_url=endpoint.endpoint_url)
    client.create_stream(StreamName=name, ShardCount=shards)
    client.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    try:
        yield name
    finally:
        client.delete_stream(StreamName=name)
