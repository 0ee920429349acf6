"""One application, one stream, Java KCL and kinesio workers side by side: the parts every
interop scenario uses (the suite's short ones and ``benchmarks/interop_kcl.py``'s long ones).

Records are put with plain boto3 onto chosen shards (by explicit hash key), some as KPL
aggregates so that checkpoints carry sub-sequence numbers; each shard's user records are
known in order. The lease table is read raw (KCL attribute names) with boto3.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from interop._kcl import Endpoints, Handled, JavaWorker, ensure_kcl, read_handled
from kinesio import (
    AsyncConsumer,
    ConsumerSettings,
    DynamoDBLeaseStore,
    InitialPosition,
    Polling,
    ProducerRecord,
    Record,
    aggregation,
)
from kinesio._aws import AioKinesis, AWSConfig
from kinesio._models import Lease

#: The KCL 3 index on ``leaseOwner`` (KCL 3 adds it with UpdateTable, which dynalite refuses
#: on a pay-per-request table: the table is created with it).
OWNER_INDEX = "LeaseOwnerToLeaseKeyIndex"


@dataclass(frozen=True)
class Mode:
    """A Java side: the KCL version and the properties that select its mode."""

    name: str
    version: str
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def kcl3(self) -> bool:
        return self.version.startswith("3.")


KCL2 = Mode("kcl-2.5.8", "2.5.8")
KCL3_COMPAT = Mode(
    "kcl-3.1.3-compat", "3.1.3", {"clientVersionConfig": "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X"}
)
KCL3 = Mode("kcl-3.1.3", "3.1.3")
MODES = (KCL2, KCL3_COMPAT, KCL3)


@dataclass(frozen=True)
class Put:
    """A user record put in the stream, at its position."""

    shard: str
    seq: str
    sub: int
    data: str


def kinesio_settings(worker_id: str, failover: float = 4.0) -> ConsumerSettings:
    """A kinesio worker on the Java workers' failover time (4 s), taking every 2 s."""
    return ConsumerSettings(
        worker_id=worker_id,
        failover_time=failover,
        take_interval=2.0,
        shard_sync_interval=5.0,
        initial_position=InitialPosition.TRIM_HORIZON,
        retrieval=Polling(idle_time=0.25, catch_up_interval=0.05),
        shutdown_timeout=10.0,
        create_lease_table=False,
    )


