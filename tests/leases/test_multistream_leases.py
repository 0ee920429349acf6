"""Multi-stream lease keys and attributes, as the Java KCL's multi-stream mode lays them out
(StreamIdentifier.serialize, MultiStreamLease, DynamoDBMultiStreamLeaseSerializer), and their
survival through every write of every lease store."""

from __future__ import annotations

import pytest

from kinesio._errors import ConfigurationError, MalformedLeaseError
from kinesio._models import ExtendedSequenceNumber, Lease
from kinesio.leases._items import lease_from_item, lease_to_item
from kinesio.leases._multistream import (
    SHARD_ID,
    STREAM_ID,
    StreamIdentifier,
    is_multi_stream_key,
    lease_stream,
    new_multi_stream_lease,
    split_lease_key,
)

from ._lease_harness import SEQ, Backend, backend

__all__ = ["backend"]

pytestmark = pytest.mark.timeout(60)

ORDERS = StreamIdentifier("123456789012", "orders", 1700000000)


def test_lease_key_is_the_kcl_multi_stream_format() -> None:
    assert ORDERS.serialize() == "123456789012:orders:1700000000"
    key = ORDERS.lease_key("shardId-000000000003")
    assert key == "123456789012:orders:1700000000:shardId-000000000003"
    assert is_multi_stream_key(key)
    assert not is_multi_stream_key("shardId-000000000003")
    assert split_lease_key(key) == (ORDERS, "shardId-000000000003")
    assert StreamIdentifier.parse(ORDERS.serialize()) == ORDERS


@pytest.mark.parametrize(
    "text",
    ["orders", "12:orders", "12:orders:x", "ab:orders:1", "12::1", "12:a:b:1", "12:orders:-1"],
)
def test_unparsable_stream_identifier_is_a_configuration_error(text: str) -> None:
    with pytest.raises(ConfigurationError):
        StreamIdentifier.parse(text)


@pytest.mark.parametrize(
    ("account", "name", "epoch"),
    [("12a", "orders", 1), ("12", "or:ders", 1), ("12", "", 1), ("12", "orders", -1)],
)
def test_invalid_stream_identifier_fields_are_refused(account: str, name: str, epoch: int) -> None:
    with pytest.raises(ConfigurationError):
        StreamIdentifier(account, name, epoch)


@pytest.mark.parametrize("shard_id", ["", "a:b"])
def test_invalid_shard_id_is_refused(shard_id: str) -> None:
    with pytest.raises(ConfigurationError):
        ORDERS.lease_key(shard_id)


@pytest.mark.parametrize(
    "key", ["shardId-1", "123:orders:17:", "x:orders:17:shardId-1", "123:orders:shardId-1"]
)
def test_key_not_in_multi_stream_format_is_malformed(key: str) -> None:
    with pytest.raises(MalformedLeaseError) as info:
        split_lease_key(key)
    assert info.value.lease_key == key
    assert info.value.attribute == "leaseKey"


def test_item_carries_the_serializers_stream_and_shard_attributes() -> None:
    base = Lease(lease_key="shardId-000000000001", parent_shard_ids=frozenset({"shardId-0"}))
    lease = new_multi_stream_lease(ORDERS, base)
    item = lease_to_item(lease)
    assert item["leaseKey"] == {"S": "123456789012:orders:1700000000:shardId-000000000001"}
    assert item[STREAM_ID] == {"S": "123456789012:orders:1700000000"}
    assert item[SHARD_ID] == {"S": "shardId-000000000001"}
    # Parents stay bare shard ids, as the KCL's MultiStreamLease keeps them.
    assert item["parentShardId"] == {"SS": ["shardId-0"]}
    back = lease_from_item(item)
    assert back == lease
    assert lease_stream(back) == (ORDERS, "shardId-000000000001")


def test_attributes_that_disagree_with_the_key_are_malformed() -> None:
    lease = new_multi_stream_lease(ORDERS, Lease(lease_key="shardId-1"))
    lease.extra[SHARD_ID] = {"S": "shardId-2"}
    with pytest.raises(MalformedLeaseError) as info:
        lease_stream(lease)
    assert info.value.attribute == STREAM_ID
    del lease.extra[STREAM_ID]
    with pytest.raises(MalformedLeaseError, match="no string attribute 'streamName'"):
        lease_stream(lease)


async def test_stream_attributes_survive_every_write(backend: Backend) -> None:
    store = backend.store
    lease = new_multi_stream_lease(ORDERS, Lease(lease_key="shardId-000000000001"))
    created = await store.create_lease(lease)
    assert created is not None
    taken = await store.take(created, "worker-a")
    assert taken is not None
    renewed = await store.renew(taken)
    assert renewed is not None
    done = await store.checkpoint(renewed, "worker-a", ExtendedSequenceNumber(SEQ, 0))
    assert done is not None
    released = await store.release(done, "worker-a")
    assert released is not None
    for read in (released, await store.get_lease(lease.lease_key)):
        assert read is not None
        assert read.checkpoint == ExtendedSequenceNumber(SEQ, 0)
        assert lease_stream(read) == (ORDERS, "shardId-000000000001")
    assert [x.lease_key for x in await store.list_leases()] == [lease.lease_key]
