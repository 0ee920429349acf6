"""Drive a real producer and consumer over InMemoryKinesis, with one ``on_event`` callback."""

from __future__ import annotations

import asyncio

import kinesio
from kinesio.events import EventHook
from kinesio.testing import InMemoryKinesis
from kinesio.testing.pytest_plugin import TEST_CONSUMER_SETTINGS


async def produce(
    kinesis: InMemoryKinesis, stream: str, count: int, on_event: EventHook, *, aggregate: bool
) -> None:
    """Put ``count`` records (``b"record-<i>"``, key ``k<i>``) and wait for all of them."""
    settings = kinesio.ProducerSettings(linger=0.01, retry_backoff=0.01, aggregate=aggregate)
    async with kinesio.AsyncProducer(
        stream, kinesis=kinesis, settings=settings, on_event=on_event
    ) as producer:
        futures = [await producer.put(b"record-%d" % i, f"k{i}") for i in range(count)]
        await producer.flush()
    assert all(f.exception() is None for f in futures)


async def consume(
    kinesis: InMemoryKinesis,
    stream: str,
    count: int,
    on_event: EventHook,
    *,
    settings: kinesio.ConsumerSettings = TEST_CONSUMER_SETTINGS,
    while_running: object = None,
) -> list[bytes]:
    """Consume until ``count`` records were handled, await ``while_running()`` (if given),
    then shut down gracefully (checkpoint, release)."""
    handled: list[bytes] = []
    consumer = kinesio.AsyncConsumer(
        stream,
        application_name="metrics-app",
        settings=settings,
        kinesis=kinesis,
        lease_store=kinesio.MemoryLeaseStore(),
        on_event=on_event,
    )
    async with consumer:
        task = asyncio.create_task(consumer.consume_with(lambda r: handled.append(r.data)))
        async with asyncio.timeout(30):
            while len(handled) < count:
                await asyncio.sleep(0.02)
        if callable(while_running):
            await while_running()
        consumer.request_shutdown()
        await task
    return handled
