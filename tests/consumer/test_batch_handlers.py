"""consume_batches_with: lists of up to N records or T seconds, checkpointed after each, handed
over before a shard end, retried, dead-lettered; on the in-memory Kinesis."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest

import kinesio
from _consumers import number, quick_settings, wait_for
from kinesio import AsyncConsumer, AsyncProducer, ProducerSettings
from kinesio._errors import ValidationError
from kinesio._models import SHARD_END, Record
from kinesio.leases import MemoryLeaseStore
from kinesio.testing import InMemoryKinesis

STREAM = "events"
APP = "batches"


async def put(kinesis: InMemoryKinesis, start: int, end: int, keys: int = 10) -> None:
    settings = ProducerSettings(linger=0.005, aggregate=True, ordered=True)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings) as producer:
        for i in range(start, end):
            await producer.put(f"{i % keys}:{i}".encode(), partition_key=f"key-{i % keys}")


async def test_lists_are_bounded_in_order_and_each_is_checkpointed() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 2)
    await put(kinesis, 0, 500)
    store = MemoryLeaseStore()
    lists: list[list[Record]] = []
    checkpoints: list[str] = []

    async def handle(records: list[Record]) -> None:
        lists.append(records)

    def on_event(event: kinesio.events.DiagnosticEvent) -> None:
        if isinstance(event, kinesio.events.CheckpointWritten):
            checkpoints.append(event.sequence_number)

    consumer = AsyncConsumer(
        STREAM,
        application_name=APP,
        settings=quick_settings(),
        kinesis=kinesis,
        lease_store=store,
        on_event=on_event,
    )
    await consumer.start()
    task = asyncio.create_task(consumer.consume_batches_with(handle, max_records=40))
    await wait_for(lambda: sum(map(len, lists)) == 500)
    await consumer.aclose()
    await task
    assert all(0 < len(records) <= 40 for records in lists)
    assert all(len({r.shard_id for r in records}) == 1 for records in lists)
    per_shard: dict[str, list[Record]] = defaultdict(list)
    for records in lists:
        per_shard[records[0].shard_id].extend(records)
    assert sorted(number(r) for rs in per_shard.values() for r in rs) == list(range(500))
    for records in per_shard.values():
        positions = [r.position for r in records]
        assert positions == sorted(positions)
    # one checkpoint per list (an unchanged position is not written twice)
    assert len(checkpoints) >= len(lists) - 1
    for lease in await store.list_leases():
        assert lease.checkpoint == per_shard[lease.lease_key][-1].position


async def test_a_short_list_is_handed_over_after_max_wait_on_an_idle_shard() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 1)
    await put(kinesis, 0, 5)
    lists: list[tuple[float, int]] = []
    consumer = AsyncConsumer(
        STREAM,
        application_name=APP,
        settings=quick_settings(),
        kinesis=kinesis,
        lease_store=MemoryLeaseStore(),
    )
    await consumer.start()
    started = time.monotonic()
    task = asyncio.create_task(
        consumer.consume_batches_with(
            lambda records: lists.append((time.monotonic(), len(records))),
            max_records=100,
            max_wait=0.3,
        )
    )
    await wait_for(lambda: bool(lists), timeout=10)
    await consumer.aclose()
    await task
    assert lists[0][1] == 5
    assert lists[0][0] - started >= 0.3


async def test_buffered_records_are_handled_before_the_shard_end_and_children_after() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 1)
    await put(kinesis, 0, 30)
    parent = (await kinesis.list_shards(STREAM))[0]
    await kinesis.split_shard(STREAM, parent.shard_id, 2**127)
    await put(kinesis, 30, 60)
    store = MemoryLeaseStore()
    lists: list[list[Record]] = []
    timeline: list[tuple[str, str, str]] = []

    def handle(records: list[Record]) -> None:
        lists.append(records)
        timeline.append(("list", records[0].shard_id, str(len(records))))

    def on_event(event: kinesio.events.DiagnosticEvent) -> None:
        if isinstance(event, kinesio.events.CheckpointWritten):
            timeline.append(("checkpoint", event.shard_id, event.sequence_number))

    consumer = AsyncConsumer(
        STREAM,
        application_name=APP,
        settings=quick_settings(),
        kinesis=kinesis,
        lease_store=store,
        on_event=on_event,
    )
    await consumer.start()
    # a long max_wait and a big max_records: the parent's records are still buffered when
    # its end arrives, and must reach the handler before SHARD_END is written
    task = asyncio.create_task(
        consumer.consume_batches_with(handle, max_records=1000, max_wait=2.0)
    )
    await wait_for(lambda: sum(map(len, lists)) == 60, timeout=40)
    await consumer.aclose()
    await task
    assert [number(r) for r in lists[0]] == list(range(30))
    parent_events = [e for e in timeline if e[1] == parent.shard_id]
    assert parent_events[0] == ("list", parent.shard_id, "30")
    assert ("checkpoint", parent.shard_id, SHARD_END) in parent_events[1:]
    # the children's records come after the parent's, in per-key order
    assert all(r.shard_id != parent.shard_id for rs in lists[1:] for r in rs)
    per_key: dict[str, list[int]] = defaultdict(list)
    for records in lists:
        for r in records:
            per_key[r.partition_key].append(number(r))
    assert all(ns == sorted(ns) for ns in per_key.values())
    final = {lease.lease_key: lease.checkpoint for lease in await store.list_leases()}
    # finished, or already cleaned up once its children were under way
    assert parent.shard_id not in final or final[parent.shard_id].sequence_number == SHARD_END


async def test_a_failing_list_is_retried_then_dead_lettered_record_by_record() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 1)
    await put(kinesis, 0, 50)
    calls = 0
    ok: list[int] = []
    dead: list[tuple[int, int]] = []

    def handle(records: list[Record]) -> None:
        nonlocal calls
        calls += 1
        if any(number(r) == 25 for r in records):
            raise ValueError("bad record in this list")
        ok.extend(number(r) for r in records)

    consumer = AsyncConsumer(
        STREAM,
        application_name=APP,
        settings=quick_settings(),
        kinesis=kinesis,
        lease_store=MemoryLeaseStore(),
    )
    await consumer.start()
    task = asyncio.create_task(
        consumer.consume_batches_with(
            handle,
            max_records=10,
            retries=2,
            retry_backoff=0.001,
            dead_letter=lambda record, error, attempts: dead.append((number(record), attempts)),
        )
    )
    await wait_for(lambda: len(ok) + len(dead) == 50)
    await consumer.aclose()
    await task
    assert 25 in [n for n, _ in dead]
    assert all(attempts == 3 for _, attempts in dead)
    assert sorted(ok + [n for n, _ in dead]) == list(range(50))


async def test_without_a_hook_a_failing_list_stops_the_consumer_before_its_checkpoint() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 1)
    await put(kinesis, 0, 50)
    store = MemoryLeaseStore()
    handled: list[int] = []
    returned: list[Record] = []

    async def handle(records: list[Record]) -> None:
        if any(number(r) == 25 for r in records):
            raise RuntimeError("poison list")
        handled.extend(number(r) for r in records)
        returned.append(records[-1])

    consumer = AsyncConsumer(
        STREAM, application_name=APP, settings=quick_settings(), kinesis=kinesis, lease_store=store
    )
    async with consumer:
        with pytest.raises(RuntimeError, match="poison list"):
            await consumer.consume_batches_with(handle, max_records=10)
    lease = (await store.list_leases())[0]
    assert 25 not in handled
    assert handled == list(range(len(handled)))
    # the checkpoint is the last record of the last list that returned: the failing list is
    # delivered again to the next owner
    assert returned
    assert lease.checkpoint == returned[-1].position
    assert lease.lease_owner is None


@pytest.mark.parametrize(
    "kwargs", [{"max_records": 0}, {"max_wait": 0}, {"retries": -1}, {"retry_backoff": -1}]
)
async def test_bad_batch_arguments_are_refused(kwargs: dict[str, float]) -> None:
    consumer = AsyncConsumer(
        STREAM,
        application_name=APP,
        kinesis=InMemoryKinesis(),
        lease_store=MemoryLeaseStore(),
    )
    with pytest.raises(ValidationError):
        await consumer.consume_batches_with(lambda records: None, **kwargs)  # type: ignore[arg-type]
