"""A lease older than failover_time on its owner's clock is lost there, even while a renewal
call hangs: no more records to the handler, no checkpoint, the usual lease-lost event."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from kinesio import (
    AsyncConsumer,
    AsyncProducer,
    ConsumerSettings,
    InitialPosition,
    Polling,
    ProducerSettings,
)
from kinesio._errors import LeaseLost
from kinesio._models import ExtendedSequenceNumber, Lease, Record
from kinesio.consumer._coordinator import LeaseHandle
from kinesio.events import DiagnosticEvent, Emitter, LeaseLostEvent, LeaseRenewed
from kinesio.leases import MemoryLeaseStore
from kinesio.testing import InMemoryKinesis

STREAM = "events"
FAILOVER = 0.8


class HangingLeaseStore(MemoryLeaseStore):
    """A memory lease store whose renewals hang forever once ``hang`` is set (as a call stuck
    in botocore's read timeouts and retries would); it notes when each checkpoint write began."""

    def __init__(self) -> None:
        super().__init__()
        self.hang = False
        self.hanging = 0
        self.checkpoint_starts: list[float] = []

    async def renew(self, lease: Lease) -> Lease | None:
        if self.hang:
            self.hanging += 1
            await asyncio.Event().wait()
        return await super().renew(lease)

    async def checkpoint(self, *args: Any, **kw: Any) -> Lease | None:
        self.checkpoint_starts.append(time.monotonic())
        return await super().checkpoint(*args, **kw)


async def wait_for(predicate: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_handle_expires_while_its_renewal_hangs_and_refuses_to_checkpoint() -> None:
    store = HangingLeaseStore()
    lease = await store.create_lease(Lease("shardId-000000000000"))
    assert lease is not None
    taken = await store.take(lease, "worker")
    assert taken is not None
    events: list[DiagnosticEvent] = []
    written_at = time.monotonic()
    handle = LeaseHandle(
        taken,
        store,
        "worker",
        time.monotonic,
        Emitter(events.append),
        failover_time=0.3,
        written_at=written_at,
    )
    store.hang = True
    renewal = asyncio.create_task(handle.renew(0.3))
    await wait_for(lambda: handle.lost.is_set(), timeout=0.3 + 2.0)
    assert store.hanging == 1
    assert time.monotonic() - written_at >= 0.3
    await wait_for(renewal.done, timeout=1.0)  # the hanging call was abandoned, not awaited
    assert renewal.exception() is None
    lost = [e for e in events if isinstance(e, LeaseLostEvent)]
    assert [(e.lease_key, e.reason) for e in lost] == [(handle.key, handle.lost_reason)]
    assert "on this worker's clock" in handle.lost_reason
    with pytest.raises(LeaseLost):
        await handle.checkpoint(ExtendedSequenceNumber("1"))
    assert store.checkpoint_starts == []
    assert (await store.get_lease(handle.key)) == taken  # nothing written after the take


async def test_a_worker_stops_handling_and_checkpointing_once_its_lease_expires_locally() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 1)
    settings = ProducerSettings(aggregate=False)  # one Kinesis record each: small batches
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings) as producer:
        for i in range(400):
            await producer.put(f"{i}".encode(), partition_key=f"key-{i % 7}")
    store = HangingLeaseStore()
    lost_at: list[float] = []
    renewed_at: list[float] = []

    def on_event(event: DiagnosticEvent) -> None:
        if isinstance(event, LeaseLostEvent):
            lost_at.append(time.monotonic())
        elif isinstance(event, LeaseRenewed):
            renewed_at.append(time.monotonic())

    consumer_settings = ConsumerSettings(
        failover_time=FAILOVER,
        renew_interval=0.2,
        take_interval=60.0,  # no re-take while the test watches
        initial_position=InitialPosition.TRIM_HORIZON,
        retrieval=Polling(idle_time=0.02, catch_up_interval=0.0, max_records=20),
        shutdown_timeout=5.0,
    )
    consumer = AsyncConsumer(
        STREAM,
        application_name="billing",
        settings=consumer_settings,
        kinesis=kinesis,
        lease_store=store,
        on_event=on_event,
    )
    handled: list[float] = []

    async def handler(record: Record) -> None:
        handled.append(time.monotonic())
        await asyncio.sleep(0.02)  # slow enough that the lease expires mid-stream

    await consumer.start()
    task = asyncio.create_task(consumer.consume_with(handler, checkpoint_every=5))
    await wait_for(lambda: len(handled) >= 20 and len(store.checkpoint_starts) >= 1, timeout=10)
    store.hang = True
    await wait_for(lambda: store.hanging >= 1, timeout=FAILOVER)
    hang_began = time.monotonic()
    await wait_for(lambda: bool(lost_at), timeout=FAILOVER + 2.0)
    await asyncio.sleep(0.3)  # any record or checkpoint after the loss would show up by now
    await consumer.aclose()
    await task
    assert len(lost_at) == 1
    assert lost_at[0] > hang_began  # lost locally, not refused by the table
    assert handled[-1] <= lost_at[0]
    assert len(handled) < 400  # it stopped reading the shard
    assert all(start <= lost_at[0] for start in store.checkpoint_starts)
    (lease,) = await store.list_leases()
    assert lease.lease_owner == consumer.worker_id  # never released: it no longer held it


