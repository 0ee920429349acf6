"""Graceful hand-off: a lease stolen from a live worker moves without processing a record twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from kinesio import (
    AsyncConsumer,
    AsyncProducer,
    ConsumerSettings,
    InitialPosition,
    Polling,
    ProducerSettings,
)
from kinesio._models import Lease, Record
from kinesio.consumer._coordinator import LeaseCoordinator
from kinesio.events import DiagnosticEvent, LeaseAcquired
from kinesio.leases import MemoryLeaseStore
from kinesio.leases.base import checkpoint_owner
from kinesio.testing import InMemoryKinesis

pytestmark = pytest.mark.timeout(60)

STREAM = "events"
APP = "billing"
RECORDS = 600


async def filled_stream() -> InMemoryKinesis:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 2)
    # one Kinesis record per user record, so that batches are short
    plain = ProducerSettings(aggregate=False, linger=0.005)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=plain) as producer:
        for i in range(RECORDS):
            await producer.put(f"{i % 20}:{i}".encode(), partition_key=f"key-{i % 20}")
    return kinesis


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def settings(worker: str, *, handoff: bool) -> ConsumerSettings:
    return ConsumerSettings(
        worker_id=worker,
        failover_time=3.0,
        renew_interval=0.3,
        take_interval=0.3,
        initial_position=InitialPosition.TRIM_HORIZON,
        retrieval=Polling(idle_time=0.02, catch_up_interval=0.0, max_records=25),
        graceful_handoff=handoff,
        shutdown_timeout=5.0,
    )


class Handled:
    def __init__(self) -> None:
        self.by: dict[str, list[Record]] = {"a": [], "b": []}

    def handler(self, worker: str) -> Callable[[Record], Awaitable[None]]:
        async def handle(record: Record) -> None:
            self.by[worker].append(record)
            await asyncio.sleep(0.01)  # a batch is in flight when the lease is stolen

        return handle

    def twice(self, shard: str) -> int:
        def ids(worker: str) -> set[tuple[str, int]]:
            return {
                (r.sequence_number, r.sub_sequence_number)
                for r in self.by[worker]
                if r.shard_id == shard
            }

        return len(ids("a") & ids("b"))

    def numbers(self) -> set[int]:
        return {int(r.data.split(b":")[1]) for rs in self.by.values() for r in rs}


async def steal_one(handoff: bool) -> tuple[Handled, str, MemoryLeaseStore]:
    """Worker a reads both shards, checkpointing only when it must let go; worker b joins and
    steals one of them. Returns what each handled, the stolen shard and the store."""
    kinesis = await filled_stream()
    store = MemoryLeaseStore()
    handled = Handled()
    stolen: list[str] = []

    def on_b(event: DiagnosticEvent) -> None:
        if isinstance(event, LeaseAcquired) and event.stolen:
            stolen.append(event.lease_key)

    a = AsyncConsumer(
        STREAM,
        application_name=APP,
        settings=settings("a", handoff=handoff),
        kinesis=kinesis,
        lease_store=store,
    )
    b = AsyncConsumer(
        STREAM,
        application_name=APP,
        settings=settings("b", handoff=handoff),
        kinesis=kinesis,
        lease_store=store,
        on_event=on_b,
    )
    rarely = {"checkpoint_every": 10**6, "checkpoint_interval": 600.0}
    await a.start()
    task_a = asyncio.create_task(a.consume_with(handled.handler("a"), **rarely))  # type: ignore[arg-type]

    def both_shards_begun() -> bool:
        counts = Counter(r.shard_id for r in handled.by["a"])
        return len(counts) == 2 and min(counts.values()) >= 30

    await wait_for(both_shards_begun)
    await b.start()
    task_b = asyncio.create_task(b.consume_with(handled.handler("b"), **rarely))  # type: ignore[arg-type]
    await wait_for(lambda: len(handled.numbers()) == RECORDS, timeout=40)
    await b.aclose()
    await a.aclose()
    await asyncio.gather(task_a, task_b)
    assert len(stolen) == 1, stolen
    return handled, stolen[0], store


async def test_a_stolen_lease_is_handed_over_at_the_last_record_processed() -> None:
    handled, shard, store = await steal_one(handoff=True)
    assert handled.numbers() == set(range(RECORDS))
    assert any(r.shard_id == shard for r in handled.by["b"]), "b never read the stolen shard"
    assert handled.twice(shard) == 0
    lease = await store.get_lease(shard)
    assert lease is not None
    assert checkpoint_owner(lease) is None


async def test_without_the_handoff_the_new_owner_repeats_from_the_last_checkpoint() -> None:
    handled, shard, _ = await steal_one(handoff=False)
    assert handled.numbers() == set(range(RECORDS))
    assert handled.twice(shard) > 0  # what the hand-off saves


async def test_a_previous_owner_that_never_hands_off_is_waited_for_only_so_long() -> None:
    """A Java KCL 2.x worker ignores ``checkpointOwner``: the thief resumes at the stored
    checkpoint after ``handoff_timeout``, and clears the attribute itself."""
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 2)
    store = MemoryLeaseStore()
    for shard in await kinesis.list_shards(STREAM):
        lease = await store.create_lease(Lease(shard.shard_id))
        assert lease is not None
        assert await store.take(lease, "java") is not None

    async def java_renews() -> None:
        while True:
            for lease in await store.list_leases():
                if lease.lease_owner == "java":
                    await store.renew(lease)
            await asyncio.sleep(0.1)

    renewing = asyncio.create_task(java_renews())
    settings = ConsumerSettings(
        worker_id="b", failover_time=3.0, take_interval=0.2, handoff_timeout=0.6
    )
    b = LeaseCoordinator(store, kinesis, STREAM, "b", settings)
    started = time.monotonic()
    await b.start()
    async with asyncio.timeout(10):
        handle = await b.acquired.get()
    waited = time.monotonic() - started
    assert handle is not None
    assert waited >= 0.6
    stored = await store.get_lease(handle.key)
    assert stored is not None
    assert stored.lease_owner == "b"
    assert checkpoint_owner(stored) is None
    assert handle.active
    renewing.cancel()
    await b.stop()
