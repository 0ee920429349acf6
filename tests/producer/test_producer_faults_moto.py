"""The producer against moto's server with faults injected into the real aiobotocore path.

moto never throttles: BotocoreFaults makes it answer like a throttling, flaky Kinesis (whole-call
errors, partial PutRecords failures whose entries were really not written, dropped connections).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest

from _streams import stored_by_shard, stored_data
from kinesio import AsyncProducer, ProducerSettings
from kinesio._errors import (
    AccessDeniedError,
    KinesioError,
    ProducerClosedError,
)
from kinesio._models import ProducerRecord, PutResult
from kinesio.local import LocalEndpoint
from kinesio.testing import CONNECTION_CLOSED, CONNECTION_ERROR, BotocoreFaults, Fault

pytestmark = pytest.mark.integration
# moto's Shard.put_record is not safe under concurrency: two PutRecords calls for one shard
# handled at once by its threaded server can get the same sequence number, and the second
# overwrites the first. Tests that count what is stored therefore send one request at a time
# (ordered=True already sends at most one request per shard).
FAST = ProducerSettings(linger=0.02, retry_backoff=0.02, max_retry_backoff=0.2, max_in_flight=1)
PTE = "ProvisionedThroughputExceededException"


@pytest.fixture
def stream(moto_stream: Callable[[str, int], str]) -> str:
    return moto_stream("producer-faults", 3)


async def put_all(
    producer: AsyncProducer, n: int, keys: int = 97
) -> list[asyncio.Future[PutResult]]:
    return [await producer.put(f"{i}".encode(), partition_key=f"key-{i % keys}") for i in range(n)]


def expected(n: int) -> Counter[bytes]:
    return Counter(f"{i}".encode() for i in range(n))


async def test_throttling_storm_then_clear_delivers_everything(
    moto_endpoint: LocalEndpoint, stream: str
) -> None:
    faults = BotocoreFaults(Fault("PutRecords", PTE, count=12))
    async with AsyncProducer(
        stream, aws=faults.aws_config(moto_endpoint), settings=FAST
    ) as producer:
        futures = await put_all(producer, 2000)
        await producer.flush()
    results = [f.result() for f in futures]
    assert faults.injected[PTE] == 12
    m = producer.metrics()
    assert m.throttled + m.retries > 0
    assert max(r.attempts for r in results) > 1
    assert stored_data(moto_endpoint, stream) == expected(2000)


async def test_throttling_storm_for_a_while(moto_endpoint: LocalEndpoint, stream: str) -> None:
    faults = BotocoreFaults(Fault("PutRecords", PTE))
    async with AsyncProducer(
        stream, aws=faults.aws_config(moto_endpoint), settings=FAST
    ) as producer:
        futures = await put_all(producer, 500)
        await asyncio.sleep(1.0)
        assert not any(f.done() for f in futures)
        faults.clear_faults()
        await producer.flush()
    assert all(f.result().attempts > 1 for f in futures)
    assert producer.metrics().retries > 0
    assert stored_data(moto_endpoint, stream) == expected(500)


@pytest.mark.parametrize("aggregate", [True, False], ids=["aggregated", "plain"])
async def test_partial_failures_deliver_every_record_exactly_once(
    moto_endpoint: LocalEndpoint, stream: str, aggregate: bool
) -> None:
    faults = BotocoreFaults(
        Fault("PutRecords", PTE, per_record=True, probability=0.3),
        Fault("PutRecords", "InternalFailure", per_record=True, probability=0.1),
        seed=42,
    )
    settings = dataclasses.replace(FAST, aggregate=aggregate)
    n = 2000 if aggregate else 1000
    async with AsyncProducer(
        stream, aws=faults.aws_config(moto_endpoint), settings=settings
    ) as producer:
        futures = await put_all(producer, n)
        await producer.flush()
    results = [f.result() for f in futures]
    assert faults.failed_records > 0
    assert faults.injected[PTE] > 0
    assert any(r.attempts > 1 for r in results)
    assert producer.metrics().throttled > 0
    held = stored_data(moto_endpoint, stream)
    assert sum(c - 1 for c in held.values()) == 0  # no duplicates
    assert held == expected(n)


@pytest.mark.parametrize("code", [CONNECTION_ERROR, CONNECTION_CLOSED])
async def test_connection_errors_are_retried(
    moto_endpoint: LocalEndpoint, stream: str, code: str
) -> None:
    faults = BotocoreFaults(Fault("PutRecords", code, count=6))
    async with AsyncProducer(
        stream, aws=faults.aws_config(moto_endpoint), settings=FAST
    ) as producer:
        futures = await put_all(producer, 1000)
        await producer.flush()
    assert all(f.result() for f in futures)
    assert faults.injected[code] == 6
    assert producer.metrics().retries > 0
    assert stored_data(moto_endpoint, stream) == expected(1000)


async def test_lost_answers_are_retried_at_least_once(
    moto_endpoint: LocalEndpoint, stream: str
) -> None:
    faults = BotocoreFaults(Fault("PutRecords", CONNECTION_CLOSED, response_lost=True, count=2))
    async with AsyncProducer(
        stream, aws=faults.aws_config(moto_endpoint), settings=FAST
    ) as producer:
        futures = await put_all(producer, 500)
        await producer.flush()
    assert all(f.result() for f in futures)
    held = stored_data(moto_endpoint, stream)
    assert set(held) == set(expected(500))
    assert sum(held.values()) > 500  # the lost calls had written their records


async def test_access_denied_fails_futures_and_tells_on_error(
    moto_endpoint: LocalEndpoint, stream: str
) -> None:
    heard: list[tuple[ProducerRecord, KinesioError]] = []
    faults = BotocoreFaults(Fault("PutRecords", "AccessDeniedException", message="not allowed"))
    async with AsyncProducer(
        stream,
        aws=faults.aws_config(moto_endpoint),
        settings=FAST,
        on_error=lambda record, err: heard.append((record, err)),
    ) as producer:
        futures = await put_all(producer, 50)
        await producer.flush()
    for f in futures:
        with pytest.raises(AccessDeniedError, match="not allowed"):
            f.result()
    assert sorted(int(r.data) for r, _ in heard) == list(range(50))
    assert all(isinstance(err, AccessDeniedError) for _, err in heard)
    assert producer.metrics().user_records_failed == 50
    assert stored_data(moto_endpoint, stream) == Counter()


async def test_ordered_with_partial_failures_keeps_per_key_order(
    moto_endpoint: LocalEndpoint, stream: str
) -> None:
    faults = BotocoreFaults(
        Fault("PutRecords", PTE, per_record=True, probability=0.3),
        Fault("PutRecords", "InternalFailure", per_record=True, probability=0.1),
        Fault("PutRecords", "ServiceUnavailable", probability=0.1),
        seed=9,
    )
    settings = dataclasses.replace(FAST, ordered=True, max_in_flight=None)
    keys, per_key = 12, 80
    async with AsyncProducer(
        stream, aws=faults.aws_config(moto_endpoint), settings=settings
    ) as producer:
        futures = []
        for i in range(per_key):
            for k in range(keys):
                futures.append(await producer.put(f"{k}:{i}".encode(), partition_key=f"k{k}"))
            if i % 10 == 0:
                await asyncio.sleep(0.01)  # several requests per shard, not one big one
        await producer.flush()
    assert all(f.result() for f in futures)
    assert faults.failed_records > 0
    per_key_stored: dict[str, list[int]] = defaultdict(list)
    for rows in stored_by_shard(moto_endpoint, stream).values():
        for r in rows:
            key, index = r.data.decode().split(":")
            per_key_stored[key].append(int(index))
    assert dict(per_key_stored) == {f"{k}": list(range(per_key)) for k in range(keys)}


async def test_close_under_a_throttling_storm_resolves_every_future(
    moto_endpoint: LocalEndpoint, stream: str
) -> None:
    faults = BotocoreFaults(Fault("PutRecords", PTE, per_record=True, probability=0.2), seed=3)
    heard: list[KinesioError] = []
    producer = AsyncProducer(
        stream,
        aws=faults.aws_config(moto_endpoint),
        settings=FAST,
        on_error=lambda _record, err: heard.append(err),
    )
    await producer.start()
    futures = await put_all(producer, 1000)
    await producer.flush()
    assert all(f.result() for f in futures)
    # the storm: every call throttled, slowly, while records keep coming
    faults.inject(Fault("PutRecords", latency=0.1))
    faults.inject(Fault("PutRecords", PTE))
    for i in range(1000, 3000):
        futures.append(await producer.put(f"{i}".encode(), partition_key=f"key-{i % 97}"))
        if i % 200 == 0:
            await asyncio.sleep(0.03)  # mid-stream: requests are in flight
    start = time.monotonic()
    await producer.aclose(timeout=0.5)
    assert time.monotonic() - start < 5.0
    assert all(f.done() for f in futures)
    closed = [f.exception() for f in futures if f.exception() is not None]
    assert len(closed) == 2000
    assert all(isinstance(e, ProducerClosedError) for e in closed)
    assert len(heard) == len(closed)
    assert faults.injected[PTE] > 0
    assert producer.metrics().retries > 0
    assert stored_data(moto_endpoint, stream) == expected(1000)
