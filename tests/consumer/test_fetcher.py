"""Fetching one shard (polling and fan-out) and deaggregation, on InMemoryKinesis."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiobotocore.parsers
import botocore.session
import pytest

from kinesio import _aws, aggregation
from kinesio._config import Polling
from kinesio._errors import (
    AccessDeniedError,
    ConfigurationError,
    ResourceInUseError,
    ResourceNotFoundError,
)
from kinesio._kinesis import KinesisAPI, StartingPosition
from kinesio._models import (
    AT_TIMESTAMP,
    LATEST,
    MAX_HASH_KEY,
    SHARD_END,
    TRIM_HORIZON,
    ChildShard,
    ExtendedSequenceNumber,
    KinesisRecord,
    ProducerRecord,
    PutRecordsEntry,
    Record,
    Shard,
)
from kinesio.consumer import _fetcher
from kinesio.consumer._deaggregate import deaggregate
from kinesio.consumer._fanout import FanOutFetcher, ensure_stream_consumer
from kinesio.consumer._fetcher import FetchedBatch, ShardFetcher
from kinesio.consumer._polling import PollingFetcher
from kinesio.testing import CONNECTION_ERROR, Fault, InMemoryKinesis

STREAM = "orders"
SHARD0 = "shardId-000000000000"
HALF = 2**127
FAST = Polling(idle_time=0.01, catch_up_interval=0.0)
START = ExtendedSequenceNumber(TRIM_HORIZON)


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoffs and ListShards intervals in milliseconds, so retries do not slow the suite."""
    monkeypatch.setattr(_fetcher, "BACKOFF_INITIAL", 0.005)
    monkeypatch.setattr(_fetcher, "BACKOFF_MAX", 0.02)
    monkeypatch.setattr(_fetcher, "LIST_SHARDS_INTERVAL", 0.02)
    monkeypatch.setattr(_fetcher, "LIST_SHARDS_INTERVAL_MAX", 0.05)
    monkeypatch.setattr(_fetcher, "HEARTBEAT", 0.1)


@pytest.fixture
async def kinesis() -> AsyncIterator[InMemoryKinesis]:
    k = InMemoryKinesis(enforce_limits=False)
    await k.create_stream(STREAM, 1)
    yield k
    await k.aclose()


# -- helpers ----------------------------------------------------------------------------------


async def put(
    kinesis: InMemoryKinesis, prefix: str, count: int, *, hash_key: int = 0
) -> list[bytes]:
    """``count`` plain records ``prefix0..`` with one explicit hash key; returns their data."""
    data = [f"{prefix}{i}".encode() for i in range(count)]
    for chunk in range(0, count, 500):
        entries = [PutRecordsEntry(d, "pk", str(hash_key)) for d in data[chunk : chunk + 500]]
        results = await kinesis.put_records(STREAM, entries)
        assert all(r.ok for r in results)
    return data


async def put_aggregate(
    kinesis: InMemoryKinesis, users: Sequence[ProducerRecord], *, hash_key: int = 0
) -> str:
    """One KPL aggregate; returns its sequence number."""
    entry = PutRecordsEntry(aggregation.encode(users), "agg", str(hash_key))
    (result,) = await kinesis.put_records(STREAM, [entry])
    assert result.sequence_number is not None
    return result.sequence_number


async def shard(kinesis: InMemoryKinesis, shard_id: str = SHARD0) -> Shard:
    return next(s for s in await kinesis.list_shards(STREAM) if s.shard_id == shard_id)


