"""Two-phase checkpoints (the KCL's prepareCheckpoint): a pending checkpoint is durable, fenced,
seen by the next owner at initialisation, and made the checkpoint by commit()."""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import boto3
import pytest

from _consumers import quick_settings
from kinesio import AsyncConsumer, AsyncProducer, ProducerSettings
from kinesio._errors import LeaseLost, ValidationError
from kinesio._models import ExtendedSequenceNumber, Record
from kinesio.consumer import (
    Checkpointer,
    InitializationInput,
    LeaseLostInput,
    ProcessRecordsInput,
    ShardEndedInput,
    ShutdownRequestedInput,
)
from kinesio.leases import DynamoDBLeaseStore, LeaseStore, MemoryLeaseStore
from kinesio.local import LocalEndpoint
from kinesio.testing import InMemoryKinesis

STREAM = "events"


async def one_shard(records: int) -> InMemoryKinesis:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 1)
    settings = ProducerSettings(linger=0.005, aggregate=False)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings) as producer:
        for i in range(records):
            await producer.put(str(i).encode(), partition_key=f"k{i % 3}")
    return kinesis


class Preparer:
    """Checkpoints record 9, then prepares at record 19 and - with ``commit`` - commits it."""

    commit = False
    inits: ClassVar[list[InitializationInput]] = []
    seen: ClassVar[list[int]] = []
    done: ClassVar[asyncio.Event] = asyncio.Event()

    def initialize(self, input: InitializationInput) -> None:
        type(self).inits.append(input)

    async def process_records(self, input: ProcessRecordsInput[Checkpointer]) -> None:
        for record in input.records:
            n = int(record.data)
            type(self).seen.append(n)
            if n == 9:
                await input.checkpointer.checkpoint(record)
            if n == 19:
                prepared = await input.checkpointer.prepare_checkpoint(record)
                assert input.checkpointer.pending_checkpoint == record.position
                if type(self).commit:
                    await prepared.commit()
                type(self).done.set()

    def lease_lost(self, input: LeaseLostInput) -> None:
        pass

    def shard_ended(self, input: ShardEndedInput[Checkpointer]) -> None:
        pass

    def shutdown_requested(self, input: ShutdownRequestedInput[Checkpointer]) -> None:
        pass


async def run_once(kinesis: InMemoryKinesis, store: LeaseStore, *, commit: bool) -> None:
    Preparer.commit = commit
    Preparer.done = asyncio.Event()
    consumer = AsyncConsumer(
        STREAM,
        application_name="two-phase",
        settings=quick_settings(),
        kinesis=kinesis,
        lease_store=store,
    )
    async with consumer:
        task = asyncio.create_task(consumer.run(Preparer))
        await asyncio.wait_for(Preparer.done.wait(), 20)
        consumer.request_shutdown()
        await task


async def test_the_next_owner_sees_the_pending_checkpoint_and_resumes_after_the_checkpoint() -> (
    None
):
    kinesis = await one_shard(30)
    store = MemoryLeaseStore()
    Preparer.inits, Preparer.seen = [], []
    await run_once(kinesis, store, commit=False)
    lease = (await store.list_leases())[0]
    stored = kinesis.records(STREAM, lease.lease_key)
    assert lease.checkpoint.sequence_number == stored[9].sequence_number
    assert lease.pending_checkpoint == ExtendedSequenceNumber(stored[19].sequence_number)
    # the next owner: initialize() gets both, and records start after the checkpoint (10)
    Preparer.seen = []
    await run_once(kinesis, store, commit=True)
    second = Preparer.inits[-1]
    assert second.extended_sequence_number.sequence_number == stored[9].sequence_number
    assert second.pending_checkpoint == ExtendedSequenceNumber(stored[19].sequence_number)
    assert Preparer.seen[0] == 10
    # committed: the pending checkpoint became the checkpoint and is gone
    lease = (await store.list_leases())[0]
    assert lease.checkpoint.sequence_number == stored[19].sequence_number
    assert lease.pending_checkpoint is None


async def test_prepare_is_fenced_and_validated() -> None:
    kinesis = await one_shard(10)
    store = MemoryLeaseStore()
    consumer = AsyncConsumer(
        STREAM,
        application_name="fenced",
        settings=quick_settings(),
        kinesis=kinesis,
        lease_store=store,
    )
    await consumer.start()
    streams = consumer.shards()
    shard = await anext(streams)
    batches = shard.records()
    batch = await anext(batches)
    cp = shard.checkpointer
    with pytest.raises(ValidationError, match="nothing to prepare"):
        await cp.prepare_checkpoint()
    other = Record(
        data=b"", partition_key="k", sequence_number="1", shard_id="shardId-000000000009"
    )
    with pytest.raises(ValidationError):
        await cp.prepare_checkpoint(other)
    prepared = await cp.prepare_checkpoint(batch[3])
    await cp.checkpoint(batch[5])  # a plain checkpoint moves past it and clears it
    assert (await store.list_leases())[0].pending_checkpoint is None
    with pytest.raises(ValidationError, match="before the current checkpoint"):
        await prepared.commit()
    # another worker takes the lease: prepare is refused and writes nothing
    lease = (await store.list_leases())[0]
    taken = await store.take(lease, "thief")
    assert taken is not None
    with pytest.raises(LeaseLost):
        await cp.prepare_checkpoint(batch[7])
    after = (await store.list_leases())[0]
    assert after.pending_checkpoint is None
    assert after.lease_owner == "thief"
    await batches.aclose()
    await streams.aclose()
    await consumer.aclose()


@pytest.mark.integration
async def test_the_pending_checkpoint_is_the_kcls_attributes_in_dynamodb(
    moto_endpoint: LocalEndpoint,
) -> None:
    kinesis = await one_shard(30)
    table = f"two-phase-{time.monotonic_ns()}"
    async with DynamoDBLeaseStore(table, aws=moto_endpoint.aws_config()) as store:
        Preparer.inits, Preparer.seen = [], []
        await run_once(kinesis, store, commit=False)
        ddb: Any = boto3.client("dynamodb", endpoint_url=moto_endpoint.endpoint_url)
        item = ddb.scan(TableName=table, ConsistentRead=True)["Items"][0]
        stored = kinesis.records(STREAM, item["leaseKey"]["S"])
        assert item["pendingCheckpoint"] == {"S": stored[19].sequence_number}
        assert item["pendingCheckpointSubSequenceNumber"] == {"N": "0"}
        assert item["checkpoint"] == {"S": stored[9].sequence_number}
        await run_once(kinesis, store, commit=True)
        item = ddb.scan(TableName=table, ConsistentRead=True)["Items"][0]
        assert "pendingCheckpoint" not in item
        assert "pendingCheckpointSubSequenceNumber" not in item
        assert item["checkpoint"] == {"S": stored[19].sequence_number}
        ddb.delete_table(TableName=table)
