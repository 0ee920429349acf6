"""Shard fetchers against real emulators: moto (polling; no ChildShards, so shard end comes
from ListShards) and kinesis-mock (polling with ChildShards; enhanced fan-out)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest

from kinesio import aggregation
from kinesio._aws import AioKinesis
from kinesio._config import Polling
from kinesio._models import (
    MAX_HASH_KEY,
    TRIM_HORIZON,
    ExtendedSequenceNumber,
    ProducerRecord,
    Record,
    Shard,
)
from kinesio.consumer import _fetcher
from kinesio.consumer._fanout import FanOutFetcher, ensure_stream_consumer
from kinesio.consumer._fetcher import FetchedBatch, ShardFetcher
from kinesio.consumer._polling import PollingFetcher
from kinesio.local import LocalEndpoint

pytestmark = pytest.mark.integration

HALF = 2**127
FAST = Polling(idle_time=0.05, catch_up_interval=0.0)
START = ExtendedSequenceNumber(TRIM_HORIZON)
_counter = iter(range(10**6))


@pytest.fixture(autouse=True)
def _quick_list_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Look at ListShards every 0.2 s rather than 5 s for the shard-end fallback."""
    monkeypatch.setattr(_fetcher, "LIST_SHARDS_INTERVAL", 0.2)
    monkeypatch.setattr(_fetcher, "LIST_SHARDS_INTERVAL_MAX", 0.4)
    monkeypatch.setattr(_fetcher, "BACKOFF_INITIAL", 0.05)
    monkeypatch.setattr(_fetcher, "BACKOFF_MAX", 0.5)


class Stream:
    """A one-shard stream on an emulator, written with plain boto3 and read with AioKinesis."""

    def __init__(self, endpoint: LocalEndpoint, kinesis: AioKinesis) -> None:
        self.name = f"fetcher-{next(_counter)}"
        self.kinesis = kinesis
        self.client: Any = boto3.client(
            "kinesis", endpoint_url=endpoint.endpoint_url, region_name=endpoint.region_name
        )

    def put(self, prefix: str, count: int, *, hash_key: int = 1) -> list[bytes]:
        data = [f"{prefix}{i}".encode() for i in range(count)]
        resp = self.client.put_records(
            StreamName=self.name,
            Records=[
                {"Data": d, "PartitionKey": "pk", "ExplicitHashKey": str(hash_key)} for d in data
            ],
        )
        assert resp["FailedRecordCount"] == 0
        return data

    def put_aggregate(self, users: list[ProducerRecord], *, hash_key: int = 1) -> str:
        resp = self.client.put_record(
            StreamName=self.name,
            Data=aggregation.encode(users),
            PartitionKey="agg",
            ExplicitHashKey=str(hash_key),
        )
        return str(resp["SequenceNumber"])

    async def shard(self) -> Shard:
        (shard,) = await self.kinesis.list_shards(self.name)
        return shard


@pytest.fixture
async def moto(moto_endpoint: LocalEndpoint) -> AsyncIterator[Stream]:
    async for stream in _stream(moto_endpoint):
        yield stream


@pytest.fixture
async def kinesis_mock(kinesis_mock_endpoint: LocalEndpoint) -> AsyncIterator[Stream]:
    async for stream in _stream(kinesis_mock_endpoint):
        yield stream


async def _stream(endpoint: LocalEndpoint) -> AsyncIterator[Stream]:
    kinesis = await AioKinesis.create(endpoint.aws_config())
    stream = Stream(endpoint, kinesis)
    try:
        await kinesis.create_stream(stream.name, 1)
        await kinesis.wait_for_active(stream.name)
        yield stream
        await kinesis.delete_stream(stream.name)
    finally:
        await kinesis.aclose()


async def collect(
    fetcher: ShardFetcher, count: int | None = None, *, timeout: float = 30.0
) -> tuple[list[Record], FetchedBatch | None]:
    """Records until ``count`` of them (or shard end when None); and the shard-end batch."""
    records: list[Record] = []
    async with asyncio.timeout(timeout):
        while True:
            batch = await fetcher.next_batch()
            records.extend(batch.records)
            if batch.shard_end:
                return records, batch
            if count is not None and len(records) >= count:
                return records, None


def data_of(records: list[Record]) -> list[bytes]:
    return [r.data for r in records]


async def split(stream: Stream, shard_id: str) -> None:
    await stream.kinesis.split_shard(stream.name, shard_id, HALF)
    await stream.kinesis.wait_for_active(stream.name)


def assert_split_children(end: FetchedBatch | None, parent: str) -> None:
    assert end is not None
    assert end.shard_end
    children = sorted(end.child_shards, key=lambda c: c.starting_hash_key)
    assert len(children) == 2
    assert all(c.parent_shards == (parent,) for c in children)
    assert (children[0].starting_hash_key, children[0].ending_hash_key) == (0, HALF - 1)
    assert (children[1].starting_hash_key, children[1].ending_hash_key) == (HALF, MAX_HASH_KEY)


# -- moto: polling, shard end from ListShards -----------------------------------------------


