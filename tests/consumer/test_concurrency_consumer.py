"""consume_with(max_concurrency=..., retries=..., dead_letter=...) end to end: on the in-memory
Kinesis with MemoryLeaseStore, and the blocking Consumer on moto's server with a DynamoDB lease
table."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict
from typing import Any

import boto3
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import kinesio
from _consumers import number, quick_settings, wait_for
from kinesio import AsyncConsumer, AsyncProducer, ProducerSettings
from kinesio._models import ExtendedSequenceNumber, Record
from kinesio.events import DiagnosticEvent, RecordDeadLettered
from kinesio.leases import MemoryLeaseStore
from kinesio.local import LocalEndpoint
from kinesio.metrics.prometheus import PrometheusMetrics
from kinesio.testing import InMemoryKinesis

STREAM = "events"
APP = "billing"


async def make_stream(shards: int, records: int, keys: int, *, aggregate: bool) -> InMemoryKinesis:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, shards)
    settings = ProducerSettings(linger=0.005, aggregate=aggregate, ordered=True)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings) as producer:
        for i in range(records):
            await producer.put(f"{i % keys}:{i}".encode(), partition_key=f"key-{i % keys}")
    return kinesis


async def test_keys_run_concurrently_in_order_per_key_and_the_checkpoint_reaches_the_end() -> None:
    kinesis = await make_stream(2, 600, 30, aggregate=True)
    store = MemoryLeaseStore()
    rng = random.Random(3)
    handled: list[Record] = []
    running = 0
    peak = 0

    async def handle(record: Record) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(rng.random() * 0.003)
        handled.append(record)
        running -= 1

    consumer = AsyncConsumer(
        STREAM, application_name=APP, settings=quick_settings(), kinesis=kinesis, lease_store=store
    )
    await consumer.start()
    task = asyncio.create_task(
        consumer.consume_with(handle, max_concurrency=16, checkpoint_every=50)
    )
    await wait_for(lambda: len(handled) == 600)
    await consumer.aclose()
    await task
    assert sorted(number(r) for r in handled) == list(range(600))
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in handled:
        per_key[r.partition_key].append(number(r))
    assert all(ns == sorted(ns) for ns in per_key.values())
    assert peak > 2  # two shards alone would give at most 2
    last_by_shard: dict[str, ExtendedSequenceNumber] = {}
    for r in handled:
        last_by_shard[r.shard_id] = max(last_by_shard.get(r.shard_id, r.position), r.position)
    for lease in await store.list_leases():
        # everything finished, so the checkpoint is the shard's last record, sub-sequence and all
        assert lease.checkpoint == last_by_shard[lease.lease_key]
        assert lease.lease_owner is None


async def test_a_poison_record_stops_the_consumer_with_a_checkpoint_before_it() -> None:
    kinesis = await make_stream(1, 200, 10, aggregate=False)
    store = MemoryLeaseStore()
    handled: list[int] = []

    async def handle(record: Record) -> None:
        await asyncio.sleep(0.001 * (number(record) % 4))
        if number(record) == 120:
            raise RuntimeError("poison record")
        handled.append(number(record))

    consumer = AsyncConsumer(
        STREAM, application_name=APP, settings=quick_settings(), kinesis=kinesis, lease_store=store
    )
    async with consumer:
        with pytest.raises(RuntimeError, match="poison"):
            await consumer.consume_with(
                handle, max_concurrency=8, checkpoint_every=5, retries=1, retry_backoff=0.0
            )
    lease = (await store.list_leases())[0]
    records = kinesis.records(STREAM, lease.lease_key)
    poison_seq = records[120].sequence_number
    # the checkpoint never passes the poison record (or anything unfinished before it)
    assert int(lease.checkpoint.sequence_number) < int(poison_seq)
    assert 120 not in handled
    # a restart resumes at the checkpoint: the poison record and everything after it that was
    # not checkpointed comes again, so nothing is lost
    again: list[int] = []
    c2 = AsyncConsumer(
        STREAM, application_name=APP, settings=quick_settings(), kinesis=kinesis, lease_store=store
    )

    def collect(record: Record) -> None:
        again.append(number(record))
        if number(record) == 199:
            c2.request_shutdown()

    async with c2:
        await c2.consume_with(collect)
    assert 120 in again
    assert set(handled) | set(again) == set(range(200))


async def test_a_dead_letter_hook_takes_the_poison_record_and_the_shard_goes_on() -> None:
    kinesis = await make_stream(2, 300, 20, aggregate=True)
    store = MemoryLeaseStore()
    handled: set[int] = set()
    dead: list[tuple[int, int]] = []
    events: list[DiagnosticEvent] = []

    def handle(record: Record) -> None:  # sync: runs in the shard's thread pool
        if number(record) % 100 == 7:
            raise ValueError("cannot parse")
        time.sleep(0.0005)
        handled.add(number(record))

    def dead_letter(record: Record, error: BaseException, attempts: int) -> None:
        dead.append((number(record), attempts))

    consumer = AsyncConsumer(
        STREAM,
        application_name=APP,
        settings=quick_settings(),
        kinesis=kinesis,
        lease_store=store,
        on_event=events.append,
    )
    await consumer.start()
    task = asyncio.create_task(
        consumer.consume_with(
            handle, max_concurrency=4, retries=2, retry_backoff=0.001, dead_letter=dead_letter
        )
    )
    await wait_for(lambda: len(handled) + len(dead) == 300)
    await consumer.aclose()
    await task
    assert sorted(dead) == [(7, 3), (107, 3), (207, 3)]
    assert handled == set(range(300)) - {7, 107, 207}
    assert len([e for e in events if isinstance(e, RecordDeadLettered)]) == 3
    for lease in await store.list_leases():
        records = kinesis.records(STREAM, lease.lease_key)
        # checkpointed past the dead-lettered records, to the last (aggregated) record
        assert lease.checkpoint.sequence_number == records[-1].sequence_number


@pytest.mark.integration
def test_the_blocking_consumer_runs_a_slow_sync_handler_concurrently_on_moto(
    moto_endpoint: LocalEndpoint,
) -> None:
    stream = f"concurrent-{time.monotonic_ns()}"
    client: Any = boto3.client("kinesis", endpoint_url=moto_endpoint.endpoint_url)
    client.create_stream(StreamName=stream, ShardCount=2)
    client.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    try:
        settings = ProducerSettings(linger=0.02, ordered=True)
        with kinesio.Producer(
            stream, endpoint_url=moto_endpoint.endpoint_url, settings=settings
        ) as producer:
            for i in range(200):
                producer.put(f"{i % 40}:{i}".encode(), partition_key=f"key-{i % 40}")
        lock = threading.Lock()
        handled: list[Record] = []
        threads: set[str] = set()
        consumer = kinesio.Consumer(
            stream,
            application_name=f"app-{stream}",
            settings=kinesio.ConsumerSettings(
                initial_position=kinesio.InitialPosition.TRIM_HORIZON,
                retrieval=kinesio.Polling(idle_time=0.05),
            ),
            endpoint_url=moto_endpoint.endpoint_url,
        )

        def handle(record: Record) -> None:
            time.sleep(0.01)  # a slow call: 200 records one at a time would take 2 s per shard
            with lock:
                handled.append(record)
                threads.add(threading.current_thread().name)
                if len(handled) == 200:
                    consumer.request_shutdown()

        consumer.consume_with(handle, max_concurrency=8)
        assert sorted(number(r) for r in handled) == list(range(200))
        per_key: dict[str, list[int]] = defaultdict(list)
        for r in handled:
            per_key[r.partition_key].append(number(r))
        assert all(ns == sorted(ns) for ns in per_key.values())
        assert len(threads) > 2
        ddb: Any = boto3.client("dynamodb", endpoint_url=moto_endpoint.endpoint_url)
        items = ddb.scan(TableName=f"app-{stream}", ConsistentRead=True)["Items"]
        last = {
            r.shard_id: r.sequence_number
            for r in sorted(handled, key=lambda r: int(r.sequence_number))
        }
        assert {i["leaseKey"]["S"]: i["checkpoint"]["S"] for i in items} == last
    finally:
        client.delete_stream(StreamName=stream)


async def test_retries_and_dead_letters_are_counted_in_prometheus() -> None:
    kinesis = await make_stream(1, 20, 5, aggregate=False)
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    handled: list[int] = []
    dead: list[int] = []

    def handle(record: Record) -> None:
        if number(record) in (4, 9):
            raise ValueError("bad")
        handled.append(number(record))

    consumer = AsyncConsumer(
        STREAM,
        application_name=APP,
        settings=quick_settings(),
        kinesis=kinesis,
        lease_store=MemoryLeaseStore(),
        on_event=metrics,
    )
    await consumer.start()
    task = asyncio.create_task(
        consumer.consume_with(
            handle,
            retries=2,
            retry_backoff=0.001,
            dead_letter=lambda record, error, attempts: dead.append(number(record)),
        )
    )
    await wait_for(lambda: len(handled) + len(dead) == 20)
    await consumer.aclose()
    await task
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if s.name.startswith("kinesio_consumer_")
    }
    assert samples["kinesio_consumer_handler_retries_total"] == 4  # 2 records x 2 retries
    assert samples["kinesio_consumer_records_dead_lettered_total"] == 2
    assert dead == [4, 9]
