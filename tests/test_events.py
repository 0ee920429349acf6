"""Diagnostic events reach the callback and the DEBUG log through one path."""

from __future__ import annotations

import asyncio
import logging

import pytest

import kinesio
from kinesio import events as ev
from kinesio.testing import Fault, InMemoryKinesis
from kinesio.testing.pytest_plugin import TEST_CONSUMER_SETTINGS


async def test_producer_events(caplog: pytest.LogCaptureFixture) -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("s", 1)
    kinesis.inject(
        Fault("PutRecords", "ProvisionedThroughputExceededException", per_record=True, count=3)
    )
    kinesis.inject(Fault("PutRecords", "AccessDeniedException", count=1))
    seen: list[ev.DiagnosticEvent] = []
    settings = kinesio.ProducerSettings(linger=0.01, retry_backoff=0.01, aggregate=False)
    caplog.set_level(logging.DEBUG, logger="kinesio.events")
    async with kinesio.AsyncProducer(
        "s", kinesis=kinesis, settings=settings, on_event=seen.append
    ) as producer:
        futures = [await producer.put(b"x", partition_key=f"k{i}") for i in range(5)]
        await producer.flush()
    kinds = {type(e) for e in seen}
    assert ev.ShardMapRefreshed in kinds
    # the first request is denied outright: its records fail for good
    failed = [e for e in seen if isinstance(e, ev.RecordFailed)]
    assert len(failed) == sum(f.exception() is not None for f in futures) == 5
    assert "AccessDenied" in failed[0].error
    assert any("RecordFailed" in r.getMessage() for r in caplog.records)


async def test_throttle_events_name_the_shard() -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("s", 1)
    kinesis.inject(
        Fault("PutRecords", "ProvisionedThroughputExceededException", per_record=True, count=2)
    )
    seen: list[ev.DiagnosticEvent] = []
    settings = kinesio.ProducerSettings(linger=0.01, retry_backoff=0.01, aggregate=False)
    async with kinesio.AsyncProducer(
        "s", kinesis=kinesis, settings=settings, on_event=seen.append
    ) as producer:
        await producer.put_and_wait(b"x", partition_key="a")
    throttles = [e for e in seen if isinstance(e, ev.Throttled)]
    assert throttles
    assert throttles[0].shard_id == "shardId-000000000000"
    assert throttles[0].operation == "PutRecords"


async def test_consumer_lease_and_shard_events() -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("s", 1)
    async with kinesio.AsyncProducer("s", kinesis=kinesis) as producer:
        for i in range(20):
            await producer.put(b"%d" % i, partition_key=f"k{i}")
    seen: list[ev.DiagnosticEvent] = []
    consumer = kinesio.AsyncConsumer(
        "s",
        application_name="app",
        settings=TEST_CONSUMER_SETTINGS,
        kinesis=kinesis,
        lease_store=kinesio.MemoryLeaseStore(),
        on_event=seen.append,
    )
    handled: list[bytes] = []
    async with consumer:
        task = asyncio.create_task(consumer.consume_with(lambda r: handled.append(r.data)))
        async with asyncio.timeout(10):
            while len(handled) < 20:
                await asyncio.sleep(0.02)
        parent = (await kinesis.list_shards("s"))[0]
        await kinesis.split_shard(
            "s", parent.shard_id, (parent.starting_hash_key + parent.ending_hash_key) // 2
        )
        async with asyncio.timeout(10):
            while sum(isinstance(e, ev.ShardStarted) for e in seen) < 3:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.4)  # past one renew interval
        consumer.request_shutdown()
        await task
    kinds = [type(e) for e in seen]
    assert kinds.count(ev.LeaseAcquired) == 3
    assert ev.CheckpointWritten in kinds
    assert ev.LeaseRenewed in kinds
    ended = [e for e in seen if isinstance(e, ev.ShardEnded)]
    assert ended[0].shard_id == parent.shard_id
    assert len(ended[0].children) == 2
    blocked = [e for e in seen if isinstance(e, ev.ShardBlockedOnParent)]
    assert {b.parents for b in blocked} == {(parent.shard_id,)}
    assert kinds.count(ev.LeaseReleased) >= 3  # the parent at its end, the children at shutdown


def test_a_failing_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: ev.DiagnosticEvent) -> None:
        raise RuntimeError("boom")

    emitter = ev.Emitter(broken)
    emitter.emit(ev.LeaseReleased(lease_key="k"))
    assert "on_event callback raised" in caplog.text

    async def coroutine_callback(event: ev.DiagnosticEvent) -> None:
        return None

    ev.Emitter(coroutine_callback).emit(ev.LeaseReleased(lease_key="k"))
    assert "plain function" in caplog.text