async def collect(
    fetcher: ShardFetcher, count: int | None = None, *, timeout: float = 5.0
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


def data_of(records: Sequence[Record]) -> list[bytes]:
    return [r.data for r in records]


def assert_in_order(records: Sequence[Record]) -> None:
    positions = [(int(r.sequence_number), r.sub_sequence_number) for r in records]
    assert positions == sorted(set(positions)), "out of order or duplicated"


async def polling(
    kinesis: KinesisAPI,
    start: ExtendedSequenceNumber = START,
    *,
    shard_model: Shard | None = None,
    polling_settings: Polling = FAST,
    **kwargs: object,
) -> PollingFetcher:
    model = shard_model or Shard(SHARD0, 0, MAX_HASH_KEY)
    fetcher = PollingFetcher(
        kinesis,
        STREAM,
        model,
        start,
        polling=polling_settings,
        **kwargs,  # type: ignore[arg-type]
    )
    await fetcher.start()
    return fetcher


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


# -- deaggregate ------------------------------------------------------------------------------

WHOLE = Shard(SHARD0, 0, MAX_HASH_KEY)
STAMP = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def kinesis_record(data: bytes, seq: str = "42") -> KinesisRecord:
    return KinesisRecord(seq, data, "outer", STAMP)


def test_deaggregate_plain_record_passes_through() -> None:
    (record,) = deaggregate(kinesis_record(b"hello"), WHOLE)
    assert record == Record(
        data=b"hello",
        partition_key="outer",
        sequence_number="42",
        approximate_arrival_timestamp=STAMP,
        shard_id=SHARD0,
    )
    assert record.position == ExtendedSequenceNumber("42", 0)


def test_deaggregate_aggregate_numbers_user_records() -> None:
    users = [ProducerRecord(b"a", "k1"), ProducerRecord(b"b", "k2", 7), ProducerRecord(b"c", "k1")]
    records = deaggregate(kinesis_record(aggregation.encode(users)), WHOLE)
    assert [(r.data, r.partition_key, r.sub_sequence_number) for r in records] == [
        (b"a", "k1", 0),
        (b"b", "k2", 1),
        (b"c", "k1", 2),
    ]
    assert [r.explicit_hash_key for r in records] == [None, 7, None]
    assert all(r.aggregated and r.sequence_number == "42" for r in records)
    assert all(r.shard_id == SHARD0 and r.approximate_arrival_timestamp == STAMP for r in records)


@pytest.mark.parametrize(
    "data",
    [
        aggregation.MAGIC + b"\x00" * 40,  # right magic, wrong MD5
        # Right magic and MD5, but the body is not a valid AggregatedRecord.
        aggregation.MAGIC + b"\xff\xff" + hashlib.md5(b"\xff\xff").digest(),
        aggregation.MAGIC[:3],
    ],
)
def test_deaggregate_garbage_looking_like_an_aggregate_passes_through(data: bytes) -> None:
    (record,) = deaggregate(kinesis_record(data), WHOLE)
    assert record.data == data
    assert record.sub_sequence_number == 0
    assert not record.aggregated


def test_deaggregate_drops_user_records_outside_the_shard() -> None:
    low = Shard("shardId-000000000001", 0, HALF - 1, parent_shard_id=SHARD0)
    md5_high = next(
        f"k{i}" for i in range(100) if aggregation.hash_key(f"k{i}") >= HALF
    )  # a partition key hashing into the upper half
    users = [
        ProducerRecord(b"in", "x", 5),
        ProducerRecord(b"out-ehk", "x", HALF),
        ProducerRecord(b"out-md5", md5_high),
        ProducerRecord(b"in-edge", "x", HALF - 1),
    ]
    records = deaggregate(kinesis_record(aggregation.encode(users)), low)
    assert [(r.data, r.sub_sequence_number) for r in records] == [(b"in", 0), (b"in-edge", 3)]
    assert all(r.shard_id == low.shard_id for r in records)


def test_deaggregate_hashes_repeated_keys_alike_and_keeps_all_on_a_whole_range_shard() -> None:
    low = Shard("shardId-000000000001", 0, HALF - 1, parent_shard_id=SHARD0)
    high_key = next(f"k{i}" for i in range(100) if aggregation.hash_key(f"k{i}") >= HALF)
    low_key = next(f"k{i}" for i in range(100) if aggregation.hash_key(f"k{i}") < HALF)
    keys = [low_key, high_key, low_key, high_key, low_key]
    users = [ProducerRecord(f"{i}".encode(), key) for i, key in enumerate(keys)]
    blob = aggregation.encode(users)
    kept = deaggregate(kinesis_record(blob), low)
    assert [r.sub_sequence_number for r in kept] == [0, 2, 4]
    whole = Shard(SHARD0, 0, MAX_HASH_KEY)
    assert [r.sub_sequence_number for r in deaggregate(kinesis_record(blob), whole)] == [
        0,
        1,
        2,
        3,
        4,
    ]


# -- start positions --------------------------------------------------------------------------


async def test_trim_horizon_delivers_everything_in_order(kinesis: InMemoryKinesis) -> None:
    first = await put(kinesis, "a", 120)
    fetcher = await polling(
        kinesis, polling_settings=Polling(max_records=25, idle_time=0.01, catch_up_interval=0)
    )
    records, _ = await collect(fetcher, 120)
    second = await put(kinesis, "b", 80)
    more, _ = await collect(fetcher, 80)
    await fetcher.aclose()
    assert data_of(records + more) == first + second
    assert_in_order(records + more)
    assert all(r.shard_id == SHARD0 for r in records)
    assert kinesis.calls["GetRecords"] >= 200 // 25


async def test_latest_skips_what_was_written_before(kinesis: InMemoryKinesis) -> None:
    await put(kinesis, "old", 5)
    fetcher = await polling(kinesis, ExtendedSequenceNumber(LATEST))
    await wait_for(lambda: kinesis.calls["GetShardIterator"] >= 1)
    new = await put(kinesis, "new", 3)
    records, _ = await collect(fetcher, 3)
    await fetcher.aclose()
    assert data_of(records) == new


async def test_at_timestamp() -> None:
    clock = FakeClock()
    kinesis = InMemoryKinesis(enforce_limits=False, clock=clock)
    await kinesis.create_stream(STREAM, 1)
    await put(kinesis, "early", 4)
    clock.advance(10.0)
    since = kinesis.now()
    late = await put(kinesis, "late", 3)
    fetcher = await polling(kinesis, ExtendedSequenceNumber(AT_TIMESTAMP), initial_timestamp=since)
    records, _ = await collect(fetcher, 3)
    await fetcher.aclose()
    assert data_of(records) == late


async def test_at_timestamp_needs_a_timestamp(kinesis: InMemoryKinesis) -> None:
    with pytest.raises(ConfigurationError):
        PollingFetcher(kinesis, STREAM, WHOLE, ExtendedSequenceNumber(AT_TIMESTAMP), polling=FAST)
    with pytest.raises(ConfigurationError):
        FanOutFetcher(
            kinesis, "arn", WHOLE, ExtendedSequenceNumber(AT_TIMESTAMP), stream_name=STREAM
        )


@pytest.mark.parametrize("fan_out", [False, True])
async def test_shard_end_checkpoint_ends_at_once(kinesis: InMemoryKinesis, fan_out: bool) -> None:
    fetcher: ShardFetcher
    if fan_out:
        fetcher = FanOutFetcher(
            kinesis, "arn", WHOLE, ExtendedSequenceNumber(SHARD_END), stream_name=STREAM
        )
    else:
        fetcher = PollingFetcher(
            kinesis, STREAM, WHOLE, ExtendedSequenceNumber(SHARD_END), polling=FAST
        )
    await fetcher.start()
    for _ in range(3):
        batch = await fetcher.next_batch()
        assert batch.shard_end
        assert batch.records == []
        assert batch.child_shards == []
    await fetcher.aclose()
    assert kinesis.calls["GetShardIterator"] == kinesis.calls["SubscribeToShard"] == 0


async def test_resume_after_a_plain_record(kinesis: InMemoryKinesis) -> None:
    await put(kinesis, "a", 5)
    seq = kinesis.records(STREAM, SHARD0)[2].sequence_number
    fetcher = await polling(kinesis, ExtendedSequenceNumber(seq, 0))
    records, _ = await collect(fetcher, 2)
    await fetcher.aclose()
    assert data_of(records) == [b"a3", b"a4"]


@pytest.mark.parametrize("fan_out", [False, True])
async def test_resume_inside_an_aggregate(kinesis: InMemoryKinesis, fan_out: bool) -> None:
    await put(kinesis, "before", 2)
    users = [ProducerRecord(f"u{i}".encode(), f"k{i}") for i in range(5)]
    seq = await put_aggregate(kinesis, users)
    after = await put(kinesis, "after", 2)
    start = ExtendedSequenceNumber(seq, 2)
    fetcher: ShardFetcher
    if fan_out:
        arn = await ensure_stream_consumer(
            kinesis, (await kinesis.describe_stream_summary(STREAM)).stream_arn, "app"
        )
        fetcher = FanOutFetcher(kinesis, arn, WHOLE, start, stream_name=STREAM)
        await fetcher.start()
    else:
        fetcher = await polling(kinesis, start)
    records, _ = await collect(fetcher, 4)
    await fetcher.aclose()
    assert data_of(records) == [b"u3", b"u4", *after]
    assert [r.sub_sequence_number for r in records[:2]] == [3, 4]
    assert all(r.sequence_number == seq for r in records[:2])


# -- polling: failures ------------------------------------------------------------------------


async def test_read_throttling_backs_off_and_loses_nothing() -> None:
    kinesis = InMemoryKinesis()  # 5 GetRecords calls/s per shard
    await kinesis.create_stream(STREAM, 1)
    written = await put(kinesis, "r", 40)
    fetcher = await polling(
        kinesis, polling_settings=Polling(max_records=4, idle_time=0.01, catch_up_interval=0)
    )
    records, _ = await collect(fetcher, 40)
    await fetcher.aclose()
    assert data_of(records) == written
    assert kinesis.stats(STREAM)[SHARD0].throttled_get_records > 0


@pytest.mark.parametrize(
    "code",
    ["ProvisionedThroughputExceededException", "InternalFailure", CONNECTION_ERROR],
)
async def test_retriable_errors_are_retried(kinesis: InMemoryKinesis, code: str) -> None:
    first = await put(kinesis, "a", 10)
    fetcher = await polling(
        kinesis, polling_settings=Polling(max_records=3, idle_time=0.01, catch_up_interval=0.01)
    )
    records, _ = await collect(fetcher, 3)
    kinesis.inject(Fault("GetRecords", code, count=3))
    kinesis.inject(Fault("GetShardIterator", code, count=1))
    second = await put(kinesis, "b", 10)
    more, _ = await collect(fetcher, 17)
    await fetcher.aclose()
    assert data_of(records + more) == first + second


async def test_expired_iterator_fault_resumes_after_the_last_record(
    kinesis: InMemoryKinesis,
) -> None:
    first = await put(kinesis, "a", 10)
    fetcher = await polling(
        kinesis, polling_settings=Polling(max_records=4, idle_time=0.01, catch_up_interval=0.01)
    )
    records, _ = await collect(fetcher, 4)
    kinesis.inject(Fault("GetRecords", "ExpiredIteratorException", count=2))
    second = await put(kinesis, "b", 5)
    more, _ = await collect(fetcher, 11)
    await fetcher.aclose()
    assert data_of(records + more) == first + second
    assert kinesis.calls["GetShardIterator"] >= 3


async def test_expired_iterator_by_the_clock() -> None:
    clock = FakeClock()
    kinesis = InMemoryKinesis(enforce_limits=False, clock=clock, iterator_ttl=10.0)
    await kinesis.create_stream(STREAM, 1)
    users = [ProducerRecord(f"u{i}".encode(), f"k{i}") for i in range(3)]
    await put_aggregate(kinesis, users)
    fetcher = await polling(kinesis, clock=clock)
    records, _ = await collect(fetcher, 3)
    clock.advance(20.0)  # past the fake's iterator TTL, short of the fetcher's own refresh
    late = await put(kinesis, "late", 2)
    more, _ = await collect(fetcher, 2)
    await fetcher.aclose()
    assert data_of(records + more) == [b"u0", b"u1", b"u2", *late]
    assert_in_order(records + more)
    assert kinesis.calls["GetShardIterator"] == 2


async def test_old_iterator_is_replaced_before_it_expires() -> None:
    clock = FakeClock()
    kinesis = InMemoryKinesis(enforce_limits=False, clock=clock)  # iterators live 300 s
    await kinesis.create_stream(STREAM, 1)
    first = await put(kinesis, "a", 6)
    # A full queue pauses fetching: the iterator ages while the handler is busy.
    fetcher = await polling(kinesis, clock=clock, max_prefetch_records=3)
    await wait_for(lambda: kinesis.calls["GetRecords"] >= 1)
    await asyncio.sleep(0.05)
    assert kinesis.calls["GetShardIterator"] == 1
    clock.advance(280.0)
    records, _ = await collect(fetcher, 6)
    await fetcher.aclose()
    assert data_of(records) == first
    assert kinesis.calls["GetShardIterator"] == 2


@pytest.mark.parametrize("fan_out", [False, True])
async def test_non_retriable_error_surfaces_after_what_was_fetched(
    kinesis: InMemoryKinesis, fan_out: bool
) -> None:
    written = await put(kinesis, "a", 5)
    fetcher: ShardFetcher
    if fan_out:
        summary = await kinesis.describe_stream_summary(STREAM)
        arn = await ensure_stream_consumer(kinesis, summary.stream_arn, "app")
        fetcher = FanOutFetcher(kinesis, arn, WHOLE, START, stream_name=STREAM)
        await fetcher.start()
        await wait_for(lambda: kinesis.calls["SubscribeToShard"] >= 1)
        await asyncio.sleep(0.05)
        await kinesis.deregister_stream_consumer(summary.stream_arn, "app")
        expected: type[Exception] = ResourceNotFoundError
    else:
        fetcher = await polling(kinesis)
        await wait_for(lambda: kinesis.calls["GetRecords"] >= 1)
        kinesis.inject(Fault("GetRecords", "AccessDeniedException"))
        expected = AccessDeniedError
    records, _ = await collect(fetcher, 5)
    assert data_of(records) == written
    with pytest.raises(expected):
        await collect(fetcher)
    with pytest.raises(expected):
        await fetcher.next_batch()
    await fetcher.aclose()


async def test_stream_deleted_surfaces(kinesis: InMemoryKinesis) -> None:
    fetcher = await polling(kinesis)
    await wait_for(lambda: kinesis.calls["GetRecords"] >= 1)
    await kinesis.delete_stream(STREAM)
    with pytest.raises(ResourceNotFoundError):
        await collect(fetcher, 1)
    await fetcher.aclose()


@pytest.mark.parametrize("subscribe", [False, True], ids=["polling", "fan-out"])
async def test_a_shard_removed_by_retention_ends_with_its_children(
    kinesis: InMemoryKinesis, subscribe: bool
) -> None:
    """As the KCL does: a leased shard that no longer exists is ended, not an error."""
    await put(kinesis, "old", 3)
    await kinesis.split_shard(STREAM, SHARD0, HALF)
    kinesis.trim(STREAM, older_than=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert SHARD0 not in {s.shard_id for s in await kinesis.list_shards(STREAM)}
    fetcher: ShardFetcher = await (fan_out(kinesis) if subscribe else polling(kinesis))
    records, end = await collect(fetcher)
    await fetcher.aclose()
    assert records == []
    assert end is not None
    assert [c.shard_id for c in end.child_shards] == [
        "shardId-000000000001",
        "shardId-000000000002",
    ]


# -- polling: shard end -----------------------------------------------------------------------


async def test_split_ends_with_children_after_the_last_record(kinesis: InMemoryKinesis) -> None:
    before = await put(kinesis, "a", 30)
    await kinesis.split_shard(STREAM, SHARD0, HALF)
    await put(kinesis, "child", 5)  # lands on a child, not on the parent
    fetcher = await polling(
        kinesis, polling_settings=Polling(max_records=10, idle_time=0.01, catch_up_interval=0.01)
    )
    records, end = await collect(fetcher)
    assert data_of(records) == before
    assert end is not None
    assert end.records, "the final response's records come with the shard end"
    assert end.child_shards == [
        ChildShard("shardId-000000000001", (SHARD0,), 0, HALF - 1),
        ChildShard("shardId-000000000002", (SHARD0,), HALF, MAX_HASH_KEY),
    ]
    again = await fetcher.next_batch()
    assert again.shard_end
    assert again.records == []
    assert again.child_shards == end.child_shards
    await fetcher.aclose()


async def test_merge_ends_both_parents_with_the_child() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 2)
    low, high = await kinesis.list_shards(STREAM)
    fetchers = [
        await polling(kinesis, shard_model=low),
        await polling(kinesis, shard_model=high),
    ]
    a = await put(kinesis, "low", 3, hash_key=0)
    b = await put(kinesis, "high", 3, hash_key=MAX_HASH_KEY)
    await asyncio.sleep(0.02)
    await kinesis.merge_shards(STREAM, low.shard_id, high.shard_id)
    child = ChildShard("shardId-000000000002", (low.shard_id, high.shard_id), 0, MAX_HASH_KEY)
    for fetcher, written in zip(fetchers, (a, b), strict=True):
        records, end = await collect(fetcher)
        assert data_of(records) == written
        assert end is not None
        assert end.child_shards == [child]
        await fetcher.aclose()


async def test_shard_end_without_child_shards_known_closed() -> None:
    """moto's behaviour: a drained closed shard never ends; ListShards tells instead."""
    kinesis = InMemoryKinesis(enforce_limits=False, child_shards_at_end=False)
    await kinesis.create_stream(STREAM, 1)
    before = await put(kinesis, "a", 7)
    await kinesis.split_shard(STREAM, SHARD0, HALF)
    closed = await shard(kinesis)
    assert not closed.is_open
    fetcher = await polling(kinesis, shard_model=closed)
    records, end = await collect(fetcher)
    await fetcher.aclose()
    assert data_of(records) == before
    assert end is not None
    assert [c.shard_id for c in end.child_shards] == [
        "shardId-000000000001",
        "shardId-000000000002",
    ]
    assert all(c.parent_shards == (SHARD0,) for c in end.child_shards)


async def test_shard_end_without_child_shards_closed_while_reading() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False, child_shards_at_end=False)
    await kinesis.create_stream(STREAM, 1)
    fetcher = await polling(kinesis)  # the shard is open when reading starts
    first = await put(kinesis, "a", 5)
    records, _ = await collect(fetcher, 5)
    await asyncio.sleep(0.1)  # several caught-up polls and ListShards looks
    assert not fetcher._end
    second = await put(kinesis, "b", 5)
    await kinesis.split_shard(STREAM, SHARD0, HALF)
    more, end = await collect(fetcher)
    await fetcher.aclose()
    assert data_of(records + more) == first + second
    assert end is not None
    assert len(end.child_shards) == 2


