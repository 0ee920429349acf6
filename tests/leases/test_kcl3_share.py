"""A kinesio worker beside KCL 3 workers known only from the worker-metrics table."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kinesio import ConsumerSettings, InitialPosition
from kinesio.consumer._coordinator import LeaseCoordinator
from kinesio.leases._worker_metrics import KINESIO_MARK, metrics_item
from kinesio.testing import InMemoryKinesis

from ._lease_harness import DynamoHarness, dynamo

__all__ = ["dynamo"]  # the fixture, parametrized over moto and dynalite

pytestmark = pytest.mark.timeout(90)

STREAM = "events"
ME = "kinesio-1"
KCL3 = "kcl3-worker"


def kcl3_item(worker: str, lut: float) -> dict[str, Any]:
    """An item as the KCL 3.1.3 writes it: no kinesio mark, ten CPU values, opr a long."""
    item = metrics_item(worker, lut, [float(i) for i in range(10)])
    del item[KINESIO_MARK]
    return item


@pytest.fixture
async def coordinator(dynamo: DynamoHarness) -> AsyncIterator[LeaseCoordinator]:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 4)
    settings = ConsumerSettings(
        worker_id=ME, failover_time=60.0, initial_position=InitialPosition.TRIM_HORIZON
    )
    store = dynamo.store()
    c = LeaseCoordinator(store, kinesis, STREAM, ME, settings, rng=random.Random(7), watch=False)
    await store.create_table_if_missing()
    await c.sync_shards()
    await c.take_round()  # alone: takes all four
    assert len(c.held) == 4
    try:
        yield c
    finally:
        await store.aclose()


async def owners(dynamo: DynamoHarness) -> dict[str, tuple[str | None, str | None]]:
    items = (await dynamo.client.scan(TableName=dynamo.table, ConsistentRead=True))["Items"]
    return {
        i["leaseKey"]["S"]: (
            i.get("leaseOwner", {}).get("S"),
            i.get("checkpointOwner", {}).get("S"),
        )
        for i in items
    }


async def test_sheds_down_to_its_share_for_a_live_kcl3_worker(
    dynamo: DynamoHarness, coordinator: LeaseCoordinator
) -> None:
    table = await dynamo.worker_metrics_table(kcl3_item(KCL3, time.time()))
    coordinator.metrics_table._exists = None  # type: ignore[union-attr]  # look again now
    for _ in range(4):  # one hand-over per round, never below the share of 2
        await coordinator.renew_round()  # no loops run here
        await coordinator.take_round()
    assert len(coordinator.held) == 2
    table_owners = await owners(dynamo)
    handed = {k: v for k, v in table_owners.items() if v[0] == KCL3}
    # The KCL 3 graceful hand-off: the receiver owns it, this worker still has to checkpoint.
    assert sorted(handed.values()) == [(KCL3, ME), (KCL3, ME)]
    assert set(handed).isdisjoint(coordinator.held)
    assert {k for k, v in table_owners.items() if v[0] == ME} == set(coordinator.held)
    # kinesio's own item is in the KCL 3 format and marked as kinesio's.
    assert coordinator.metrics_table is not None
    assert await coordinator.metrics_table.publish()
    mine = (await dynamo.client.get_item(TableName=table, Key={"wid": {"S": ME}}))["Item"]
    assert mine["opr"] == {"M": {"C": {"L": [{"N": "100"}]}}}
    assert KINESIO_MARK in mine
    assert int(mine["lut"]["N"]) >= int(time.time()) - 5
    # Stopping withdraws it (else the KCL 3 leader counts this worker for another minute).
    await coordinator.stop()
    assert "Item" not in await dynamo.client.get_item(TableName=table, Key={"wid": {"S": ME}})
    assert not await coordinator.metrics_table.publish()


@pytest.mark.parametrize("kind", ["stale", "kinesio", "failing"])
async def test_nothing_shed_for_workers_the_kcl3_leader_ignores(
    dynamo: DynamoHarness, coordinator: LeaseCoordinator, kind: str
) -> None:
    if kind == "stale":
        item = kcl3_item(KCL3, time.time() - 120)
    elif kind == "kinesio":
        item = metrics_item(KCL3, time.time(), [5.0])  # a kinesio worker takes for itself
    else:
        item = kcl3_item(KCL3, time.time())
        item["sts"]["M"]["C"]["L"][-1] = {"N": "-1"}
    await dynamo.worker_metrics_table(item)
    coordinator.metrics_table._exists = None  # type: ignore[union-attr]
    for _ in range(2):
        await coordinator.renew_round()
        await coordinator.take_round()
    assert len(coordinator.held) == 4
    assert all(owner == (ME, None) for owner in (await owners(dynamo)).values())


async def test_without_the_table_nothing_is_read_again_for_a_while(
    coordinator: LeaseCoordinator,
) -> None:
    table = coordinator.metrics_table
    assert table is not None
    assert not await table.exists()
    checked = table._checked
    await coordinator.take_round()
    assert table._checked == checked  # cached: no DescribeTable per round
    assert len(coordinator.held) == 4
