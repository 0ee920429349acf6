"""AsyncConsumer on the in-memory Kinesis and MemoryLeaseStore: several workers in one process."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from kinesio import (
    AsyncConsumer,
    AsyncProducer,
    ConsumerSettings,
    InitialPosition,
    Polling,
    ProducerSettings,
)
from kinesio._errors import EndpointConnectionError, LeaseLost, ValidationError
from kinesio._models import SHARD_END, ExtendedSequenceNumber, Lease, Record
from kinesio.consumer import (
    Checkpointer,
    InitializationInput,
    LeaseLostInput,
    ProcessRecordsInput,
    ShardEndedInput,
    ShutdownRequestedInput,
)
from kinesio.leases import MemoryLeaseStore
from kinesio.testing import CONNECTION_ERROR, Fault, InMemoryKinesis

STREAM = "events"
APP = "billing"


def fast(**kw: object) -> ConsumerSettings:
    base: dict[str, object] = {
        "failover_time": 0.8,
        "take_interval": 0.2,
        "renew_interval": 0.2,
        "shard_sync_interval": 0.5,
        "initial_position": InitialPosition.TRIM_HORIZON,
        "retrieval": Polling(idle_time=0.02, catch_up_interval=0.0),
        "shutdown_timeout": 5.0,
    }
    base.update(kw)
    return ConsumerSettings(**base)  # type: ignore[arg-type]


async def make_stream(shards: int) -> InMemoryKinesis:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, shards)
    return kinesis


async def produce(
    kinesis: InMemoryKinesis, start: int, end: int, *, keys: int = 20, aggregate: bool = True
) -> None:
    settings = ProducerSettings(linger=0.005, aggregate=aggregate)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings) as producer:
        for i in range(start, end):
            await producer.put(f"{i % keys}:{i}".encode(), partition_key=f"key-{i % keys}")


class Seen:
    """What the workers handled: every record, and per-key order."""

    def __init__(self) -> None:
        self.records: list[tuple[str, Record]] = []
        self.by_worker: dict[str, set[str]] = defaultdict(set)

    def handler(self, worker: str) -> Callable[[Record], None]:
        def handle(record: Record) -> None:
            self.records.append((worker, record))
            self.by_worker[worker].add(record.shard_id)

        return handle

    def numbers(self) -> set[int]:
        return {int(r.data.split(b":")[1]) for _, r in self.records}

    def per_key(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(list)
        for _, r in self.records:
            out[r.partition_key].append(int(r.data.split(b":")[1]))
        return out


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def run_worker(
    consumer: AsyncConsumer, handler: Callable[[Record], object], **kw: object
) -> asyncio.Task[None]:
    await consumer.start()
    return asyncio.create_task(consumer.consume_with(handler, **kw))  # type: ignore[arg-type]


async def test_one_worker_reads_everything_in_per_key_order_and_checkpoints() -> None:
    kinesis = await make_stream(3)
    store = MemoryLeaseStore()
    await produce(kinesis, 0, 600)
    seen = Seen()
    consumer = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    task = await run_worker(consumer, seen.handler("a"), checkpoint_every=50)
    await wait_for(lambda: len(seen.numbers()) == 600)
    await consumer.aclose()
    await task
    assert seen.numbers() == set(range(600))
    for key, numbers in seen.per_key().items():
        assert numbers == sorted(numbers), key
    leases = await store.list_leases()
    assert len(leases) == 3
    for lease in leases:
        assert lease.lease_owner is None  # released on shutdown
        assert not lease.checkpoint.is_sentinel  # checkpointed past TRIM_HORIZON
    # aggregated input: sub-sequence numbers are used
    assert any(r.sub_sequence_number > 0 for _, r in seen.records)


async def test_a_restarted_worker_resumes_after_the_checkpoint() -> None:
    kinesis = await make_stream(2)
    store = MemoryLeaseStore()
    await produce(kinesis, 0, 300)
    first = Seen()
    c1 = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    t1 = await run_worker(c1, first.handler("a"), checkpoint_every=10)
    await wait_for(lambda: len(first.numbers()) == 300)
    await c1.aclose()
    await t1
    await produce(kinesis, 300, 400)
    second = Seen()
    c2 = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    t2 = await run_worker(c2, second.handler("b"))
    await wait_for(lambda: len(second.numbers()) == 100)
    await asyncio.sleep(0.2)
    await c2.aclose()
    await t2
    assert second.numbers() == set(range(300, 400))  # nothing re-read, nothing skipped


async def test_workers_share_shards_fairly_and_a_joining_worker_gets_its_share() -> None:
    kinesis = await make_stream(4)
    store = MemoryLeaseStore()
    seen = Seen()
    a = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    ta = await run_worker(a, seen.handler("a"))
    await wait_for(lambda: len(a._coordinator.held) == 4)
    b = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    tb = await run_worker(b, seen.handler("b"))
    await wait_for(lambda: len(a._coordinator.held) == 2 and len(b._coordinator.held) == 2)
    await produce(kinesis, 0, 400)
    await wait_for(lambda: len(seen.numbers()) == 400)
    assert seen.by_worker["a"]
    assert seen.by_worker["b"]
    assert not seen.by_worker["a"] & seen.by_worker["b"]  # each shard read by one worker
    await asyncio.gather(a.aclose(), b.aclose())
    await asyncio.gather(ta, tb)


async def test_a_crashed_workers_shards_are_taken_over_after_failover() -> None:
    kinesis = await make_stream(4)
    store = MemoryLeaseStore()
    seen = Seen()
    a = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    b = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    ta = await run_worker(a, seen.handler("a"))
    tb = await run_worker(b, seen.handler("b"))
    await wait_for(lambda: len(a._coordinator.held) == 2 and len(b._coordinator.held) == 2)
    # crash b: its tasks stop dead, nothing is released
    tb.cancel()
    for task in b._coordinator._tasks:
        task.cancel()
    await asyncio.sleep(0)
    await produce(kinesis, 0, 300)
    await wait_for(lambda: len(a._coordinator.held) == 4, timeout=10)
    await wait_for(lambda: seen.numbers() >= set(range(300)))
    await a.aclose()
    await ta


async def test_a_zombie_cannot_checkpoint_after_its_lease_was_taken() -> None:
    kinesis = await make_stream(1)
    store = MemoryLeaseStore()
    await produce(kinesis, 0, 50)
    zombie = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    await zombie.start()
    streams = zombie.shards()
    shard = await anext(streams)
    batches = shard.records()
    batch = await anext(batches)
    # the zombie pauses: it stops renewing (as a SIGSTOPped process would)
    for task in zombie._coordinator._tasks:
        task.cancel()
    live = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    seen = Seen()
    tl = await run_worker(live, seen.handler("live"), checkpoint_every=1)
    await wait_for(lambda: len(seen.numbers()) == 50)
    lease_before = (await store.list_leases())[0]
    assert lease_before.lease_owner == live.worker_id
    # the zombie wakes up and tries to checkpoint what it processed: refused, nothing written
    shard.checkpointer.stage(batch[-1])
    with pytest.raises(LeaseLost):
        await shard.checkpointer.checkpoint()
    lease_after = (await store.list_leases())[0]
    assert lease_after.checkpoint == lease_before.checkpoint
    assert lease_after.lease_owner == live.worker_id
    await live.aclose()
    await tl
    await batches.aclose()
    await streams.aclose()
    await zombie.aclose()


async def test_resharding_parents_first_and_per_key_order_across_split_and_merge() -> None:
    kinesis = await make_stream(2)
    store = MemoryLeaseStore()
    seen = Seen()
    settings = fast(initial_position=InitialPosition.TRIM_HORIZON)
    a = AsyncConsumer(
        STREAM, application_name=APP, settings=settings, kinesis=kinesis, lease_store=store
    )
    b = AsyncConsumer(
        STREAM, application_name=APP, settings=settings, kinesis=kinesis, lease_store=store
    )
    ta = await run_worker(a, seen.handler("a"), checkpoint_every=20)
    tb = await run_worker(b, seen.handler("b"), checkpoint_every=20)
    await produce(kinesis, 0, 300)
    shards = await kinesis.list_shards(STREAM)
    s0 = shards[0]
    await kinesis.split_shard(STREAM, s0.shard_id, (s0.starting_hash_key + s0.ending_hash_key) // 2)
    await produce(kinesis, 300, 600)
    open_shards = sorted(
        (s for s in await kinesis.list_shards(STREAM) if s.is_open),
        key=lambda s: s.starting_hash_key,
    )
    await kinesis.merge_shards(STREAM, open_shards[1].shard_id, open_shards[2].shard_id)
    await produce(kinesis, 600, 900)
    await wait_for(lambda: seen.numbers() >= set(range(900)), timeout=30)
    for key, numbers in seen.per_key().items():
        deduped = list(dict.fromkeys(numbers))
        assert deduped == sorted(deduped), key
    await asyncio.gather(a.aclose(), b.aclose())
    await asyncio.gather(ta, tb)
    leases = {lease.lease_key: lease for lease in await store.list_leases()}
    assert s0.shard_id not in leases or leases[s0.shard_id].checkpoint.sequence_number == SHARD_END


class Processor:
    calls: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.shard = ""

    def initialize(self, input: InitializationInput) -> None:
        self.shard = input.shard_id
        self.calls.append(f"init {input.shard_id}")

    async def process_records(self, input: ProcessRecordsInput[Checkpointer]) -> None:
        self.calls.append(f"records {self.shard} {len(input.records)}")
        await input.checkpointer.checkpoint(input.records[-1])

    def lease_lost(self, input: LeaseLostInput) -> None:
        self.calls.append(f"lost {input.shard_id}")

    def shard_ended(self, input: ShardEndedInput[Checkpointer]) -> None:
        self.calls.append(f"ended {self.shard}")

    def shutdown_requested(self, input: ShutdownRequestedInput[Checkpointer]) -> None:
        self.calls.append(f"shutdown {self.shard}")


async def test_kcl_style_processor_lifecycle() -> None:
    kinesis = await make_stream(1)
    store = MemoryLeaseStore()
    await produce(kinesis, 0, 100)
    Processor.calls = []
    consumer = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    await consumer.start()
    task = asyncio.create_task(consumer.run(Processor))
    await wait_for(lambda: any(c.startswith("records") for c in Processor.calls))
    shard = (await kinesis.list_shards(STREAM))[0]
    await kinesis.split_shard(
        STREAM, shard.shard_id, (shard.starting_hash_key + shard.ending_hash_key) // 2
    )
    await wait_for(lambda: f"ended {shard.shard_id}" in Processor.calls)
    await wait_for(lambda: sum(c.startswith("init") for c in Processor.calls) == 3)
    await consumer.aclose()
    await task
    assert Processor.calls[0] == f"init {shard.shard_id}"
    assert sum(c.startswith("shutdown") for c in Processor.calls) == 2
    lease = await store.get_lease(shard.shard_id)
    assert lease is None or lease.checkpoint == ExtendedSequenceNumber(SHARD_END)


async def test_a_failing_handler_stops_the_consumer_and_its_error_is_raised() -> None:
    kinesis = await make_stream(1)
    store = MemoryLeaseStore()
    await produce(kinesis, 0, 20, aggregate=False)
    handled: list[int] = []

    def handler(record: Record) -> None:
        n = int(record.data.split(b":")[1])
        if n == 10:
            raise RuntimeError("poison record")
        handled.append(n)

    consumer = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    async with consumer:
        with pytest.raises(RuntimeError, match="poison"):
            await consumer.consume_with(handler, checkpoint_every=1)
    assert handled == list(range(10))
    lease = (await store.list_leases())[0]
    assert lease.lease_owner is None
    # the checkpoint covers record 9, not the poison record: it is delivered again next time
    again: list[int] = []
    c2 = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )

    def collect(record: Record) -> None:
        again.append(int(record.data.split(b":")[1]))
        if len(again) == 10:
            c2.request_shutdown()

    async with c2:
        await c2.consume_with(collect)
    assert again == list(range(10, 20))


async def test_checkpoint_arguments_are_validated() -> None:
    kinesis = await make_stream(1)
    store = MemoryLeaseStore()
    await produce(kinesis, 0, 5, aggregate=False)
    consumer = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    async with consumer:
        shard = await anext(consumer.shards())
        batch = await anext(shard.records())
        with pytest.raises(ValidationError, match="not delivered"):
            await shard.checkpointer.checkpoint(ExtendedSequenceNumber("9" * 60))
        with pytest.raises(ValidationError, match="not a position"):
            await shard.checkpointer.checkpoint(ExtendedSequenceNumber(SHARD_END))
        other = Record(b"x", "k", batch[0].sequence_number, shard_id="shardId-999")
        with pytest.raises(ValidationError, match="staged on the checkpointer"):
            shard.checkpointer.stage(other)
        await shard.checkpointer.checkpoint(batch[-1])
        assert shard.checkpointer.last_checkpoint == batch[-1].position
        with pytest.raises(ValidationError, match="before the current checkpoint"):
            await shard.checkpointer.checkpoint(ExtendedSequenceNumber("1"))


@pytest.mark.parametrize("failing", ["ListShards", "lease table"])
async def test_transient_errors_at_shard_end_do_not_stop_the_worker(failing: str) -> None:
    """A connection reset while a shard ends (ListShards, or the lease table) is retried while
    the lease is held: the worker finishes the shard and reads the children; before, the error
    ended consume_with and the whole worker."""
    kinesis = await make_stream(1)
    store = FlakyLeaseStore()
    await produce(kinesis, 0, 100)
    (parent,) = await kinesis.list_shards(STREAM)
    seen = Seen()
    consumer = AsyncConsumer(
        STREAM, application_name=APP, settings=fast(), kinesis=kinesis, lease_store=store
    )
    task = await run_worker(consumer, seen.handler("a"), checkpoint_every=10)
    await wait_for(lambda: seen.numbers() >= set(range(100)))
    if failing == "ListShards":
        kinesis.inject(Fault("ListShards", CONNECTION_ERROR))
    else:
        store.failing = True
    middle = (parent.starting_hash_key + parent.ending_hash_key) // 2
    await kinesis.split_shard(STREAM, parent.shard_id, middle)
    await asyncio.sleep(1.0)  # the parent reaches its end while the errors last
    assert not task.done()
    kinesis.clear_faults()
    store.failing = False
    await produce(kinesis, 100, 200)  # into the children
    await wait_for(lambda: seen.numbers() >= set(range(200)), timeout=30)
    await consumer.aclose()
    await task  # ended by the shutdown, not by an error
    leases = {lease.lease_key: lease for lease in await store.list_leases()}
    assert parent.shard_id not in leases or leases[parent.shard_id].checkpoint == (
        ExtendedSequenceNumber(SHARD_END)
    )
    assert store.refused > 0 or failing == "ListShards"


class FlakyLeaseStore(MemoryLeaseStore):
    """A memory lease store whose reads and checkpoints fail like a dropped connection while
    ``failing`` is set (renewals and takes go through, so the lease stays held)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False
        self.refused = 0

    def _maybe_fail(self) -> None:
        if self.failing:
            self.refused += 1
            raise EndpointConnectionError("connection reset", operation="Scan")

    async def list_leases(self, *, consistent: bool = True) -> list[Lease]:
        self._maybe_fail()
        return await super().list_leases(consistent=consistent)

    async def checkpoint(self, *args: Any, **kw: Any) -> Lease | None:
        self._maybe_fail()
        return await super().checkpoint(*args, **kw)
