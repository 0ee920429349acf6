"""InMemoryKinesis behaves like the service (SPEC §1): limits, iterators, resharding, fan-out."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from kinesio import (
    EndpointConnectionError,
    ExpiredIteratorError,
    InvalidArgumentError,
    ResourceInUseError,
    ResourceNotFoundError,
    ServiceError,
    ThrottlingError,
    ValidationError,
)
from kinesio._kinesis import KinesisAdminAPI, KinesisAPI, StartingPosition
from kinesio._models import MAX_HASH_KEY, PutRecordsEntry, Shard, SubscribeEvent
from kinesio.consumer._checkpointer import check_issued_by, issuing_shard_index
from kinesio.testing import Fault, InMemoryKinesis

MiB = 1024 * 1024
STREAM = "orders"


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def kinesis(clock: FakeClock) -> AsyncIterator[InMemoryKinesis]:
    k = InMemoryKinesis(clock=clock)
    await k.create_stream(STREAM, 2)
    yield k
    await k.aclose()


def md5_key(partition_key: str) -> int:
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


def entry(key: str = "k", data: bytes = b"x", ehk: int | None = None) -> PutRecordsEntry:
    return PutRecordsEntry(data, key, None if ehk is None else str(ehk))


async def shard_map(k: InMemoryKinesis, stream: str = STREAM) -> dict[str, Shard]:
    return {s.shard_id: s for s in await k.list_shards(stream)}


async def read_all(k: InMemoryKinesis, shard_id: str, stream: str = STREAM) -> list[str]:
    it = await k.get_shard_iterator(stream, shard_id, StartingPosition("TRIM_HORIZON"))
    out = await k.get_records(it)
    return [r.sequence_number for r in out.records]


# -- streams and routing ---------------------------------------------------------------------


async def test_implements_both_protocols(kinesis: InMemoryKinesis) -> None:
    api: KinesisAPI = kinesis  # checked by mypy: same signatures as the Protocols
    admin: KinesisAdminAPI = kinesis
    assert isinstance(api, KinesisAPI)
    assert isinstance(admin, KinesisAdminAPI)


async def test_create_stream_splits_hash_space_like_kinesis() -> None:
    k = InMemoryKinesis()
    await k.create_stream("three", 3)
    shards = await k.list_shards("three")
    assert [s.shard_id for s in shards] == [f"shardId-00000000000{i}" for i in range(3)]
    # The ranges the service gives a 3-shard stream.
    assert [(s.starting_hash_key, s.ending_hash_key) for s in shards] == [
        (0, 113427455640312821154458202477256070484),
        (113427455640312821154458202477256070485, 226854911280625642308916404954512140969),
        (226854911280625642308916404954512140970, MAX_HASH_KEY),
    ]
    assert all(s.is_open and s.parent_shard_id is None for s in shards)
    summary = await k.describe_stream_summary("three")
    assert summary.status == "ACTIVE"
    assert summary.open_shard_count == 3
    assert summary.stream_arn == "arn:aws:kinesis:us-east-1:123456789012:stream/three"


async def test_stream_errors(kinesis: InMemoryKinesis) -> None:
    with pytest.raises(ResourceInUseError):
        await kinesis.create_stream(STREAM, 1)
    with pytest.raises(ValidationError):
        await kinesis.create_stream("zero", 0)
    with pytest.raises(InvalidArgumentError):
        await kinesis.create_stream("bad name!", 1)
    for call in (
        kinesis.describe_stream_summary("nope"),
        kinesis.list_shards("nope"),
        kinesis.put_records("nope", [entry()]),
        kinesis.get_shard_iterator("nope", "shardId-000000000000", StartingPosition("LATEST")),
        kinesis.delete_stream("nope"),
    ):
        with pytest.raises(ResourceNotFoundError):
            await call
    with pytest.raises(ResourceNotFoundError):
        await kinesis.get_shard_iterator(STREAM, "shardId-000000000009", StartingPosition("LATEST"))


async def test_routing_by_md5_of_partition_key() -> None:
    k = InMemoryKinesis(enforce_limits=False)
    await k.create_stream("s", 5)
    shards = await shard_map(k, "s")
    keys = [f"key-{i}" for i in range(300)] + ["é", "日本語", "a" * 256]
    results = await k.put_records("s", [entry(key) for key in keys])
    assert all(r.ok for r in results)
    for key, result in zip(keys, results, strict=True):
        assert result.shard_id is not None
        assert shards[result.shard_id].contains(md5_key(key))
    assert len({r.shard_id for r in results}) == 5


async def test_routing_by_explicit_hash_key(kinesis: InMemoryKinesis) -> None:
    low, high = (await kinesis.list_shards(STREAM))[:2]
    cases = {
        0: low.shard_id,
        low.ending_hash_key: low.shard_id,
        high.starting_hash_key: high.shard_id,
        MAX_HASH_KEY: high.shard_id,
    }
    results = await kinesis.put_records(STREAM, [entry("same", ehk=key) for key in cases])
    assert [r.shard_id for r in results] == list(cases.values())


async def test_sequence_numbers_have_the_services_layout_and_encode_their_shard(
    kinesis: InMemoryKinesis,
) -> None:
    low, high = (await kinesis.list_shards(STREAM))[:2]
    keys = [0, MAX_HASH_KEY, 1, MAX_HASH_KEY - 1]
    results = await kinesis.put_records(STREAM, [entry("k", ehk=key) for key in keys])
    numbers = [r.sequence_number for r in results]
    assert all(n is not None and len(n) == 56 for n in numbers)  # 56 digits, like the service's
    assert [issuing_shard_index(n or "") for n in numbers] == [0, 1, 0, 1]
    assert [int(n or "0") for n in numbers] == sorted(int(n or "0") for n in numbers)
    # so a checkpointer tells another shard's number apart, as it does on the service
    with pytest.raises(ValidationError, match=f"not by {low.shard_id}"):
        check_issued_by(numbers[1] or "", low.shard_id)
    check_issued_by(numbers[1] or "", high.shard_id)


@pytest.mark.parametrize("bad", ["01", "-1", "1.0", "abc", "", str(2**128), "9" * 40])
async def test_invalid_explicit_hash_key_fails_the_call(kinesis: InMemoryKinesis, bad: str) -> None:
    with pytest.raises(InvalidArgumentError):
        await kinesis.put_records(STREAM, [entry("a"), PutRecordsEntry(b"x", "b", bad)])
    assert kinesis.records(STREAM, "shardId-000000000000") == []
    assert kinesis.records(STREAM, "shardId-000000000001") == []


async def test_sequence_numbers_increase_and_look_real(
    kinesis: InMemoryKinesis, clock: FakeClock
) -> None:
    seen: list[int] = []
    for i in range(5):
        results = await kinesis.put_records(STREAM, [entry(f"k{i}-{j}") for j in range(20)])
        seen.extend(int(r.sequence_number or "") for r in results)
        clock.advance(0.25)
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    shards = await kinesis.list_shards(STREAM)
    for shard in shards:
        stored = kinesis.records(STREAM, shard.shard_id)
        seqs = [r.sequence_number for r in stored]
        assert all(len(s) == 56 and str(int(s)) == s for s in seqs)
        assert [int(s) for s in seqs] == sorted(int(s) for s in seqs)
        assert all(int(s) > int(shard.starting_sequence_number) for s in seqs)
        stamps = [r.approximate_arrival_timestamp for r in stored]
        assert all(t is not None and t.tzinfo is not None for t in stamps)
    first = kinesis.records(STREAM, shards[0].shard_id)[0].approximate_arrival_timestamp
    assert first is not None
    assert abs((first - dt.datetime.now(dt.UTC)).total_seconds()) < 60


# -- PutRecords limits and validation --------------------------------------------------------


async def test_write_throttling_per_shard_record_rate(
    kinesis: InMemoryKinesis, clock: FakeClock
) -> None:
    low, high = await kinesis.list_shards(STREAM)
    for _ in range(2):
        results = await kinesis.put_records(STREAM, [entry(ehk=0)] * 500)
        assert all(r.ok for r in results)
    # The shard's 1000 records/s are used up; the other shard is not affected.
    mixed = [entry(ehk=0), entry(ehk=MAX_HASH_KEY), entry(ehk=1)]
    results = await kinesis.put_records(STREAM, mixed)
    assert [r.error_code for r in results] == [
        "ProvisionedThroughputExceededException",
        None,
        "ProvisionedThroughputExceededException",
    ]
    assert results[0].shard_id is None
    assert results[0].sequence_number is None
    assert results[0].error_message == (
        f"Rate exceeded for shard {low.shard_id} in stream {STREAM} under account 123456789012."
    )
    assert results[1].shard_id == high.shard_id
    # Continuous refill: half a second gives 500 records back.
    clock.advance(0.5)
    results = await kinesis.put_records(STREAM, [entry(ehk=0)] * 500)
    assert all(r.ok for r in results)
    results = await kinesis.put_records(STREAM, [entry(ehk=0)] * 10)
    assert not any(r.ok for r in results)
    stats = kinesis.stats(STREAM)
    assert stats[low.shard_id].records_in == 1500
    assert stats[low.shard_id].throttled_records == 12
    assert stats[high.shard_id].throttled_records == 0
    assert len(kinesis.records(STREAM, low.shard_id)) == 1500


async def test_write_throttling_per_shard_byte_rate(
    kinesis: InMemoryKinesis, clock: FakeClock
) -> None:
    big = b"x" * (600 * 1024)
    results = await kinesis.put_records(STREAM, [entry("k", big, ehk=0), entry("k", big, ehk=0)])
    assert [r.ok for r in results] == [True, False]
    assert results[1].error_code == "ProvisionedThroughputExceededException"
    clock.advance(0.1)  # 423 KiB left + 102 KiB back: not yet enough for 600 KiB
    assert not (await kinesis.put_records(STREAM, [entry("k", big, ehk=0)]))[0].ok
    clock.advance(0.1)
    assert (await kinesis.put_records(STREAM, [entry("k", big, ehk=0)]))[0].ok


async def test_no_throttling_without_enforce_limits() -> None:
    k = InMemoryKinesis(enforce_limits=False, clock=FakeClock())
    await k.create_stream("s", 1)
    for _ in range(10):
        results = await k.put_records("s", [entry("k", b"x" * 4000)] * 500)
        assert all(r.ok for r in results)
    assert len(k.records("s", "shardId-000000000000")) == 5000


async def test_put_records_validation() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 2)
    with pytest.raises(ValidationError):
        await kinesis.put_records(STREAM, [])
    with pytest.raises(ValidationError):
        await kinesis.put_records(STREAM, [entry("")])
    with pytest.raises(InvalidArgumentError):
        await kinesis.put_records(STREAM, [entry()] * 501)
    with pytest.raises(InvalidArgumentError):
        await kinesis.put_records(STREAM, [entry("k" * 257)])
    # The partition key counts towards the 1 MiB record size.
    with pytest.raises(InvalidArgumentError):
        await kinesis.put_records(STREAM, [entry("kk", b"x" * (MiB - 1))])
    result = (await kinesis.put_records(STREAM, [entry("kk", b"x" * (MiB - 2))]))[0]
    assert result.ok
    # 256 characters is fine even when the UTF-8 form is longer.
    assert (await kinesis.put_records(STREAM, [entry("é" * 256)]))[0].ok


async def test_put_records_request_size_limit() -> None:
    k = InMemoryKinesis(enforce_limits=False)
    await k.create_stream("s", 1)
    record = entry("k", b"x" * (MiB - 1))
    assert all(r.ok for r in await k.put_records("s", [record] * 10))
    with pytest.raises(InvalidArgumentError):
        await k.put_records("s", [record] * 10 + [entry("k", b"y")])


async def test_max_record_size_is_a_stream_setting() -> None:
    k = InMemoryKinesis(enforce_limits=False)
    await k.create_stream("big", 1, max_record_size_kib=2048)
    assert (await k.put_records("big", [entry("k", b"x" * (2 * MiB - 1))]))[0].ok
    with pytest.raises(InvalidArgumentError):
        await k.put_records("big", [entry("k", b"x" * (2 * MiB))])


# -- iterators and GetRecords ----------------------------------------------------------------


async def put_one_shard(k: InMemoryKinesis, count: int, tag: str = "r") -> list[str]:
    results = await k.put_records(
        STREAM, [entry(f"{tag}{i}", f"{tag}{i}".encode(), ehk=0) for i in range(count)]
    )
    return [r.sequence_number or "" for r in results]


async def test_iterator_types(clock: FakeClock) -> None:
    kinesis = InMemoryKinesis(clock=clock, enforce_limits=False)  # many reads at one instant
    await kinesis.create_stream(STREAM, 2)
    shard = "shardId-000000000000"
    first = await put_one_shard(kinesis, 3, "a")
    clock.advance(2.0)
    second = await put_one_shard(kinesis, 2, "b")

    async def seqs(position: StartingPosition) -> list[str]:
        it = await kinesis.get_shard_iterator(STREAM, shard, position)
        return [r.sequence_number for r in (await kinesis.get_records(it)).records]

    assert await seqs(StartingPosition("TRIM_HORIZON")) == first + second
    assert await seqs(StartingPosition("AT_SEQUENCE_NUMBER", first[1])) == first[1:] + second
    assert await seqs(StartingPosition("AFTER_SEQUENCE_NUMBER", first[1])) == first[2:] + second
    assert await seqs(StartingPosition("AFTER_SEQUENCE_NUMBER", second[-1])) == []
    stamp = kinesis.records(STREAM, shard)[3].approximate_arrival_timestamp
    assert await seqs(StartingPosition("AT_TIMESTAMP", timestamp=stamp)) == second
    early = kinesis.now() - dt.timedelta(hours=1)
    assert await seqs(StartingPosition("AT_TIMESTAMP", timestamp=early)) == first + second
    naive = (kinesis.now() - dt.timedelta(seconds=1)).replace(tzinfo=None)
    assert await seqs(StartingPosition("AT_TIMESTAMP", timestamp=naive)) == second
    # The shard's starting sequence number is a valid position too.
    start = (await kinesis.list_shards(STREAM))[0].starting_sequence_number
    assert await seqs(StartingPosition("AFTER_SEQUENCE_NUMBER", start)) == first + second

    clock.advance(1.0)
    latest = await kinesis.get_shard_iterator(STREAM, shard, StartingPosition("LATEST"))
    future = await kinesis.get_shard_iterator(
        STREAM, shard, StartingPosition("AT_TIMESTAMP", timestamp=kinesis.now())
    )
    out = await kinesis.get_records(latest)
    assert out.records == []
    assert out.millis_behind_latest == 0
    assert out.next_shard_iterator
    third = await put_one_shard(kinesis, 2, "c")
    assert [r.sequence_number for r in (await kinesis.get_records(latest)).records] == third
    assert [r.sequence_number for r in (await kinesis.get_records(future)).records] == third
    assert [r.data for r in (await kinesis.get_records(out.next_shard_iterator)).records] == [
        b"c0",
        b"c1",
    ]


async def test_iterator_position_errors(kinesis: InMemoryKinesis) -> None:
    low_seq = (await put_one_shard(kinesis, 1))[0]
    high = "shardId-000000000001"
    bad_positions = [
        StartingPosition("AT_SEQUENCE_NUMBER"),
        StartingPosition("AT_TIMESTAMP"),
        StartingPosition("AT_SEQUENCE_NUMBER", "not-a-number"),
        StartingPosition("AFTER_SEQUENCE_NUMBER", "0"),
        # A sequence number of another shard.
        StartingPosition("AT_SEQUENCE_NUMBER", low_seq),
    ]
    for position in bad_positions:
        with pytest.raises(InvalidArgumentError):
            await kinesis.get_shard_iterator(STREAM, high, position)


async def test_get_records_paging_limits_and_lag(
    kinesis: InMemoryKinesis, clock: FakeClock
) -> None:
    shard = "shardId-000000000000"
    seqs = await put_one_shard(kinesis, 10)
    clock.advance(1.5)
    it = await kinesis.get_shard_iterator(STREAM, shard, StartingPosition("TRIM_HORIZON"))
    out = await kinesis.get_records(it, limit=4)
    assert [r.sequence_number for r in out.records] == seqs[:4]
    assert out.millis_behind_latest == 1500
    assert out.next_shard_iterator is not None
    out = await kinesis.get_records(out.next_shard_iterator, limit=100)
    assert [r.sequence_number for r in out.records] == seqs[4:]
    assert out.millis_behind_latest == 0
    assert out.child_shards == []
    with pytest.raises(InvalidArgumentError):
        await kinesis.get_records(it, limit=10_001)
    with pytest.raises(ValidationError):
        await kinesis.get_records(it, limit=0)
    with pytest.raises(ValidationError):
        await kinesis.get_records("")
    with pytest.raises(InvalidArgumentError):
        await kinesis.get_records("not an iterator")


async def test_iterator_expires(kinesis: InMemoryKinesis, clock: FakeClock) -> None:
    it = await kinesis.get_shard_iterator(
        STREAM, "shardId-000000000000", StartingPosition("TRIM_HORIZON")
    )
    clock.advance(299.0)
    out = await kinesis.get_records(it)
    assert out.next_shard_iterator is not None
    clock.advance(2.0)
    with pytest.raises(ExpiredIteratorError) as info:
        await kinesis.get_records(it)
    assert info.value.code == "ExpiredIteratorException"
    assert info.value.retriable
    # The iterator GetRecords returned was issued later and is still good.
    await kinesis.get_records(out.next_shard_iterator)


async def test_read_throttling_calls_per_second(kinesis: InMemoryKinesis, clock: FakeClock) -> None:
    shard = "shardId-000000000000"
    it = await kinesis.get_shard_iterator(STREAM, shard, StartingPosition("TRIM_HORIZON"))
    for _ in range(5):
        await kinesis.get_records(it)
    with pytest.raises(ThrottlingError) as info:
        await kinesis.get_records(it)
    assert info.value.code == "ProvisionedThroughputExceededException"
    # The other shard has its own budget.
    other = await kinesis.get_shard_iterator(
        STREAM, "shardId-000000000001", StartingPosition("LATEST")
    )
    await kinesis.get_records(other)
    clock.advance(0.2)
    await kinesis.get_records(it)
    with pytest.raises(ThrottlingError):
        await kinesis.get_records(it)
    assert kinesis.stats(STREAM)[shard].throttled_get_records == 2


async def test_read_throttling_bytes_and_10_mib_responses(clock: FakeClock) -> None:
    k = InMemoryKinesis(clock=clock)
    await k.create_stream("s", 1)
    for _ in range(12):  # 12 records of exactly 1 MiB, at the write limit of 1 MiB/s
        assert (await k.put_records("s", [entry("k", b"x" * (MiB - 1))]))[0].ok
        clock.advance(1.0)
    it = await k.get_shard_iterator("s", "shardId-000000000000", StartingPosition("TRIM_HORIZON"))
    out = await k.get_records(it)
    assert len(out.records) == 10  # 10 MiB per response
    assert out.next_shard_iterator is not None
    with pytest.raises(ThrottlingError):
        await k.get_records(out.next_shard_iterator)
    clock.advance(3.9)
    with pytest.raises(ThrottlingError):
        await k.get_records(out.next_shard_iterator)
    clock.advance(0.2)
    assert len((await k.get_records(out.next_shard_iterator)).records) == 2


# -- resharding ------------------------------------------------------------------------------


async def drain(k: InMemoryKinesis, shard_id: str, stream: str = STREAM) -> tuple[int, list[str]]:
    """Read a shard to its end: (records read, child shard ids)."""
    it: str | None = await k.get_shard_iterator(stream, shard_id, StartingPosition("TRIM_HORIZON"))
    count = 0
    while it is not None:
        out = await k.get_records(it)
        count += len(out.records)
        if out.next_shard_iterator is None:
            return count, [c.shard_id for c in out.child_shards]
        if not out.records:  # an open shard, read up to its tip
            return count, []
        it = out.next_shard_iterator
    raise AssertionError("unreachable")


async def test_split_shard(clock: FakeClock) -> None:
    k = InMemoryKinesis(clock=clock, enforce_limits=False)
    await k.create_stream(STREAM, 1)
    await put_one_shard(k, 3)
    parent = (await k.list_shards(STREAM))[0]
    middle = 2**127
    await k.split_shard(STREAM, parent.shard_id, middle)
    shards = await shard_map(k)
    closed = shards[parent.shard_id]
    assert not closed.is_open
    assert closed.ending_sequence_number is not None
    low, high = shards["shardId-000000000001"], shards["shardId-000000000002"]
    assert (low.starting_hash_key, low.ending_hash_key) == (0, middle - 1)
    assert (high.starting_hash_key, high.ending_hash_key) == (middle, MAX_HASH_KEY)
    assert low.parent_shard_id == high.parent_shard_id == parent.shard_id
    assert low.adjacent_parent_shard_id is None
    assert int(low.starting_sequence_number) > int(closed.ending_sequence_number)
    summary = await k.describe_stream_summary(STREAM)
    assert summary.open_shard_count == 2

    results = await k.put_records(STREAM, [entry(ehk=0), entry(ehk=MAX_HASH_KEY)])
    assert [r.shard_id for r in results] == [low.shard_id, high.shard_id]
    # Reading the parent ends with its children; records and the end can come together.
    it = await k.get_shard_iterator(STREAM, parent.shard_id, StartingPosition("TRIM_HORIZON"))
    out = await k.get_records(it)
    assert len(out.records) == 3
    assert out.next_shard_iterator is None
    assert out.millis_behind_latest == 0
    assert [(c.shard_id, c.parent_shards) for c in out.child_shards] == [
        (low.shard_id, (parent.shard_id,)),
        (high.shard_id, (parent.shard_id,)),
    ]
    assert out.child_shards[1].starting_hash_key == middle

    with pytest.raises(InvalidArgumentError):
        await k.split_shard(STREAM, parent.shard_id, middle // 2)  # closed
    for key in (low.starting_hash_key, low.ending_hash_key + 1, -1):
        with pytest.raises(InvalidArgumentError):
            await k.split_shard(STREAM, low.shard_id, key)
    await k.split_shard(STREAM, low.shard_id, low.ending_hash_key)  # one key is enough


async def test_closed_shard_without_child_shards_imitates_moto() -> None:
    k = InMemoryKinesis(child_shards_at_end=False, enforce_limits=False)
    await k.create_stream(STREAM, 1)
    await put_one_shard(k, 2)
    await k.split_shard(STREAM, "shardId-000000000000", 2**127)
    it = await k.get_shard_iterator(
        STREAM, "shardId-000000000000", StartingPosition("TRIM_HORIZON")
    )
    out = await k.get_records(it)
    assert len(out.records) == 2
    for _ in range(3):
        assert out.next_shard_iterator is not None
        assert out.child_shards == []
        out = await k.get_records(out.next_shard_iterator)
        assert out.records == []


async def test_merge_shards() -> None:
    k = InMemoryKinesis(enforce_limits=False)
    await k.create_stream(STREAM, 3)
    a, b, c = await k.list_shards(STREAM)
    with pytest.raises(InvalidArgumentError):
        await k.merge_shards(STREAM, a.shard_id, c.shard_id)
    with pytest.raises(InvalidArgumentError):
        await k.merge_shards(STREAM, a.shard_id, a.shard_id)
    await k.put_records(STREAM, [entry(ehk=0), entry(ehk=b.starting_hash_key)])
    await k.merge_shards(STREAM, b.shard_id, a.shard_id)
    shards = await shard_map(k)
    child = shards["shardId-000000000003"]
    assert child.parent_shard_id == b.shard_id
    assert child.adjacent_parent_shard_id == a.shard_id
    assert child.parent_shard_ids == (b.shard_id, a.shard_id)
    assert (child.starting_hash_key, child.ending_hash_key) == (0, b.ending_hash_key)
    assert not shards[a.shard_id].is_open
    assert not shards[b.shard_id].is_open
    for parent in (a, b):
        count, children = await drain(k, parent.shard_id)
        assert count == 1
        assert children == [child.shard_id]
    it = await k.get_shard_iterator(STREAM, a.shard_id, StartingPosition("LATEST"))
    out = await k.get_records(it)
    assert out.next_shard_iterator is None
    assert out.child_shards[0].parent_shards == (b.shard_id, a.shard_id)
    with pytest.raises(InvalidArgumentError):
        await k.merge_shards(STREAM, a.shard_id, b.shard_id)  # closed


def assert_lineage(shards: list[Shard], open_count: int) -> None:
    """Open shards tile the key space evenly; every parent id names a shard we know."""
    ids = {s.shard_id for s in shards}
    opened = sorted((s for s in shards if s.is_open), key=lambda s: s.starting_hash_key)
    assert len(opened) == open_count
    step = (MAX_HASH_KEY + 1) // open_count
    assert [s.starting_hash_key for s in opened] == [i * step for i in range(open_count)]
    assert opened[-1].ending_hash_key == MAX_HASH_KEY
    for left, right in itertools.pairwise(opened):
        assert left.ending_hash_key + 1 == right.starting_hash_key
    for s in shards:
        assert set(s.parent_shard_ids) <= ids


@pytest.mark.parametrize(("start", "targets"), [(2, [4, 3, 5, 3, 2, 1]), (3, [6, 4])])
async def test_update_shard_count(start: int, targets: list[int]) -> None:
    k = InMemoryKinesis(enforce_limits=False)
    await k.create_stream(STREAM, start)
    keys = [f"k{i}" for i in range(50)]
    await k.put_records(STREAM, [entry(key) for key in keys])
    for target in targets:
        await k.update_shard_count(STREAM, target)
        assert_lineage(await k.list_shards(STREAM), target)
        await k.put_records(STREAM, [entry(key) for key in keys])
    # Following children from the first shards reaches every record exactly once.
    total = 0
    todo = [s.shard_id for s in await k.list_shards(STREAM) if not s.parent_shard_ids]
    done: set[str] = set()
    while todo:
        shard_id = todo.pop()
        if shard_id in done:
            continue
        done.add(shard_id)
        count, children = await drain(k, shard_id)
        total += count
        todo.extend(children)
    assert total == 50 * (len(targets) + 1)


async def test_update_shard_count_limits(kinesis: InMemoryKinesis) -> None:
    with pytest.raises(InvalidArgumentError):
        await kinesis.update_shard_count(STREAM, 5)
    await kinesis.update_shard_count(STREAM, 4)
    with pytest.raises(InvalidArgumentError):
        await kinesis.update_shard_count(STREAM, 1)
    with pytest.raises(ValidationError):
        await kinesis.update_shard_count(STREAM, 0)


async def test_creating_and_updating_states(clock: FakeClock) -> None:
    k = InMemoryKinesis(clock=clock, creating_delay=10.0, updating_delay=5.0)
    await k.create_stream(STREAM, 1)
    assert (await k.describe_stream_summary(STREAM)).status == "CREATING"
    with pytest.raises(ResourceNotFoundError):
        await k.put_records(STREAM, [entry()])
    with pytest.raises(ResourceInUseError):
        await k.list_shards(STREAM)
    with pytest.raises(ResourceInUseError):
        await k.split_shard(STREAM, "shardId-000000000000", 2**127)
    with pytest.raises(ResourceInUseError):
        await k.wait_for_active(STREAM, timeout=0.05)
    clock.advance(10.0)
    assert (await k.wait_for_active(STREAM)).status == "ACTIVE"
    await k.split_shard(STREAM, "shardId-000000000000", 2**127)
    assert (await k.describe_stream_summary(STREAM)).status == "UPDATING"
    with pytest.raises(ResourceInUseError):
        await k.merge_shards(STREAM, "shardId-000000000001", "shardId-000000000002")
    assert (await k.put_records(STREAM, [entry()]))[0].ok
    clock.advance(5.0)
    await k.merge_shards(STREAM, "shardId-000000000001", "shardId-000000000002")


async def test_trim_and_retention(clock: FakeClock) -> None:
    k = InMemoryKinesis(clock=clock, enforce_limits=False)
    await k.create_stream(STREAM, 1)
    old = await put_one_shard(k, 3, "old")
    await k.split_shard(STREAM, "shardId-000000000000", 2**127)
    clock.advance(3600.0)
    cutoff = k.now()
    new = await k.put_records(STREAM, [entry(ehk=0)])
    oldest = k.records(STREAM, "shardId-000000000000")[0].approximate_arrival_timestamp
    assert k.trim(STREAM, older_than=oldest) == 0  # strictly older records only
    assert await read_all(k, "shardId-000000000000") == old
    assert k.trim(STREAM, older_than=cutoff) == 3
    ids = [s.shard_id for s in await k.list_shards(STREAM)]
    assert ids == ["shardId-000000000001", "shardId-000000000002"]
    with pytest.raises(ResourceNotFoundError):
        await k.get_shard_iterator(STREAM, "shardId-000000000000", StartingPosition("LATEST"))
    assert await read_all(k, "shardId-000000000001") == [new[0].sequence_number]
    clock.advance(25 * 3600.0)
    assert k.trim(STREAM) == 1  # default: the 24 h retention period
    assert await read_all(k, "shardId-000000000001") == []


async def test_delete_stream_invalidates_iterators(kinesis: InMemoryKinesis) -> None:
    it = await kinesis.get_shard_iterator(
        STREAM, "shardId-000000000000", StartingPosition("LATEST")
    )
    await kinesis.delete_stream(STREAM)
    with pytest.raises(ResourceNotFoundError):
        await kinesis.get_records(it)
    await kinesis.create_stream(STREAM, 2)  # same name, new stream: old iterators stay invalid
    with pytest.raises(ResourceNotFoundError):
        await kinesis.get_records(it)


# -- enhanced fan-out ------------------------------------------------------------------------


async def next_event(events: AsyncIterator[SubscribeEvent]) -> SubscribeEvent:
    return await asyncio.wait_for(anext(events), timeout=5.0)


async def app_consumer(kinesis: InMemoryKinesis) -> str:
    """The ARN of a new consumer named "app" of STREAM."""
    arn = (await kinesis.describe_stream_summary(STREAM)).stream_arn
    return (await kinesis.register_stream_consumer(arn, "app")).consumer_arn


async def test_register_and_describe_consumers(kinesis: InMemoryKinesis) -> None:
    arn = (await kinesis.describe_stream_summary(STREAM)).stream_arn
    consumer = await kinesis.register_stream_consumer(arn, "app")
    assert consumer.status == "ACTIVE"
    assert consumer.consumer_arn.startswith(f"{arn}/consumer/app:")
    assert await kinesis.register_stream_consumer(arn, "app") == consumer
    assert await kinesis.describe_stream_consumer(arn, "app") == consumer
    assert (await kinesis.describe_stream_summary(STREAM)).consumer_count == 1
    with pytest.raises(ResourceNotFoundError):
        await kinesis.describe_stream_consumer(arn, "other")
    with pytest.raises(ResourceNotFoundError):
        await kinesis.register_stream_consumer(arn + "x", "app")
    for i in range(19):
        await kinesis.register_stream_consumer(arn, f"c{i}")
    with pytest.raises(ThrottlingError) as info:
        await kinesis.register_stream_consumer(arn, "one-too-many")
    assert info.value.code == "LimitExceededException"


async def test_consumer_creating_delay(clock: FakeClock) -> None:
    k = InMemoryKinesis(clock=clock, consumer_creating_delay=5.0)
    await k.create_stream(STREAM, 1)
    arn = (await k.describe_stream_summary(STREAM)).stream_arn
    consumer = await k.register_stream_consumer(arn, "app")
    assert consumer.status == "CREATING"
    with pytest.raises(ResourceInUseError):
        async with k.subscribe_to_shard(
            consumer.consumer_arn, "shardId-000000000000", StartingPosition("LATEST")
        ):
            pass
    clock.advance(5.0)
    assert (await k.describe_stream_consumer(arn, "app")).status == "ACTIVE"


async def test_subscription_delivers_records_then_new_ones(
    kinesis: InMemoryKinesis, clock: FakeClock
) -> None:
    shard = "shardId-000000000000"
    arn = (await kinesis.describe_stream_summary(STREAM)).stream_arn
    consumer = await app_consumer(kinesis)
    before = await put_one_shard(kinesis, 3, "a")
    async with kinesis.subscribe_to_shard(
        consumer, shard, StartingPosition("TRIM_HORIZON")
    ) as events:
        event = await next_event(events)
        assert [r.sequence_number for r in event.records] == before
        assert event.continuation_sequence_number == before[-1]
        assert event.millis_behind_latest == 0

        async def put_later() -> list[str]:
            await asyncio.sleep(0.01)
            return await put_one_shard(kinesis, 2, "b")

        task = asyncio.create_task(put_later())
        event = await next_event(events)
        after = await task
        assert [r.sequence_number for r in event.records] == after
        assert event.continuation_sequence_number == after[-1]

        # A second subscription to the same consumer and shard is refused at first...
        with pytest.raises(ResourceInUseError):
            async with kinesis.subscribe_to_shard(consumer, shard, StartingPosition("LATEST")):
                pass
        # ...but another shard, or another consumer, is fine.
        other = (await kinesis.register_stream_consumer(arn, "other")).consumer_arn
        async with kinesis.subscribe_to_shard(other, shard, StartingPosition("LATEST")) as ev:
            assert (await next_event(ev)).records == []
        # Heartbeats: an empty event after 5 s without records.
        clock.advance(5.0)
        event = await next_event(events)
        assert event.records == []
        assert event.continuation_sequence_number == after[-1]

    # Resuming from the continuation number gives what follows.
    later = await put_one_shard(kinesis, 1, "c")
    async with kinesis.subscribe_to_shard(
        consumer, shard, StartingPosition("AFTER_SEQUENCE_NUMBER", after[-1])
    ) as events:
        assert [r.sequence_number for r in (await next_event(events)).records] == later
    assert kinesis.calls["SubscribeToShard"] == 4


async def test_subscription_continuation_without_records(kinesis: InMemoryKinesis) -> None:
    consumer = await app_consumer(kinesis)
    await kinesis.put_records(STREAM, [entry(ehk=MAX_HASH_KEY)])  # on the other shard
    async with kinesis.subscribe_to_shard(
        consumer, "shardId-000000000000", StartingPosition("LATEST")
    ) as events:
        cont = (await next_event(events)).continuation_sequence_number
    assert cont is not None
    # It is a position of this shard, valid to resubscribe with.
    seqs = await put_one_shard(kinesis, 1)
    async with kinesis.subscribe_to_shard(
        consumer, "shardId-000000000000", StartingPosition("AFTER_SEQUENCE_NUMBER", cont)
    ) as events:
        assert [r.sequence_number for r in (await next_event(events)).records] == seqs


async def test_subscription_expires_and_can_be_taken_over(
    kinesis: InMemoryKinesis, clock: FakeClock
) -> None:
    shard = "shardId-000000000000"
    consumer = await app_consumer(kinesis)
    async with kinesis.subscribe_to_shard(consumer, shard, StartingPosition("LATEST")) as old:
        await next_event(old)
        clock.advance(6.0)
        async with kinesis.subscribe_to_shard(consumer, shard, StartingPosition("LATEST")) as new:
            with pytest.raises(ResourceInUseError):
                await next_event(old)
            await next_event(new)
            clock.advance(300.0)
            with pytest.raises(StopAsyncIteration):
                await next_event(new)
    # Once it ended, subscribing again right away works.
    async with kinesis.subscribe_to_shard(consumer, shard, StartingPosition("LATEST")) as again:
        await next_event(again)


async def test_subscription_ends_with_child_shards(kinesis: InMemoryKinesis) -> None:
    shard = "shardId-000000000000"
    consumer = await app_consumer(kinesis)
    seqs = await put_one_shard(kinesis, 2)
    async with kinesis.subscribe_to_shard(
        consumer, shard, StartingPosition("TRIM_HORIZON")
    ) as events:
        assert [r.sequence_number for r in (await next_event(events)).records] == seqs

        async def split_later() -> None:
            await asyncio.sleep(0.01)
            await kinesis.split_shard(STREAM, shard, 2**126)

        task = asyncio.create_task(split_later())
        event = await next_event(events)
        await task
        assert event.records == []
        assert event.continuation_sequence_number is None
        assert [c.shard_id for c in event.child_shards] == [
            "shardId-000000000002",
            "shardId-000000000003",
        ]
        with pytest.raises(StopAsyncIteration):
            await next_event(events)


async def test_subscription_errors(kinesis: InMemoryKinesis) -> None:
    consumer = await app_consumer(kinesis)
    with pytest.raises(ResourceNotFoundError):
        async with kinesis.subscribe_to_shard(
            consumer + "0", "shardId-000000000000", StartingPosition("LATEST")
        ):
            pass
    with pytest.raises(ResourceNotFoundError):
        async with kinesis.subscribe_to_shard(
            consumer, "shardId-000000000042", StartingPosition("LATEST")
        ):
            pass
    async with kinesis.subscribe_to_shard(
        consumer, "shardId-000000000000", StartingPosition("LATEST")
    ) as events:
        await next_event(events)
        await kinesis.delete_stream(STREAM)
        with pytest.raises(ResourceNotFoundError):
            await next_event(events)


# -- fault injection -------------------------------------------------------------------------


async def test_whole_call_faults_with_count(kinesis: InMemoryKinesis) -> None:
    kinesis.inject(Fault("PutRecords", "ServiceUnavailable", count=2))
    for _ in range(2):
        with pytest.raises(ServiceError) as info:
            await kinesis.put_records(STREAM, [entry()])
        assert info.value.code == "ServiceUnavailable"
        assert info.value.operation == "PutRecords"
        assert info.value.retriable
    assert (await kinesis.put_records(STREAM, [entry()]))[0].ok
    assert kinesis.calls["PutRecords"] == 3

    kinesis.inject(Fault("GetRecords", "ProvisionedThroughputExceededException"))
    it = await kinesis.get_shard_iterator(
        STREAM, "shardId-000000000000", StartingPosition("LATEST")
    )
    with pytest.raises(ThrottlingError):
        await kinesis.get_records(it)
    kinesis.clear_faults()
    kinesis.inject(Fault("GetRecords", "ExpiredIteratorException", count=1))
    with pytest.raises(ExpiredIteratorError):
        await kinesis.get_records(it)
    await kinesis.get_records(it)

    kinesis.inject(Fault("*", "ConnectionError", count=1))
    with pytest.raises(EndpointConnectionError):
        await kinesis.list_shards(STREAM)
    kinesis.inject(Fault("SubscribeToShard", "InternalFailure", count=1))
    consumer = await app_consumer(kinesis)
    with pytest.raises(ServiceError):
        async with kinesis.subscribe_to_shard(
            consumer, "shardId-000000000000", StartingPosition("LATEST")
        ):
            pass


async def test_per_record_faults(kinesis: InMemoryKinesis) -> None:
    kinesis.inject(Fault("PutRecords", "InternalFailure", per_record=True, count=3))
    results = await kinesis.put_records(STREAM, [entry(f"k{i}") for i in range(5)])
    assert [r.error_code for r in results] == ["InternalFailure"] * 3 + [None] * 2
    assert results[0].error_message == "Internal service failure."
    assert all(r.shard_id is None and r.sequence_number is None for r in results[:3])
    stored = sum(len(kinesis.records(STREAM, s)) for s in kinesis.stats(STREAM))
    assert stored == 2
    assert sum(s.faulted_records for s in kinesis.stats(STREAM).values()) == 3
    results = await kinesis.put_records(STREAM, [entry(f"k{i}") for i in range(5)])
    assert all(r.ok for r in results)


async def per_record_pattern(seed: int) -> list[bool]:
    k = InMemoryKinesis(seed=seed, enforce_limits=False)
    await k.create_stream("s", 1)
    k.inject(
        Fault(
            "PutRecords", "ProvisionedThroughputExceededException", per_record=True, probability=0.5
        )
    )
    results = await k.put_records("s", [entry(f"k{i}") for i in range(200)])
    return [r.ok for r in results]


async def test_fault_probability_is_deterministic_per_seed() -> None:
    first, again, other = (
        await per_record_pattern(0),
        await per_record_pattern(0),
        await per_record_pattern(1),
    )
    assert first == again
    assert first != other
    assert 60 < first.count(False) < 140

    async def whole_call_pattern(seed: int) -> list[bool]:
        k = InMemoryKinesis(seed=seed)
        await k.create_stream("s", 1)
        k.inject(Fault("DescribeStreamSummary", "InternalFailure", probability=0.3))
        outcome = []
        for _ in range(50):
            try:
                await k.describe_stream_summary("s")
                outcome.append(True)
            except ServiceError:
                outcome.append(False)
        return outcome

    assert await whole_call_pattern(7) == await whole_call_pattern(7)
    assert 0 < (await whole_call_pattern(7)).count(False) < 50


async def test_response_lost_and_latency(kinesis: InMemoryKinesis) -> None:
    kinesis.inject(Fault("PutRecords", "ConnectionError", response_lost=True, count=1))
    with pytest.raises(EndpointConnectionError):
        await kinesis.put_records(STREAM, [entry(ehk=0)])
    assert len(kinesis.records(STREAM, "shardId-000000000000")) == 1  # stored all the same

    kinesis.inject(Fault("ListShards", latency=0.05, count=1))
    started = time.monotonic()
    await kinesis.list_shards(STREAM)
    assert time.monotonic() - started >= 0.045
    await kinesis.list_shards(STREAM)  # count=1: spent
    assert kinesis.calls["ListShards"] == 2


def test_fault_validation() -> None:
    from kinesio import ConfigurationError

    with pytest.raises(ConfigurationError):
        Fault("PutRecords", "InternalFailure", probability=1.5)
    with pytest.raises(ConfigurationError):
        Fault("GetRecords", "InternalFailure", per_record=True)
    with pytest.raises(ConfigurationError):
        Fault("PutRecords", None, per_record=True)
    with pytest.raises(ConfigurationError):
        Fault("PutRecords", "InternalFailure", count=-1)