async def test_polling_on_moto_through_a_split(moto: Stream) -> None:
    shard = await moto.shard()
    first = moto.put("a", 150)
    users = [ProducerRecord(f"u{i}".encode(), f"k{i}") for i in range(4)]
    moto.put_aggregate(users)
    fetcher = PollingFetcher(moto.kinesis, moto.name, shard, START, polling=FAST)
    await fetcher.start()
    records, _ = await collect(fetcher, 154)
    assert data_of(records) == [*first, b"u0", b"u1", b"u2", b"u3"]
    assert [r.sub_sequence_number for r in records[-4:]] == [0, 1, 2, 3]
    second = moto.put("b", 20)
    await split(moto, shard.shard_id)
    # Nothing is written after the split: moto 5.x keeps routing writes to the closed parent
    # (its shard lookup does not skip closed shards), which the real service never does.
    more, end = await collect(fetcher)
    await fetcher.aclose()
    assert data_of(more) == second
    assert_split_children(end, shard.shard_id)


async def test_polling_on_moto_resumes_inside_an_aggregate(moto: Stream) -> None:
    shard = await moto.shard()
    moto.put("before", 3)
    seq = moto.put_aggregate([ProducerRecord(f"u{i}".encode(), f"k{i}") for i in range(5)])
    after = moto.put("after", 2)
    start = ExtendedSequenceNumber(seq, 1)
    fetcher = PollingFetcher(moto.kinesis, moto.name, shard, start, polling=FAST)
    await fetcher.start()
    records, _ = await collect(fetcher, 5)
    await fetcher.aclose()
    assert data_of(records) == [b"u2", b"u3", b"u4", *after]


# -- kinesis-mock: polling with ChildShards, and enhanced fan-out ----------------------------


async def test_polling_on_kinesis_mock_ends_with_child_shards(kinesis_mock: Stream) -> None:
    shard = await kinesis_mock.shard()
    first = kinesis_mock.put("a", 100)
    fetcher = PollingFetcher(kinesis_mock.kinesis, kinesis_mock.name, shard, START, polling=FAST)
    # No ListShards fallback here: the end must come from GetRecords' own ChildShards.
    fetcher._next_list_shards = math.inf
    await fetcher.start()
    records, _ = await collect(fetcher, 100)
    second = kinesis_mock.put("b", 10)
    await split(kinesis_mock, shard.shard_id)
    more, end = await collect(fetcher)
    await fetcher.aclose()
    assert data_of(records + more) == first + second
    assert_split_children(end, shard.shard_id)


async def test_fan_out_on_kinesis_mock(kinesis_mock: Stream) -> None:
    kinesis = kinesis_mock.kinesis
    summary = await kinesis.describe_stream_summary(kinesis_mock.name)
    arn = await ensure_stream_consumer(kinesis, summary.stream_arn, "fetcher-app", timeout=30)
    assert arn == await ensure_stream_consumer(kinesis, summary.stream_arn, "fetcher-app")
    shard = await kinesis_mock.shard()
    first = kinesis_mock.put("a", 50)
    users = [ProducerRecord(f"u{i}".encode(), f"k{i}") for i in range(3)]
    kinesis_mock.put_aggregate(users)
    fetcher = FanOutFetcher(kinesis, arn, shard, START, stream_name=kinesis_mock.name)
    await fetcher.start()
    records, _ = await collect(fetcher, 53)
    assert data_of(records) == [*first, b"u0", b"u1", b"u2"]
    second = kinesis_mock.put("b", 10)  # while subscribed
    more, _ = await collect(fetcher, 10)
    assert data_of(more) == second
    # kinesis-mock never signals shard end on a subscription: ListShards and a GetRecords
    # check after a caught-up event tell it instead.
    third = kinesis_mock.put("c", 5)
    await split(kinesis_mock, shard.shard_id)
    rest, end = await collect(fetcher)
    await fetcher.aclose()
    assert data_of(rest) == third
    assert_split_children(end, shard.shard_id)


async def test_fan_out_on_kinesis_mock_takes_over_a_live_subscription(
    kinesis_mock: Stream,
) -> None:
    """The lease moves: a new fetcher resumes at the checkpoint while the server still counts
    the old subscription (kinesis-mock refuses with ResourceInUse for a few seconds)."""
    kinesis = kinesis_mock.kinesis
    summary = await kinesis.describe_stream_summary(kinesis_mock.name)
    arn = await ensure_stream_consumer(kinesis, summary.stream_arn, "takeover-app", timeout=30)
    shard = await kinesis_mock.shard()
    first = kinesis_mock.put("a", 6)
    old = FanOutFetcher(kinesis, arn, shard, START, stream_name=kinesis_mock.name)
    records, _ = await collect(old, 6)
    await old.aclose()
    checkpoint = records[3].position
    second = kinesis_mock.put("b", 4)
    new = FanOutFetcher(kinesis, arn, shard, checkpoint, stream_name=kinesis_mock.name)
    more, _ = await collect(new, 6)
    await new.aclose()
    assert data_of(records) == first
    assert data_of(more) == first[4:] + second