# -- bounded prefetch -------------------------------------------------------------------------


async def test_prefetch_is_bounded_by_records(kinesis: InMemoryKinesis) -> None:
    written = await put(kinesis, "r", 1000)
    fetcher = await polling(kinesis, max_prefetch_records=100)
    await wait_for(lambda: kinesis.calls["GetRecords"] >= 1)
    await asyncio.sleep(0.1)  # ten idle intervals: a fetcher that ignored the bound would go on
    assert kinesis.calls["GetRecords"] == 1
    assert fetcher._queue.records <= 100
    first = await fetcher.next_batch()
    assert len(first.records) == 100
    await wait_for(lambda: kinesis.calls["GetRecords"] >= 2)
    rest, _ = await collect(fetcher, 900)
    await fetcher.aclose()
    assert data_of([*first.records, *rest]) == written


async def test_prefetch_is_bounded_by_bytes(kinesis: InMemoryKinesis) -> None:
    await put(kinesis, "r", 300)
    fetcher = await polling(
        kinesis,
        polling_settings=Polling(max_records=50, idle_time=0.01, catch_up_interval=0),
        max_prefetch_bytes=100,
    )
    await wait_for(lambda: kinesis.calls["GetRecords"] >= 1)
    await asyncio.sleep(0.1)
    # One 50-record response (140 bytes) went past 100 bytes: fetching stopped there.
    assert kinesis.calls["GetRecords"] == 1
    records, _ = await collect(fetcher, 300)
    await fetcher.aclose()
    assert len(records) == 300


