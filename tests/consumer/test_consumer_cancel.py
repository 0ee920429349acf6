"""Cancelling ``consume_with`` is a graceful stop: the shards finish their batch and
checkpoint, and a handler that never returns is cancelled after ``shutdown_timeout``."""

from __future__ import annotations

import asyncio

import pytest

from _consumers import quick_settings, wait_for
from kinesio import AsyncConsumer, AsyncProducer, ProducerSettings
from kinesio._models import ExtendedSequenceNumber, Record
from kinesio.leases import MemoryLeaseStore
from kinesio.testing import InMemoryKinesis

STREAM = "events"


async def filled(records: int) -> InMemoryKinesis:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 2)
    settings = ProducerSettings(linger=0.005, aggregate=False)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings) as producer:
        for i in range(records):
            await producer.put(f"k{i % 5}:{i}".encode(), partition_key=f"k{i % 5}")
    return kinesis


async def test_cancelling_consume_with_checkpoints_every_shard_on_the_way_out() -> None:
    kinesis = await filled(100)
    store = MemoryLeaseStore()
    handled: list[Record] = []
    consumer = AsyncConsumer(
        STREAM, application_name="cancel", settings=quick_settings(), kinesis=kinesis,
        lease_store=store,
    )  # fmt: skip
    await consumer.start()
    # checkpoint_every / _interval too large to checkpoint on their own during the test
    task = asyncio.create_task(
        consumer.consume_with(handled.append, checkpoint_every=10_000, checkpoint_interval=600)
    )
    await wait_for(lambda: len(handled) == 100)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 15)  # returns, does not hang
    last: dict[str, ExtendedSequenceNumber] = {}
    for r in handled:
        last[r.shard_id] = r.position
    checkpoints = {lease.lease_key: lease.checkpoint for lease in await store.list_leases()}
    assert checkpoints == last
    await consumer.aclose()


async def test_a_handler_that_never_returns_is_cancelled_after_the_shutdown_timeout() -> None:
    kinesis = await filled(10)
    store = MemoryLeaseStore()
    never = asyncio.Event()
    started = asyncio.Event()

    async def stuck(record: Record) -> None:
        started.set()
        await never.wait()

    consumer = AsyncConsumer(
        STREAM, application_name="stuck", settings=quick_settings(shutdown_timeout=0.5),
        kinesis=kinesis, lease_store=store,
    )  # fmt: skip
    await consumer.start()
    task = asyncio.create_task(consumer.consume_with(stuck))
    await asyncio.wait_for(started.wait(), 15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 15)
    # nothing the handler did not return from was checkpointed
    assert all(lease.checkpoint.is_sentinel for lease in await store.list_leases())
    await consumer.aclose()
