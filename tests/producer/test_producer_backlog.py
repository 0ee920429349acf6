"""The per-shard backlog bound, and full unaggregated requests under the limiter."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from _streams import all_user_records
from kinesio._config import Drop, ProducerSettings, Raise
from kinesio._errors import BacklogFullError
from kinesio._models import PutResult
from kinesio.producer import AsyncProducer
from kinesio.testing import Fault, InMemoryKinesis

STREAM = "orders"


async def make_stream(shards: int) -> InMemoryKinesis:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, shards)
    return kinesis


def ttl_bound(**kw: object) -> ProducerSettings:
    # One shard sending 2000 records/s with a 1 s TTL: its queue may hold 1000 records (what
    # it sends in half the TTL); 3000 queued at once would leave the last 1.5 s behind.
    base: dict[str, object] = {
        "aggregate": False,
        "shard_records_per_second": 2000,
        "record_ttl": 1.0,
        "linger": 0.01,
        "max_batch_records": 100,
    }
    base.update(kw)
    return ProducerSettings(**base)  # type: ignore[arg-type]


async def test_block_waits_for_the_shard_instead_of_letting_records_expire() -> None:
    kinesis = await make_stream(1)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=ttl_bound()) as producer:
        peak = 0
        futures = []
        for i in range(3000):
            futures.append(await producer.put(b"%d" % i, f"k{i % 50}"))
            peak = max(peak, producer._acc.buffered_records)
        await producer.flush()
    assert all(isinstance(f.result(), PutResult) for f in futures)
    m = producer.metrics()
    assert m.user_records_failed == 0
    assert m.user_records_put == 3000
    assert peak <= 1000 + 100  # the shard's bound, plus what is in flight
    assert len(await all_user_records(kinesis, STREAM)) == 3000


async def test_raise_refuses_a_record_its_shard_could_not_send_within_the_ttl() -> None:
    kinesis = await make_stream(1)
    settings = ttl_bound(overflow=Raise(), linger=5.0, max_batch_records=500)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings) as producer:
        accepted = 0
        refused: BacklogFullError | None = None
        for i in range(5000):
            try:
                await producer.put(b"x", f"k{i}")
            except BacklogFullError as exc:
                refused = exc
                break
            accepted += 1
        assert refused is not None
        assert "record TTL" in str(refused)
        # Nothing the whole-backlog limit (100 000) would refuse: the shard's bound did.
        assert 1000 <= accepted < 1100
        await producer.flush()
    assert producer.metrics().user_records_failed == 0
    assert producer.metrics().user_records_put == accepted


async def test_drop_fails_the_future_of_a_record_past_the_shard_bound() -> None:
    kinesis = await make_stream(1)
    settings = ttl_bound(overflow=Drop(), linger=5.0, max_batch_records=500)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings) as producer:
        futures = [await producer.put(b"x", f"k{i}") for i in range(1500)]
        await producer.flush()
    dropped = [f for f in futures if f.exception() is not None]
    assert dropped
    assert all(isinstance(f.exception(), BacklogFullError) for f in dropped)
    assert producer.metrics().user_records_dropped == len(dropped)
    assert producer.metrics().user_records_put == 1500 - len(dropped)


async def test_unaggregated_requests_go_full_under_the_limiter() -> None:
    # Each answer takes 5 ms; the limiter admits 5000 records/s per shard. Requests used to
    # carry what the shards' tokens gained during one round trip (~25 records per shard);
    # now they wait until the tokens cover a full request of 500.
    kinesis = await make_stream(2)
    kinesis.inject(Fault("PutRecords", None, latency=0.005))
    settings = ProducerSettings(aggregate=False, shard_records_per_second=5000, linger=0.05)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings) as producer:
        for i in range(20_000):
            await producer.put(b"%d" % i, f"key-{i % 1000}")
        await producer.flush()
        m = producer.metrics()
    assert m.user_records_put == 20_000
    assert m.user_records_failed == 0
    assert m.kinesis_records_put / m.put_records_calls >= 400, m.put_records_calls


async def test_a_crash_while_building_a_request_fails_its_records_never_loses_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A bug in the send path (here: building the second Kinesis record of a request) stops
    # the producer; the records already taken for that request are in no queue and in no
    # request, and must still fail through their futures.
    from kinesio.producer import _requests

    built = 0
    real_entry = _requests._entry

    def flaky(users: list[Any], packed: Any) -> Any:
        nonlocal built
        built += 1
        if built == 2:
            raise RuntimeError("bug")
        return real_entry(users, packed)

    monkeypatch.setattr(_requests, "_entry", flaky)
    kinesis = await make_stream(1)
    settings = ProducerSettings(aggregate=False, linger=0.01)
    producer = AsyncProducer(STREAM, kinesis=kinesis, settings=settings)
    await producer.start()
    futures = [await producer.put(b"%d" % i, f"k{i}") for i in range(10)]
    await asyncio.wait_for(producer.flush(), 5)
    await producer.aclose()
    assert all(f.done() for f in futures)
    failed = [f for f in futures if f.exception() is not None]
    assert len(failed) == 10
    assert all("internal error" in str(f.exception()) for f in failed)
    assert producer.metrics().user_records_failed == 10