async def test_the_cheap_held_check_ends_with_the_lease_on_the_owners_clock() -> None:
    store = MemoryLeaseStore()
    lease = await store.create_lease(Lease("shardId-000000000000"))
    assert lease is not None
    taken = await store.take(lease, "worker")
    assert taken is not None
    now = [100.0]
    handle = LeaseHandle(
        taken, store, "worker", lambda: now[0], failover_time=10.0, written_at=100.0
    )
    held = handle.held_check()
    now[0] = 109.9
    assert held()
    assert handle.active
    now[0] = 110.0
    assert not held()
    assert not handle.active
    assert handle.lost.is_set()
    assert not handle.held_check()()  # lost: a new check is False at once

    unbounded = LeaseHandle(taken, store, "worker", lambda: now[0])
    now[0] = 1e12
    assert unbounded.held_check()()
    handle2 = LeaseHandle(taken, store, "worker", lambda: now[0], failover_time=10.0)
    held2 = handle2.held_check()
    handle2.mark_lost("test")
    assert not handle2.held_check()()
    assert held2()  # stale after the loop ran: the reason callers take a new one


async def test_a_sync_handler_gets_no_record_after_the_lease_expires_mid_batch() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 1)
    settings = ProducerSettings(aggregate=False)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings) as producer:
        for i in range(200):
            await producer.put(f"{i}".encode(), partition_key=f"key-{i % 7}")
    store = HangingLeaseStore()
    lost_at: list[float] = []

    def on_event(event: DiagnosticEvent) -> None:
        if isinstance(event, LeaseLostEvent):
            lost_at.append(time.monotonic())

    consumer = AsyncConsumer(
        STREAM,
        application_name="billing",
        settings=ConsumerSettings(
            failover_time=FAILOVER,
            renew_interval=0.2,
            take_interval=60.0,
            initial_position=InitialPosition.TRIM_HORIZON,
            # one batch of 200 records: the lease expires inside it, with no await between
            # the records of a sync handler
            retrieval=Polling(idle_time=0.02, catch_up_interval=0.0, max_records=200),
            shutdown_timeout=5.0,
        ),
        kinesis=kinesis,
        lease_store=store,
        on_event=on_event,
    )
    handled: list[float] = []

    def handler(record: Record) -> None:
        if not handled:
            store.hang = True  # no renewal from here on
        handled.append(time.monotonic())
        time.sleep(0.01)  # blocks the loop: 200 records take 2 s, past FAILOVER

    await consumer.start()
    task = asyncio.create_task(consumer.consume_with(handler, checkpoint_every=10**9))
    await wait_for(lambda: bool(lost_at), timeout=10.0)
    await consumer.aclose()
    await task
    assert 0 < len(handled) < 200  # stopped inside the batch
    # the record after the expiry was not handed over: the last one began within failover
    # of the first (plus one record's sleep and scheduling slack)
    assert handled[-1] - handled[0] <= FAILOVER + 0.2
    assert store.checkpoint_starts == []  # nothing past the lease was checkpointed