async def test_heartbeat_and_close(kinesis: InMemoryKinesis) -> None:
    fetcher = await polling(kinesis, polling_settings=Polling(idle_time=0.05))
    async with asyncio.timeout(1):
        batch = await fetcher.next_batch()  # nothing to read: an empty batch, not a hang
    assert batch.records == []
    assert not batch.shard_end
    await fetcher.aclose()
    await fetcher.aclose()
    assert (await fetcher.next_batch()).records == []
    calls = kinesis.calls["GetRecords"]
    await asyncio.sleep(0.05)
    assert kinesis.calls["GetRecords"] == calls  # the background task is gone


async def test_cancelled_next_batch_loses_nothing(kinesis: InMemoryKinesis) -> None:
    fetcher = await polling(kinesis, polling_settings=Polling(idle_time=0.2))
    waiting = asyncio.ensure_future(fetcher.next_batch())
    await asyncio.sleep(0.01)
    waiting.cancel()
    written = await put(kinesis, "a", 3)
    records, _ = await collect(fetcher, 3)
    await fetcher.aclose()
    assert data_of(records) == written


# -- fan-out ----------------------------------------------------------------------------------


async def consumer_arn(kinesis: InMemoryKinesis) -> str:
    summary = await kinesis.describe_stream_summary(STREAM)
    return await ensure_stream_consumer(kinesis, summary.stream_arn, "app")