class Mixed:
    """A stream on kinesis-mock and a lease table on dynalite shared by Java and kinesio."""

    def __init__(self, mode: Mode, endpoints: Endpoints, workdir: Path, name: str) -> None:
        self.mode = mode
        self.endpoints = endpoints
        self.workdir = workdir
        self.stream = f"{name}-stream"
        self.app = f"{name}-app"
        self.kinesis: Any = boto3.client(
            "kinesis", endpoint_url=endpoints.kinesis, region_name=endpoints.region
        )
        self.dynamodb: Any = boto3.client(
            "dynamodb", endpoint_url=endpoints.dynamodb, region_name=endpoints.region
        )
        self.java: dict[str, JavaWorker] = {}
        self.consumers: dict[str, AsyncConsumer] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.kinesio_handled: list[Handled] = []
        self.puts: list[Put] = []
        self._closeables: list[AioKinesis | DynamoDBLeaseStore] = []

    # -- set-up --------------------------------------------------------------------------

    def aws(self, endpoint: str) -> AWSConfig:
        from kinesio.local import LocalEndpoint

        return LocalEndpoint(endpoint_url=endpoint, region_name=self.endpoints.region).aws_config()

    async def create(self, shards: int) -> None:
        """The stream, the lease table (with KCL 3's index) and a lease per shard, all
        written by kinesio: the Java workers start from kinesio's leases."""
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=shards)
        self.kinesis.get_waiter("stream_exists").wait(
            StreamName=self.stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
        self.create_table()
        async with DynamoDBLeaseStore(
            self.app, aws=self.aws(self.endpoints.dynamodb), create_if_missing=False
        ) as store:
            for shard in self.shards():
                created = await store.create_lease(
                    Lease(
                        lease_key=shard["ShardId"],
                        starting_hash_key=int(shard["HashKeyRange"]["StartingHashKey"]),
                        ending_hash_key=int(shard["HashKeyRange"]["EndingHashKey"]),
                    )
                )
                assert created is not None

    def create_table(self) -> None:
        attributes = [{"AttributeName": "leaseKey", "AttributeType": "S"}]
        extra: dict[str, Any] = {}
        if self.mode.kcl3:
            attributes.append({"AttributeName": "leaseOwner", "AttributeType": "S"})
            extra["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": OWNER_INDEX,
                    "KeySchema": [
                        {"AttributeName": "leaseOwner", "KeyType": "HASH"},
                        {"AttributeName": "leaseKey", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ]
        self.dynamodb.create_table(
            TableName=self.app,
            KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            AttributeDefinitions=attributes,
            BillingMode="PAY_PER_REQUEST",
            **extra,
        )
        self.dynamodb.get_waiter("table_exists").wait(
            TableName=self.app, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )

    def shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = self.kinesis.list_shards(StreamName=self.stream)["Shards"]
        return sorted(shards, key=lambda s: str(s["ShardId"]))

    # -- records -------------------------------------------------------------------------

    def put_batch(self, tag: str, *, plain: int = 3, aggregates: int = 2) -> list[Put]:
        """On every open shard: ``plain`` records, then ``aggregates`` KPL aggregates of 3
        user records each (so the last checkpoint of the batch has sub-sequence 2)."""
        batch: list[Put] = []
        for index, shard in enumerate(self.shards()):
            if "EndingSequenceNumber" in shard["SequenceNumberRange"]:
                continue
            shard_id = shard["ShardId"]
            key = int(shard["HashKeyRange"]["StartingHashKey"])
            n = 0
            for _ in range(plain):
                data = f"{tag}:{index}:{n}"
                seq = self._put(data.encode(), key)
                batch.append(Put(shard_id, seq, 0, data))
                n += 1
            for _ in range(aggregates):
                datas = [f"{tag}:{index}:{n + i}" for i in range(3)]
                blob = aggregation.encode(
                    [
                        ProducerRecord(d.encode(), f"pk-{index}", explicit_hash_key=key)
                        for d in datas
                    ]
                )
                seq = self._put(blob, key)
                batch += [Put(shard_id, seq, i, d) for i, d in enumerate(datas)]
                n += 3
        self.puts += batch
        return batch

    def _put(self, data: bytes, hash_key: int) -> str:
        resp = self.kinesis.put_record(
            StreamName=self.stream, Data=data, PartitionKey="p", ExplicitHashKey=str(hash_key)
        )
        return str(resp["SequenceNumber"])

    def last_positions(self, batch: list[Put]) -> dict[str, tuple[str, int]]:
        last: dict[str, tuple[str, int]] = {}
        for put in batch:
            last[put.shard] = (put.seq, put.sub)
        return last

    # -- the lease table -------------------------------------------------------------------

    def items(self) -> dict[str, dict[str, Any]]:
        items = self.dynamodb.scan(TableName=self.app, ConsistentRead=True)["Items"]
        return {
            i["leaseKey"]["S"]: i
            for i in items
            if i.get("entityType", {}).get("S", "LEASE") == "LEASE"
        }

    def owners(self) -> dict[str, str | None]:
        return {k: i.get("leaseOwner", {}).get("S") for k, i in self.items().items()}

    def checkpoints(self) -> dict[str, tuple[str, int]]:
        return {
            k: (i["checkpoint"]["S"], int(i.get("checkpointSubSequenceNumber", {"N": "0"})["N"]))
            for k, i in self.items().items()
        }

    async def until_checkpointed(self, batch: list[Put], timeout: float) -> None:
        """Until every shard of ``batch`` is checkpointed at its last record."""
        want = self.last_positions(batch)
        await wait_for(
            f"checkpoints at {want}",
            lambda: all(self.checkpoints().get(k) == v for k, v in want.items()),
            timeout,
            self.diagnose,
        )

    # -- workers -------------------------------------------------------------------------

    def start_java(self, worker_id: str, **properties: str) -> JavaWorker:
        worker = JavaWorker(
            ensure_kcl(self.mode.version),
            worker_id,
            self.stream,
            self.app,
            self.endpoints,
            self.workdir,
            properties={**self.mode.properties, **properties},
        )
        self.java[worker_id] = worker
        worker.start()
        return worker

    async def start_kinesio(self, worker_id: str, failover: float = 4.0) -> AsyncConsumer:
        kinesis = await AioKinesis.create(self.aws(self.endpoints.kinesis))
        store = DynamoDBLeaseStore(
            self.app, aws=self.aws(self.endpoints.dynamodb), create_if_missing=False
        )
        self._closeables += [kinesis, store]
        consumer = AsyncConsumer(
            self.stream,
            application_name=self.app,
            settings=kinesio_settings(worker_id, failover),
            kinesis=kinesis,
            lease_store=store,
        )
        await consumer.start()
        self.consumers[worker_id] = consumer

        def handle(record: Record) -> None:
            self.kinesio_handled.append(
                Handled(
                    worker_id,
                    record.shard_id,
                    record.sequence_number,
                    record.sub_sequence_number,
                    record.data.decode(),
                )
            )

        self.tasks[worker_id] = asyncio.create_task(
            consumer.consume_with(handle, checkpoint_every=1, checkpoint_interval=0.2),
            name=f"kinesio-{worker_id}",
        )
        return consumer

    async def stop_kinesio(self, worker_id: str) -> None:
        """Graceful: final checkpoints, leases released; the worker's failure is raised."""
        await self.consumers.pop(worker_id).aclose()
        await self.tasks.pop(worker_id)

    def handled(self) -> list[Handled]:
        return self.kinesio_handled + read_handled(self.workdir / "records")

    def diagnose(self) -> str:
        lines = [f"lease table: {self.items()}"]
        for worker in self.java.values():
            lines.append(f"--- {worker.worker_id} (alive={worker.alive()}) ---\n{worker.tail()}")
        return "\n".join(lines)

    async def aclose(self) -> None:
        for worker in self.java.values():
            worker.kill()
        # A consumer first, then its consume_with task: cancelling consume_with alone leaves
        # its shard tasks running, and waiting for it would never end.
        await asyncio.gather(*(c.aclose() for c in self.consumers.values()), return_exceptions=True)
        if self.tasks:
            _, late = await asyncio.wait(self.tasks.values(), timeout=30)
            for task in late:
                task.cancel()
        for closeable in self._closeables:
            await closeable.aclose()


async def wait_for(
    what: str,
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    diagnose: Callable[[], str] | None = None,
    interval: float = 0.5,
) -> float:
    """Poll ``check`` until true; returns the seconds waited, or AssertionError naming
    ``what`` (with ``diagnose()``: the table and the Java workers' last log lines)."""
    start = time.monotonic()
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            detail = f"\n{diagnose()}" if diagnose is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        await asyncio.sleep(interval)


def by_worker_shard(handled: list[Handled]) -> dict[tuple[str, str], list[Handled]]:
    out: dict[tuple[str, str], list[Handled]] = defaultdict(list)
    for h in handled:
        out[(h.worker, h.shard)].append(h)
    return out


def in_stream_order(rows: list[Handled]) -> bool:
    keys = [(int(h.seq), h.sub) for h in rows]
    return keys == sorted(keys) and len(set(keys)) == len(keys)
