"""The producer against moto's server on 127.0.0.1: the real aiobotocore path end to end."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable

import pytest

from _streams import stored_by_shard
from kinesio import AsyncProducer, Producer, ProducerSettings
from kinesio._aws import AioKinesis
from kinesio._errors import ResourceNotFoundError, ValidationError
from kinesio._models import ProducerRecord
from kinesio.local import LocalEndpoint

pytestmark = pytest.mark.integration
# moto numbers a shard's records "highest + 1" without a lock: two concurrent PutRecords on one
# shard can get the same sequence number and one record is overwritten. One request in flight
# keeps tests that count stored records about kinesio, not about that race.
FAST = ProducerSettings(linger=0.02, max_in_flight=1)


def read_back(endpoint: LocalEndpoint, stream: str) -> list[ProducerRecord]:
    """Every user record in the stream, deaggregated, read with plain boto3."""
    return [r for rows in stored_by_shard(endpoint, stream).values() for r in rows]


@pytest.fixture
def stream(moto_stream: Callable[[str, int], str]) -> str:
    return moto_stream("producer", 3)


@pytest.fixture
async def kinesis(moto_endpoint: LocalEndpoint) -> AsyncIterator[AioKinesis]:
    client = await AioKinesis.create(moto_endpoint.aws_config())
    yield client
    await client.aclose()


async def test_async_producer_delivers_to_moto(moto_endpoint: LocalEndpoint, stream: str) -> None:
    async with AsyncProducer(
        stream, endpoint_url=moto_endpoint.endpoint_url, settings=FAST
    ) as producer:
        futures = [
            await producer.put(f"{i}".encode(), partition_key=f"key-{i % 97}") for i in range(2000)
        ]
        await producer.flush()
    results = [f.result() for f in futures]
    assert {r.shard_id for r in results} == {s.shard_id for s in producer.shard_map.open_shards}
    stored = read_back(moto_endpoint, stream)
    assert sorted(int(r.data) for r in stored) == list(range(2000))
    assert producer.metrics().kinesis_records_put < 100  # aggregated


async def test_endpoint_from_the_environment_needs_no_code_change(
    moto_endpoint: LocalEndpoint, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", moto_endpoint.endpoint_url)
    async with AsyncProducer(stream, settings=FAST) as producer:
        result = await producer.put_and_wait(b"env", partition_key="k")
    assert result.shard_id.startswith("shardId-")
    assert any(r.data == b"env" for r in read_back(moto_endpoint, stream))


async def test_unaggregated_with_explicit_hash_keys(
    moto_endpoint: LocalEndpoint, stream: str
) -> None:
    settings = ProducerSettings(linger=0.02, aggregate=False)
    async with AsyncProducer(stream, aws=moto_endpoint.aws_config(), settings=settings) as producer:
        for shard in producer.shard_map.open_shards:
            res = await producer.put_and_wait(
                b"e", partition_key="k", explicit_hash_key=shard.starting_hash_key
            )
            assert res.shard_id == shard.shard_id


async def test_missing_stream_is_a_typed_error(moto_endpoint: LocalEndpoint) -> None:
    with pytest.raises(ResourceNotFoundError, match="DescribeStreamSummary"):
        async with AsyncProducer("does-not-exist", endpoint_url=moto_endpoint.endpoint_url):
            pass


async def test_aio_kinesis_maps_invalid_arguments(kinesis: AioKinesis, stream: str) -> None:
    with pytest.raises(ValidationError):
        await kinesis.put_records(stream, [])


def test_blocking_producer_from_many_threads(moto_endpoint: LocalEndpoint, stream: str) -> None:
    with Producer(stream, endpoint_url=moto_endpoint.endpoint_url, settings=FAST) as producer:
        futures = []
        lock = threading.Lock()

        def work(t: int) -> None:
            for i in range(250):
                f = producer.put(f"{t}-{i}".encode(), partition_key=f"t{t}-{i % 10}")
                with lock:
                    futures.append(f)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        producer.flush()
        assert all(f.done() for f in futures)
        result = producer.put_and_wait(b"last", partition_key="k")
        assert result.sequence_number
        assert producer.metrics().user_records_put == 1001
    stored = read_back(moto_endpoint, stream)
    assert len(stored) == 1001


def test_blocking_producer_raises_typed_errors_from_its_constructor(
    moto_endpoint: LocalEndpoint,
) -> None:
    with pytest.raises(ResourceNotFoundError):
        Producer("nope", endpoint_url=moto_endpoint.endpoint_url)
    # no loop thread is left behind
    assert not [t for t in threading.enumerate() if "anyio" in t.name.lower() and t.is_alive()]


async def test_arrival_timestamps_are_timezone_aware_utc(kinesis: AioKinesis, stream: str) -> None:
    import datetime as dt

    from kinesio._kinesis import StartingPosition
    from kinesio._models import PutRecordsEntry

    await kinesis.put_records(stream, [PutRecordsEntry(b"t", "k")])
    before = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    for shard in await kinesis.list_shards(stream):
        it = await kinesis.get_shard_iterator(
            stream, shard.shard_id, StartingPosition("TRIM_HORIZON")
        )
        for record in (await kinesis.get_records(it)).records:
            ts = record.approximate_arrival_timestamp
            assert ts is not None
            assert ts.utcoffset() == dt.timedelta(0)
            assert ts > before