async def fan_out(
    kinesis: InMemoryKinesis,
    start: ExtendedSequenceNumber = START,
    *,
    shard_model: Shard = WHOLE,
    **kwargs: object,
) -> FanOutFetcher:
    fetcher = FanOutFetcher(
        kinesis,
        await consumer_arn(kinesis),
        shard_model,
        start,
        stream_name=STREAM,
        **kwargs,  # type: ignore[arg-type]
    )
    await fetcher.start()
    return fetcher


async def test_ensure_stream_consumer_waits_until_active() -> None:
    kinesis = InMemoryKinesis(consumer_creating_delay=0.2)
    await kinesis.create_stream(STREAM, 1)
    arn = (await kinesis.describe_stream_summary(STREAM)).stream_arn
    consumer = await ensure_stream_consumer(kinesis, arn, "app")
    assert (await kinesis.describe_stream_consumer(arn, "app")).status == "ACTIVE"
    assert consumer == (await kinesis.describe_stream_consumer(arn, "app")).consumer_arn
    assert await ensure_stream_consumer(kinesis, arn, "app") == consumer  # already there
    slow = InMemoryKinesis(consumer_creating_delay=60)
    await slow.create_stream(STREAM, 1)
    arn = (await slow.describe_stream_summary(STREAM)).stream_arn
    with pytest.raises(ResourceInUseError):
        await ensure_stream_consumer(slow, arn, "app", timeout=0.2)
    with pytest.raises(ResourceNotFoundError):
        await ensure_stream_consumer(slow, arn + "-missing", "app")


