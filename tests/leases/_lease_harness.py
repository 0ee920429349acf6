"""Fixtures for the lease store tests: every store on a fresh table, and raw item access.

``backend`` runs a test on each LeaseStore (in memory, DynamoDB on moto, DynamoDB on
dynalite). ``Backend.put_raw`` / ``get_raw`` write and read items in DynamoDB's typed form
behind the store's back (a raw DynamoDB client, or the item codec for the in-memory store), to
check what other lease-table writers (the Java KCL) see. ``dynamo`` is the DynamoDB emulators
only, with a raw client and a table name but no table.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import pytest

from kinesio._aws import AWSConfig, create_client
from kinesio._models import TRIM_HORIZON, Lease
from kinesio.leases import DynamoDBLeaseStore, LeaseStore, MemoryLeaseStore
from kinesio.leases.base import is_lease_item
from kinesio.leases.dynamodb import KNOWN_ATTRIBUTES, lease_from_item, lease_to_item
from kinesio.local import LocalEndpoint

Item = dict[str, Any]


@dataclass
class Backend:
    name: str
    store: LeaseStore
    put_raw: Callable[[Item], Awaitable[None]]
    get_raw: Callable[[str], Awaitable[Item | None]]


BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("moto", id="moto", marks=pytest.mark.integration),
    pytest.param("dynalite", id="dynalite", marks=pytest.mark.integration),
]


def table_name() -> str:
    return f"kinesio-test-{uuid.uuid4().hex[:12]}"


async def memory_backend() -> Backend:
    store = MemoryLeaseStore()

    async def put_raw(item: Item) -> None:
        if is_lease_item(item):
            lease = lease_from_item(item)
        else:
            key = item["leaseKey"]["S"]
            extra = {k: v for k, v in item.items() if k not in KNOWN_ATTRIBUTES}
            lease = Lease(lease_key=key, extra=extra)
        assert await store.create_lease(lease) is not None

    async def get_raw(key: str) -> Item | None:
        lease = await store.get_lease(key)
        return None if lease is None else lease_to_item(lease)

    return Backend("memory", store, put_raw, get_raw)


_AWS_CONFIGS: dict[str, AWSConfig] = {}


def aws_config(endpoint: LocalEndpoint) -> AWSConfig:
    """One config (so one botocore session and its loaded service models) per emulator."""
    if endpoint.endpoint_url not in _AWS_CONFIGS:
        _AWS_CONFIGS[endpoint.endpoint_url] = endpoint.aws_config()
    return _AWS_CONFIGS[endpoint.endpoint_url]


@dataclass
class DynamoHarness:
    """An emulator, a raw DynamoDB client on it, and the name of this test's table."""

    name: str
    endpoint: LocalEndpoint
    client: Any
    table: str

    def store(self, **kwargs: Any) -> DynamoDBLeaseStore:
        return DynamoDBLeaseStore(self.table, aws=aws_config(self.endpoint), **kwargs)

    async def put_raw(self, item: Item) -> None:
        await self.client.put_item(TableName=self.table, Item=item)

    async def get_raw(self, key: str) -> Item | None:
        resp = await self.client.get_item(
            TableName=self.table, Key={"leaseKey": {"S": key}}, ConsistentRead=True
        )
        item: Item | None = resp.get("Item")
        return item

    async def drop_table(self) -> None:
        with suppress(self.client.exceptions.ResourceNotFoundException):
            await self.client.delete_table(TableName=self.table)

    async def worker_metrics_table(self, *items: Item) -> str:
        """``<table>-WorkerMetricStats`` as KCL 3.1.3 creates it (hash key ``wid``, a string;
        on demand), holding ``items``; returns its name."""
        table = f"{self.table}-WorkerMetricStats"
        await self.client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "wid", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "wid", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        await self.client.get_waiter("table_exists").wait(TableName=table)
        for item in items:
            await self.client.put_item(TableName=table, Item=item)
        return table


@asynccontextmanager
async def dynamo_harness(request: pytest.FixtureRequest, name: str) -> AsyncIterator[DynamoHarness]:
    endpoint: LocalEndpoint = request.getfixturevalue(f"{name}_endpoint")
    async with AsyncExitStack() as stack:
        client = await create_client("dynamodb", aws_config(endpoint), stack)
        harness = DynamoHarness(name, endpoint, client, table_name())
        stack.push_async_callback(harness.drop_table)
        yield harness


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        backend = await memory_backend()
        await backend.store.create_table_if_missing()
        yield backend
        return
    async with dynamo_harness(request, request.param) as harness:
        store = harness.store()
        try:
            await store.create_table_if_missing()
            yield Backend(harness.name, store, harness.put_raw, harness.get_raw)
        finally:
            await store.aclose()


@pytest.fixture(params=[p for p in BACKENDS if p.id != "memory"])
async def dynamo(request: pytest.FixtureRequest) -> AsyncIterator[DynamoHarness]:
    """A DynamoDB emulator, a raw client, and a table name (no table created yet)."""
    async with dynamo_harness(request, request.param) as harness:
        yield harness


def kcl_item(key: str, **attrs: Item) -> Item:
    """A lease item as the Java KCL writes it, plus ``attrs``."""
    item: Item = {
        "leaseKey": {"S": key},
        "leaseCounter": {"N": "0"},
        "checkpoint": {"S": TRIM_HORIZON},
        "checkpointSubSequenceNumber": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
    }
    item.update(attrs)
    return item


SEQ = "49590338271490256608559692538361571095921575989136588898"
