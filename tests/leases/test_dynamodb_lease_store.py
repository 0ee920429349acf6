"""DynamoDBLeaseStore only: the exact item layout, Java KCL items, the table, bad items."""

from __future__ import annotations

import asyncio

import pytest

from kinesio import ConfigurationError, ResourceNotFoundError
from kinesio._models import SHARD_END, TRIM_HORIZON, ExtendedSequenceNumber, Lease
from kinesio.leases import DynamoDBLeaseStore, MalformedLeaseError

from ._lease_harness import SEQ, DynamoHarness, dynamo, kcl_item

__all__ = ["dynamo"]  # the fixture, parametrized over moto and dynalite

pytestmark = pytest.mark.timeout(60)

SEQ2 = "49590338271490256608559692538361571095921575989136588999"


async def test_table_is_created_as_the_kcl_creates_it(dynamo: DynamoHarness) -> None:
    async with dynamo.store() as store:
        await store.create_table_if_missing()  # a second time is a no-op
    table = (await dynamo.client.describe_table(TableName=dynamo.table))["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "leaseKey", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


async def test_exact_item_layout(dynamo: DynamoHarness) -> None:
    async with dynamo.store() as store:
        lease = await store.create_lease(
            Lease(
                "shardId-000000000002",
                lease_owner="worker-1",
                parent_shard_ids=frozenset({"shardId-000000000000", "shardId-000000000001"}),
                starting_hash_key=0,
                ending_hash_key=2**128 - 1,
            )
        )
        assert lease is not None
        raw = await dynamo.get_raw(lease.lease_key)
        assert raw is not None
        raw["parentShardId"]["SS"].sort()
        assert raw == {
            "leaseKey": {"S": "shardId-000000000002"},
            "leaseOwner": {"S": "worker-1"},
            "leaseCounter": {"N": "0"},
            "checkpoint": {"S": "TRIM_HORIZON"},
            "checkpointSubSequenceNumber": {"N": "0"},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
            "parentShardId": {"SS": ["shardId-000000000000", "shardId-000000000001"]},
            "startingHashKey": {"S": "0"},
            "endingHashKey": {"S": str(2**128 - 1)},
        }

        lease = await store.take(lease, "worker-2")
        assert lease is not None
        lease = await store.checkpoint(
            lease,
            "worker-2",
            ExtendedSequenceNumber(SHARD_END),
            child_shard_ids=["shardId-000000000004", "shardId-000000000003"],
            pending=ExtendedSequenceNumber(SEQ, 7),
        )
        assert lease is not None
        lease = await store.release(lease, "worker-2")
        assert lease is not None
        raw = await dynamo.get_raw(lease.lease_key)
        assert raw is not None
        for attr in ("parentShardId", "childShardIds"):
            raw[attr]["SS"].sort()
        assert raw == {
            "leaseKey": {"S": "shardId-000000000002"},
            "leaseCounter": {"N": "3"},
            "checkpoint": {"S": "SHARD_END"},
            "checkpointSubSequenceNumber": {"N": "0"},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
            "parentShardId": {"SS": ["shardId-000000000000", "shardId-000000000001"]},
            "childShardIds": {"SS": ["shardId-000000000003", "shardId-000000000004"]},
            "startingHashKey": {"S": "0"},
            "endingHashKey": {"S": str(2**128 - 1)},
            "pendingCheckpoint": {"S": SEQ},
            "pendingCheckpointSubSequenceNumber": {"N": "7"},
        }


async def test_minimal_item_has_no_optional_attributes(dynamo: DynamoHarness) -> None:
    async with dynamo.store() as store:
        assert await store.create_lease(Lease("shard-1")) is not None
        assert await dynamo.get_raw("shard-1") == kcl_item("shard-1")


async def test_reads_items_written_by_the_java_kcl(dynamo: DynamoHarness) -> None:
    async with dynamo.store() as store:
        # KCL 2.x, mid-stream, with a two-phase checkpoint whose state is binary.
        await dynamo.put_raw(
            {
                "leaseKey": {"S": "shardId-000000000005"},
                "leaseOwner": {"S": "ip-10-0-0-1:5f0c"},
                "leaseCounter": {"N": "1234"},
                "checkpoint": {"S": SEQ},
                "checkpointSubSequenceNumber": {"N": "3"},
                "ownerSwitchesSinceCheckpoint": {"N": "2"},
                "parentShardId": {"SS": ["shardId-000000000001"]},
                "pendingCheckpoint": {"S": SEQ2},
                "pendingCheckpointSubSequenceNumber": {"N": "0"},
                "pendingCheckpointState": {"B": b"\x00\x01state"},
                "startingHashKey": {"S": "0"},
                "endingHashKey": {"S": "170141183460469231731687303715884105727"},
            }
        )
        # The same with the state as a number, as some KCL versions wrote it.
        await dynamo.put_raw(
            kcl_item(
                "shardId-000000000006",
                pendingCheckpoint={"S": SEQ},
                pendingCheckpointState={"N": "1"},
            )
        )
        # KCL 3.x: extra attributes, tagged as a lease; a worker-metrics entity beside it.
        await dynamo.put_raw(
            kcl_item(
                "shardId-000000000007",
                leaseOwner={"S": "w"},
                checkpoint={"S": SHARD_END},
                childShardIds={"SS": ["shardId-000000000008", "shardId-000000000009"]},
                throughputKBps={"N": "1.5"},
                checkpointOwner={"S": "w"},
                entityType={"S": "LEASE"},
            )
        )
        await dynamo.put_raw({"leaseKey": {"S": "w"}, "entityType": {"S": "WORKER_METRICS"}})
        # An old, minimal item: no sub-sequence, no owner-switch count.
        await dynamo.put_raw(
            {
                "leaseKey": {"S": "shardId-000000000010"},
                "leaseCounter": {"N": "9"},
                "checkpoint": {"S": "LATEST"},
            }
        )

        leases = {lease.lease_key: lease for lease in await store.list_leases()}
        assert sorted(leases) == [
            "shardId-000000000005",
            "shardId-000000000006",
            "shardId-000000000007",
            "shardId-000000000010",
        ]
        five = leases["shardId-000000000005"]
        assert five == Lease(
            lease_key="shardId-000000000005",
            lease_owner="ip-10-0-0-1:5f0c",
            lease_counter=1234,
            checkpoint=ExtendedSequenceNumber(SEQ, 3),
            pending_checkpoint=ExtendedSequenceNumber(SEQ2),
            owner_switches_since_checkpoint=2,
            parent_shard_ids=frozenset({"shardId-000000000001"}),
            starting_hash_key=0,
            ending_hash_key=2**127 - 1,
        )
        assert five.extra == {"pendingCheckpointState": {"B": b"\x00\x01state"}}
        six = leases["shardId-000000000006"]
        assert six.pending_checkpoint == ExtendedSequenceNumber(SEQ)
        assert six.extra == {"pendingCheckpointState": {"N": "1"}}
        seven = leases["shardId-000000000007"]
        assert seven.checkpoint == ExtendedSequenceNumber(SHARD_END)
        assert seven.child_shard_ids == {"shardId-000000000008", "shardId-000000000009"}
        assert seven.extra == {
            "throughputKBps": {"N": "1.5"},
            "checkpointOwner": {"S": "w"},
            "entityType": {"S": "LEASE"},
        }
        ten = leases["shardId-000000000010"]
        assert ten == Lease(
            "shardId-000000000010", lease_counter=9, checkpoint=ExtendedSequenceNumber("LATEST")
        )
        # And the store can carry on with each of them.
        renewed = await store.renew(five)
        assert renewed is not None
        assert renewed.extra == five.extra
        taken = await store.take(ten, "w2")
        assert taken is not None
        assert taken.owner_switches_since_checkpoint == 0
        raw = await dynamo.get_raw("shardId-000000000010")
        assert raw is not None
        assert "ownerSwitchesSinceCheckpoint" not in raw  # only a switch would ADD it


async def test_missing_attribute_counted_from_zero_when_the_owner_switches(
    dynamo: DynamoHarness,
) -> None:
    async with dynamo.store() as store:
        await dynamo.put_raw(
            {
                "leaseKey": {"S": "shard-1"},
                "leaseOwner": {"S": "w1"},
                "leaseCounter": {"N": "1"},
                "checkpoint": {"S": TRIM_HORIZON},
            }
        )
        lease = await store.get_lease("shard-1")
        assert lease is not None
        taken = await store.take(lease, "w2")
        assert taken is not None
        assert taken.owner_switches_since_checkpoint == 1


@pytest.mark.parametrize(
    ("attribute", "value", "problem"),
    [
        ("leaseCounter", {"S": "3"}, "has type S, expected N"),
        ("leaseCounter", None, "is missing"),
        ("checkpoint", None, "is missing"),
        ("checkpoint", {"N": "5"}, "has type N, expected S"),
        ("checkpoint", {"S": "somewhere"}, "is not a checkpoint"),
        ("leaseOwner", {"N": "1"}, "has type N, expected S"),
        ("ownerSwitchesSinceCheckpoint", {"S": "x"}, "has type S, expected N"),
        ("parentShardId", {"S": "shardId-000000000001"}, "has type S, expected SS"),
        ("childShardIds", {"L": [{"S": "a"}]}, "has type L, expected SS"),
        ("startingHashKey", {"S": "-1"}, "is not a decimal 128-bit hash key"),
        ("endingHashKey", {"N": "5"}, "has type N, expected S"),
        ("checkpointSubSequenceNumber", {"N": "1.5"}, "is not an integer"),
        ("pendingCheckpoint", {"SS": ["1"]}, "has type SS, expected S"),
    ],
)
async def test_malformed_items_are_named_in_the_error(
    dynamo: DynamoHarness, attribute: str, value: dict[str, object] | None, problem: str
) -> None:
    item = kcl_item("shard-bad")
    if value is None:
        del item[attribute]
    else:
        item[attribute] = value
    async with dynamo.store() as store:
        await dynamo.put_raw(item)
        for read in (store.get_lease("shard-bad"), store.list_leases()):
            with pytest.raises(MalformedLeaseError) as info:
                await read
            assert (info.value.lease_key, info.value.attribute) == ("shard-bad", attribute)
            assert "'shard-bad'" in str(info.value)
            assert problem in str(info.value)


async def test_wrong_key_schema_is_a_configuration_error(dynamo: DynamoHarness) -> None:
    await dynamo.client.create_table(
        TableName=dynamo.table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    store = dynamo.store()
    with pytest.raises(ConfigurationError, match=r"not a lease table.*'leaseKey'"):
        async with store:
            pass


async def test_range_key_is_a_configuration_error(dynamo: DynamoHarness) -> None:
    await dynamo.client.create_table(
        TableName=dynamo.table,
        KeySchema=[
            {"AttributeName": "leaseKey", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "leaseKey", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigurationError, match="not a lease table"):
        async with dynamo.store():
            pass


async def test_missing_table_without_create_is_resource_not_found(dynamo: DynamoHarness) -> None:
    store = dynamo.store(create_if_missing=False)
    with pytest.raises(ResourceNotFoundError, match=rf"{dynamo.table}.*does not exist"):
        async with store:
            pass
    tables = (await dynamo.client.list_tables())["TableNames"]
    assert dynamo.table not in tables


async def test_existing_table_without_create_is_used(dynamo: DynamoHarness) -> None:
    async with dynamo.store() as store:
        assert await store.create_lease(Lease("shard-1")) is not None
    async with dynamo.store(create_if_missing=False) as store:
        assert [lease.lease_key for lease in await store.list_leases()] == ["shard-1"]


async def test_operations_on_a_deleted_table_raise(dynamo: DynamoHarness) -> None:
    async with dynamo.store() as store:
        lease = await store.create_lease(Lease("shard-1", lease_owner="w1"))
        assert lease is not None
        await dynamo.drop_table()
        await dynamo.client.get_waiter("table_not_exists").wait(
            TableName=dynamo.table, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
        )
        with pytest.raises(ResourceNotFoundError):
            await store.renew(lease)
        with pytest.raises(ResourceNotFoundError):
            await store.list_leases()


async def test_scan_pages_are_followed(dynamo: DynamoHarness) -> None:
    async with dynamo.store(scan_page_size=2) as store:
        for i in range(7):
            assert await store.create_lease(Lease(f"shard-{i}")) is not None
        await dynamo.put_raw({"leaseKey": {"S": "other"}, "entityType": {"S": "OTHER"}})
        keys = sorted(lease.lease_key for lease in await store.list_leases())
        assert keys == [f"shard-{i}" for i in range(7)]


async def test_concurrent_creators_share_one_table(dynamo: DynamoHarness) -> None:
    stores = [dynamo.store() for _ in range(3)]
    try:
        await asyncio.gather(*(s.create_table_if_missing() for s in stores))
        results = await asyncio.gather(*(s.create_lease(Lease("shard-1")) for s in stores))
        assert sum(r is not None for r in results) == 1
    finally:
        for s in stores:
            await s.aclose()


def test_invalid_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="table name"):
        DynamoDBLeaseStore("x")
    with pytest.raises(ConfigurationError, match="max_attempts"):
        DynamoDBLeaseStore("leases", max_attempts=0)
    with pytest.raises(ConfigurationError, match="scan_page_size"):
        DynamoDBLeaseStore("leases", scan_page_size=0)