async def test_fan_out_delivers_everything_in_order(kinesis: InMemoryKinesis) -> None:
    first = await put(kinesis, "a", 50)
    fetcher = await fan_out(kinesis)
    records, _ = await collect(fetcher, 50)
    users = [ProducerRecord(f"u{i}".encode(), f"k{i}") for i in range(4)]
    await put_aggregate(kinesis, users)
    second = await put(kinesis, "b", 20)
    more, _ = await collect(fetcher, 24)
    await fetcher.aclose()
    assert data_of(records + more) == [*first, b"u0", b"u1", b"u2", b"u3", *second]
    assert_in_order(records + more)
    assert kinesis.calls["SubscribeToShard"] == 1


async def test_fan_out_resubscribes_when_a_subscription_ends() -> None:
    clock = FakeClock()
    kinesis = InMemoryKinesis(clock=clock, enforce_limits=False, subscription_ttl=300.0)
    await kinesis.create_stream(STREAM, 1)
    first = await put(kinesis, "a", 5)
    fetcher = await fan_out(kinesis, clock=clock)
    records, _ = await collect(fetcher, 5)
    clock.advance(301.0)  # the subscription's 5 minutes are over
    await wait_for(lambda: kinesis.calls["SubscribeToShard"] >= 2)
    second = await put(kinesis, "b", 5)
    more, _ = await collect(fetcher, 5)
    await fetcher.aclose()
    assert data_of(records + more) == first + second


