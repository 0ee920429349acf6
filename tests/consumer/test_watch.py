"""The watch loop: a dead worker's lease is taken at its own deadline, never before."""

from __future__ import annotations

import asyncio
import time

import pytest

from kinesio import ConsumerSettings
from kinesio._models import Lease
from kinesio.consumer._assignment import watch_interval
from kinesio.consumer._coordinator import LeaseCoordinator
from kinesio.events import DiagnosticEvent, Emitter, LeaseRenewed
from kinesio.leases import MemoryLeaseStore
from kinesio.testing import InMemoryKinesis

pytestmark = pytest.mark.timeout(30)

STREAM = "events"
FAILOVER = 1.0


def test_watch_interval_grows_with_the_fleet() -> None:
    assert watch_interval(3, 10.0, 1.0) == 1.0
    assert watch_interval(6, 10.0, 1.0) == 1.0
    assert watch_interval(12, 10.0, 1.0) == pytest.approx(2.0)
    assert watch_interval(50, 10.0, 1.0) == pytest.approx(50 / 6)
    # the fleet's scans per second stay at 60 / failover_time, whatever its size
    for workers in (12, 50, 400):
        assert workers / watch_interval(workers, 10.0, 1.0) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="workers"):
        watch_interval(0, 10.0, 1.0)


def test_watch_interval_setting() -> None:
    assert ConsumerSettings().effective_watch_interval == 1.0
    assert ConsumerSettings(failover_time=1.5).effective_watch_interval == 0.5
    assert ConsumerSettings(watch_interval=0.25).effective_watch_interval == 0.25


async def coordinator(
    store: MemoryLeaseStore, kinesis: InMemoryKinesis, worker: str, *, watch: bool = True
) -> tuple[LeaseCoordinator, list[float]]:
    renewed: list[float] = []

    def on_event(event: DiagnosticEvent) -> None:
        if isinstance(event, LeaseRenewed):
            renewed.append(time.monotonic())

    settings = ConsumerSettings(
        worker_id=worker,
        failover_time=FAILOVER,
        take_interval=60.0,  # only the watch can take the lease within the test
        watch_interval=0.1,
    )
    c = LeaseCoordinator(
        store, kinesis, STREAM, worker, settings, watch=watch, events=Emitter(on_event)
    )
    await c.start()
    await asyncio.sleep(0.05)  # its first round
    return c, renewed


async def crash(c: LeaseCoordinator) -> None:
    """Stop every loop without releasing anything, as kill -9 would."""
    c._taking = False
    for task in c._tasks:
        task.cancel()
    await asyncio.gather(*c._tasks, return_exceptions=True)


async def test_a_dead_workers_lease_is_taken_at_its_deadline() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 1)
    store = MemoryLeaseStore()
    a, renewed = await coordinator(store, kinesis, "a")
    assert a.held
    await asyncio.sleep(0.5)  # a few renewals (every failover / 3)
    b, _ = await coordinator(store, kinesis, "b")
    await asyncio.sleep(0.5)
    assert not b.held  # a renews: nothing to take
    await crash(a)
    last_renewal = renewed[-1]
    async with asyncio.timeout(FAILOVER + 2.0):
        while not b.held:
            await asyncio.sleep(0.01)
    after = time.monotonic() - last_renewal
    # not before the counter stood still for the failover time, and soon after it
    assert FAILOVER <= after <= FAILOVER + 0.9  # a loaded machine adds some
    (lease,) = await store.list_leases()
    assert isinstance(lease, Lease)
    assert lease.lease_owner == "b"
    await b.stop()


async def test_without_the_watch_only_the_take_round_takes() -> None:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 1)
    store = MemoryLeaseStore()
    a, _ = await coordinator(store, kinesis, "a")
    assert a.held
    b, _ = await coordinator(store, kinesis, "b", watch=False)
    await crash(a)
    await asyncio.sleep(FAILOVER + 0.6)
    assert not b.held  # the KCL 2.x timing: next take round in 60 s
    await b.stop()