async def test_fan_out_retries_resource_in_use(kinesis: InMemoryKinesis) -> None:
    written = await put(kinesis, "a", 5)
    arn = await consumer_arn(kinesis)
    # Another worker's subscription to this shard is still alive (the lease just moved).
    async with kinesis.subscribe_to_shard(arn, SHARD0, StartingPosition("LATEST")):
        fetcher = await fan_out(kinesis)
        await wait_for(lambda: kinesis.calls["SubscribeToShard"] >= 3)
        assert (await fetcher.next_batch()).records == []
    kinesis.inject(Fault("SubscribeToShard", "ResourceInUseException", count=2))
    records, _ = await collect(fetcher, 5)
    await fetcher.aclose()
    assert data_of(records) == written


async def test_fan_out_retries_a_broken_subscription(kinesis: InMemoryKinesis) -> None:
    first = await put(kinesis, "a", 5)
    kinesis.inject(Fault("SubscribeToShard", CONNECTION_ERROR, count=2))
    kinesis.inject(Fault("SubscribeToShard", "InternalFailure", count=1))
    fetcher = await fan_out(kinesis)
    records, _ = await collect(fetcher, 5)
    await fetcher.aclose()
    assert data_of(records) == first
    assert kinesis.calls["SubscribeToShard"] >= 3


async def test_fan_out_shard_end_with_children(kinesis: InMemoryKinesis) -> None:
    before = await put(kinesis, "a", 8)
    fetcher = await fan_out(kinesis)
    records, _ = await collect(fetcher, 8)
    more_before = await put(kinesis, "b", 2)
    await kinesis.split_shard(STREAM, SHARD0, HALF)
    more, end = await collect(fetcher)
    await fetcher.aclose()
    assert data_of(records + more) == before + more_before
    assert end is not None
    assert [c.shard_id for c in end.child_shards] == [
        "shardId-000000000001",
        "shardId-000000000002",
    ]


async def test_fan_out_shard_end_without_the_service_signal() -> None:
    """kinesis-mock's behaviour on fan-out: a drained closed shard only sends heartbeats."""
    kinesis = InMemoryKinesis(
        enforce_limits=False, child_shards_at_end=False, heartbeat_interval=0.02
    )
    await kinesis.create_stream(STREAM, 1)
    fetcher = await fan_out(kinesis)
    first = await put(kinesis, "a", 4)
    records, _ = await collect(fetcher, 4)
    second = await put(kinesis, "b", 3)
    await kinesis.split_shard(STREAM, SHARD0, HALF)
    more, end = await collect(fetcher)
    await fetcher.aclose()
    assert data_of(records + more) == first + second
    assert end is not None
    assert [c.parent_shards for c in end.child_shards] == [(SHARD0,), (SHARD0,)]


# -- SubscribeToShard's event stream with and without an initial-response ---------------------


class _RawBody:
    """Stands in for aiohttp's response: ``content.iter_chunks()`` over fixed bytes."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self._data = data
        self._chunk = chunk
        self.content = self
        self.closed = False

    async def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        for i in range(0, len(self._data), self._chunk):
            yield self._data[i : i + self._chunk], True

    def close(self) -> None:
        self.closed = True


def _subscribe_event(seq: str) -> bytes:
    payload = (
        f'{{"Records":[{{"SequenceNumber":"{seq}","Data":"eA==","PartitionKey":"p",'
        f'"ApproximateArrivalTimestamp":1700000000.0}}],'
        f'"ContinuationSequenceNumber":"{seq}","MillisBehindLatest":0}}'
    ).encode()
    return _aws._event_message(
        {
            ":message-type": "event",
            ":event-type": "SubscribeToShardEvent",
            ":content-type": "application/json",
        },
        payload,
    )


@pytest.mark.parametrize("server_initial_response", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 4096])
async def test_subscribe_stream_parses_with_or_without_initial_response(
    server_initial_response: bool, chunk: int
) -> None:
    """kinesis-mock sends no initial-response event, the service does: botocore's parser must
    see exactly one either way, and no SubscribeToShardEvent may be lost."""
    body = _subscribe_event("1") + _subscribe_event("2")
    if server_initial_response:
        body = _aws._INITIAL_RESPONSE + body
    raw = _RawBody(body, chunk)
    response: dict[str, Any] = {
        "status_code": 200,
        "headers": {},
        "body": raw,
        "context": {"operation_name": "SubscribeToShard"},
    }
    _aws._wrap_subscribe_body(response_dict=response)
    shape = (
        botocore.session.get_session()
        .get_service_model("kinesis")
        .operation_model("SubscribeToShard")
        .output_shape
    )
    parsed = await aiobotocore.parsers.create_parser("json").parse(response, shape)
    events = [e async for e in parsed["EventStream"]]
    assert [e["SubscribeToShardEvent"]["ContinuationSequenceNumber"] for e in events] == ["1", "2"]
    assert events[0]["SubscribeToShardEvent"]["Records"][0]["Data"] == b"x"
    parsed["EventStream"].close()
    assert raw.closed


async def test_subscribe_error_response_is_left_alone() -> None:
    response: dict[str, Any] = {"status_code": 400, "body": b'{"__type":"X"}'}
    _aws._wrap_subscribe_body(response_dict=response)
    assert response["body"] == b'{"__type":"X"}'
