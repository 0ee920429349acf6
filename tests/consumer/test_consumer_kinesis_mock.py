"""The whole consumer on the high-fidelity emulators: kinesis-mock for Kinesis (ChildShards at
shard end, SubscribeToShard) and dynalite for the DynamoDB lease table.

Records are written with the producer (ordered, aggregated) while the stream is resharded, and
read by AsyncConsumer workers that share a lease table; what the workers handled and what the
table holds (read raw with boto3, KCL attribute names) is checked afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import Any

import boto3
import pytest

from kinesio import (
    AsyncConsumer,
    AsyncProducer,
    ConsumerSettings,
    DynamoDBLeaseStore,
    FanOut,
    InitialPosition,
    Polling,
    ProducerSettings,
    PutResult,
    Record,
    Shard,
)
from kinesio._aws import AioKinesis, AWSConfig
from kinesio._models import SHARD_END, ExtendedSequenceNumber, Lease
from kinesio.consumer import _fetcher
from kinesio.local import LocalEndpoint
from kinesio.testing.chaos import read_worker_log

pytestmark = pytest.mark.integration

WORKER = ["-m", "kinesio.cli._worker"]  # the playground's and the chaos harness's worker
KEYS = 40  # partition keys key-0 .. key-39: their MD5s land in every quarter of the hash space
_counter = itertools.count()


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A failing test shows the consumer's, the lease loop's and the producer's DEBUG log."""
    caplog.set_level(logging.DEBUG, logger="kinesio")


def fast(**overrides: Any) -> ConsumerSettings:
    values: dict[str, Any] = {
        "failover_time": 1.5,
        "renew_interval": 0.3,
        "take_interval": 0.3,
        "shard_sync_interval": 1.0,
        "initial_position": InitialPosition.TRIM_HORIZON,
        "retrieval": Polling(idle_time=0.05, catch_up_interval=0.0),
        "shutdown_timeout": 5.0,
    }
    values.update(overrides)
    return ConsumerSettings(**values)


class RecordingStore(DynamoDBLeaseStore):
    """The DynamoDB lease store, noting when each SHARD_END checkpoint was written (the time
    the write was sent: nobody can have seen it before) and the raw item just after it."""

    def __init__(
        self, table_name: str, *, aws: AWSConfig, env: Env, create_if_missing: bool = True
    ) -> None:
        super().__init__(table_name, aws=aws, create_if_missing=create_if_missing)
        self._env = env

    async def checkpoint(
        self,
        lease: Lease,
        owner: str,
        checkpoint: ExtendedSequenceNumber,
        *,
        child_shard_ids: Collection[str] | None = None,
        pending: ExtendedSequenceNumber | None = None,
    ) -> Lease | None:
        sent = time.monotonic()
        written = await super().checkpoint(
            lease, owner, checkpoint, child_shard_ids=child_shard_ids, pending=pending
        )
        if written is not None and checkpoint.sequence_number == SHARD_END:
            self._env.shard_end_at.setdefault(lease.lease_key, sent)
            item = await asyncio.to_thread(self._env.raw_item, lease.lease_key)
            self._env.item_at_shard_end.setdefault(lease.lease_key, item)
        return written


class Env:
    """One fresh stream on kinesis-mock and one fresh lease table on dynalite, the workers
    reading them, and what those workers handled."""

    def __init__(self, kinesis_endpoint: LocalEndpoint, dynamo_endpoint: LocalEndpoint) -> None:
        n = next(_counter)
        # Not "consumer-...": kinesis-mock reads the stream name of a consumer ARN whose stream
        # name starts with "consumer" as undefined, and SubscribeToShard then fails with
        # ResourceNotFound (its ARN parsing; the real service has no such restriction).
        self.stream = f"reshard-km-{os.getpid()}-{n}"
        self.table = f"leases-km-{os.getpid()}-{n}"
        self.kinesis_endpoint = kinesis_endpoint
        self.dynamo_endpoint = dynamo_endpoint
        self.kinesis_boto: Any = boto3.client(
            "kinesis",
            endpoint_url=kinesis_endpoint.endpoint_url,
            region_name=kinesis_endpoint.region_name,
        )
        self.dynamodb_boto: Any = boto3.client(
            "dynamodb",
            endpoint_url=dynamo_endpoint.endpoint_url,
            region_name=dynamo_endpoint.region_name,
        )
        self.admin: AioKinesis | None = None
        self.feeds: list[Feed] = []
        # seconds each worker's handler takes per record of these shards
        self.slow: dict[str, float] = {}
        self.consumers: list[AsyncConsumer] = []
        self.tasks: list[asyncio.Task[None]] = []
        self._closeables: list[AioKinesis | DynamoDBLeaseStore] = []
        # what the workers did
        self.handled: list[tuple[str, Record, float]] = []
        self.shard_end_at: dict[str, float] = {}
        self.item_at_shard_end: dict[str, dict[str, Any] | None] = {}

    # -- the stream --------------------------------------------------------------------------

    async def create_stream(self, shards: int) -> None:
        self.admin = await AioKinesis.create(self.kinesis_endpoint.aws_config())
        await self.admin.create_stream(self.stream, shards)
        await self.admin.wait_for_active(self.stream)

    async def shards(self) -> list[Shard]:
        assert self.admin is not None
        return sorted(await self.admin.list_shards(self.stream), key=lambda s: s.shard_id)

    async def open_shards(self) -> list[Shard]:
        return sorted(
            (s for s in await self.shards() if s.is_open), key=lambda s: s.starting_hash_key
        )

    async def split(self, shard: Shard) -> None:
        assert self.admin is not None
        middle = (shard.starting_hash_key + shard.ending_hash_key) // 2 + 1
        await self.admin.split_shard(self.stream, shard.shard_id, middle)
        await self.admin.wait_for_active(self.stream)

    async def merge(self, lower: Shard, upper: Shard) -> None:
        assert self.admin is not None
        assert lower.ending_hash_key + 1 == upper.starting_hash_key
        await self.admin.merge_shards(self.stream, lower.shard_id, upper.shard_id)
        await self.admin.wait_for_active(self.stream)

    # -- workers -------------------------------------------------------------------------------

    async def start_worker(
        self, name: str, settings: ConsumerSettings | None = None
    ) -> AsyncConsumer:
        kinesis = await AioKinesis.create(self.kinesis_endpoint.aws_config())
        store = RecordingStore(self.table, aws=self.dynamo_endpoint.aws_config(), env=self)
        self._closeables += [kinesis, store]
        consumer = AsyncConsumer(
            self.stream,
            application_name=self.table,
            settings=settings or fast(),
            kinesis=kinesis,
            lease_store=store,
        )
        self.consumers.append(consumer)
        await consumer.start()

        async def handle(record: Record) -> None:
            self.handled.append((name, record, time.monotonic()))
            delay = self.slow.get(record.shard_id)
            if delay:
                await asyncio.sleep(delay)

        self.tasks.append(
            asyncio.create_task(
                consumer.consume_with(handle, checkpoint_every=10, checkpoint_interval=0.5),
                name=f"worker-{name}",
            )
        )
        return consumer

    async def stop_workers(self) -> None:
        """Graceful shutdown of every worker; a worker's failure is raised here."""
        await asyncio.gather(*(c.aclose() for c in self.consumers))
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            await task

    async def feed(self) -> Feed:
        """A producer putting records from now on (see :class:`Feed`)."""
        feed = Feed(self.kinesis_endpoint, self.stream)
        self.feeds.append(feed)
        await feed.start()
        return feed

    async def aclose(self) -> None:
        for feed in self.feeds:
            await feed.abort()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(c.aclose() for c in self.consumers), return_exceptions=True)
        for closeable in self._closeables:
            await closeable.aclose()
        if self.admin is not None:
            try:
                await self.admin.delete_stream(self.stream)
            finally:
                await self.admin.aclose()

    # -- what happened -------------------------------------------------------------------------

    def numbers(self) -> set[int]:
        return {number(r) for _, r, _ in self.handled}

    def first_delivery(self) -> dict[str, float]:
        first: dict[str, float] = {}
        for _, r, at in self.handled:
            first.setdefault(r.shard_id, at)
        return first

    def raw_item(self, lease_key: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.dynamodb_boto.get_item(
            TableName=self.table, Key={"leaseKey": {"S": lease_key}}, ConsistentRead=True
        ).get("Item")
        return item

    def raw_items(self) -> dict[str, dict[str, Any]]:
        items = self.dynamodb_boto.scan(TableName=self.table, ConsistentRead=True)["Items"]
        return {item["leaseKey"]["S"]: item for item in items}


@pytest.fixture
async def env(
    kinesis_mock_endpoint: LocalEndpoint, dynalite_endpoint: LocalEndpoint
) -> AsyncIterator[Env]:
    e = Env(kinesis_mock_endpoint, dynalite_endpoint)
    try:
        yield e
    finally:
        await e.aclose()


def number(record: Record) -> int:
    return int(record.data.split(b":")[1])


def assert_per_key_order(handled: list[tuple[str, Record, float]]) -> None:
    """Per partition key, records were handled in put order (a record handled again after a
    lease moved counts at its first handling)."""
    per_key: dict[str, list[int]] = defaultdict(list)
    for _, r, _ in handled:
        per_key[r.partition_key].append(number(r))
    assert len(per_key) == KEYS
    for key, numbers in per_key.items():
        first_seen = list(dict.fromkeys(numbers))
        assert first_seen == sorted(first_seen), key


class Feed:
    """Puts ``k:n`` under partition key ``key-k`` (k = n mod KEYS), n = 0, 1, 2 ... at about
    ``rate`` records per second, from a background task, until stopped."""

    def __init__(self, endpoint: LocalEndpoint, stream: str, rate: float = 400.0) -> None:
        self.producer = AsyncProducer(
            stream,
            aws=endpoint.aws_config(),
            # ordered: per-key order must hold from put() to the handler, across the reshards
            settings=ProducerSettings(ordered=True, aggregate=True, linger=0.02),
        )
        self.rate = rate
        self.sent = 0
        self.futures: list[asyncio.Future[PutResult]] = []
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        await self.producer.start()
        self._task = asyncio.create_task(self._run(), name="feed")

    async def _run(self) -> None:
        burst = 10
        while not self._stop.is_set():
            for _ in range(burst):
                n = self.sent
                data = f"{n % KEYS}:{n}".encode()
                self.futures.append(await self.producer.put(data, f"key-{n % KEYS}"))
                self.sent += 1
            await asyncio.sleep(burst / self.rate)

    async def wait_sent(self, count: int, timeout: float = 20.0) -> None:
        """Until ``count`` more records than now have been put."""
        target = self.sent + count
        await wait_for(lambda: self.sent >= target, timeout)

    async def abort(self) -> None:
        """Stop at once (a test failed): close the producer, ignore what it could not send."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.producer.aclose(timeout=0)
        await asyncio.gather(*self.futures, return_exceptions=True)

    async def stop(self) -> int:
        """Stop putting, wait until every record is in the stream; how many were put."""
        self._stop.set()
        assert self._task is not None
        await self._task
        await self.producer.flush()
        await self.producer.aclose()
        for future in self.futures:
            future.result()  # raises a record's failure
        return self.sent


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str = "") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def assert_parents_ended_first(env: Env, parents: dict[str, set[str]]) -> None:
    """Each child's first record was handled after every parent's SHARD_END was written."""
    first = env.first_delivery()
    for child, its_parents in parents.items():
        assert child in first, f"{child} delivered nothing"
        for parent in its_parents:
            assert parent in env.shard_end_at, f"{parent} never checkpointed SHARD_END"
            assert env.shard_end_at[parent] < first[child], (child, parent)


# -- 1. two workers through a split and a merge --------------------------------------------


async def test_two_workers_follow_a_split_then_a_merge(env: Env) -> None:
    await env.create_stream(2)
    s0, s1 = await env.open_shards()
    # s1 is read slowly, so that it is still being read when the merge child's lease appears
    # (at the end of the other parent): the child must wait for it.
    env.slow[s1.shard_id] = 0.01
    a = await env.start_worker("a")
    b = await env.start_worker("b")
    await wait_for(
        lambda: len(a._coordinator.held) == 1 and len(b._coordinator.held) == 1,
        10,
        "each worker to take one shard",
    )
    feed = await env.feed()

    await feed.wait_sent(300)
    await env.split(s0)
    low, middle, high = await env.open_shards()  # s0's halves, then s1
    assert high.shard_id == s1.shard_id
    await feed.wait_sent(300)
    await env.merge(middle, high)
    await feed.wait_sent(300)
    total = await feed.stop()
    (merged,) = [s for s in await env.open_shards() if s.shard_id not in (low.shard_id,)]

    await wait_for(lambda: env.numbers() >= set(range(total)), 30, f"all {total} records")
    assert env.numbers() == set(range(total))
    assert_per_key_order(env.handled)
    children = {
        low.shard_id: {s0.shard_id},
        middle.shard_id: {s0.shard_id},
        merged.shard_id: {middle.shard_id, s1.shard_id},
    }
    assert_parents_ended_first(env, children)
    assert set(env.shard_end_at) == {s0.shard_id, s1.shard_id, middle.shard_id}

    # The parents as written at their end (KCL attribute names and types).
    expected_children = {
        s0.shard_id: [low.shard_id, middle.shard_id],
        s1.shard_id: [merged.shard_id],
        middle.shard_id: [merged.shard_id],
    }
    for parent, kids in expected_children.items():
        item = env.item_at_shard_end[parent]
        assert item is not None, parent
        assert item["checkpoint"] == {"S": "SHARD_END"}, item
        assert sorted(item["childShardIds"]["SS"]) == kids, item
    # Once every child has checkpointed, the shard sync deletes the parents (top-down).
    await wait_for(
        lambda: set(env.raw_items()) == {low.shard_id, merged.shard_id},
        10,
        "the parents' leases to be deleted",
    )
    await env.stop_workers()

    items = env.raw_items()
    assert items[low.shard_id]["parentShardId"] == {"SS": [s0.shard_id]}
    assert sorted(items[merged.shard_id]["parentShardId"]["SS"]) == sorted(
        [middle.shard_id, s1.shard_id]
    )
    for item in items.values():
        assert "leaseOwner" not in item  # released on shutdown
        assert item["checkpoint"]["S"].isdigit(), item
        assert "childShardIds" not in item


# -- 2. enhanced fan-out ---------------------------------------------------------------------


async def test_enhanced_fan_out_delivers_and_follows_a_split(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kinesis-mock never ends a subscription at shard end (no event without continuation, no
    # ChildShards): the fetcher learns of the split from ListShards, which it asks every
    # 5 s and then less often. Ask often here so that the test does not wait for that.
    monkeypatch.setattr(_fetcher, "LIST_SHARDS_INTERVAL", 0.2)
    monkeypatch.setattr(_fetcher, "LIST_SHARDS_INTERVAL_MAX", 0.4)
    await env.create_stream(1)
    (parent,) = await env.open_shards()
    consumer = await env.start_worker("efo", fast(retrieval=FanOut(consumer_name="app-efo")))
    summary = env.kinesis_boto.describe_stream_summary(StreamName=env.stream)
    arn = summary["StreamDescriptionSummary"]["StreamARN"]
    registered = env.kinesis_boto.list_stream_consumers(StreamARN=arn)["Consumers"]
    assert [(c["ConsumerName"], c["ConsumerStatus"]) for c in registered] == [("app-efo", "ACTIVE")]
    assert consumer._consumer_arn == registered[0]["ConsumerARN"]

    feed = await env.feed()
    await feed.wait_sent(300)
    await wait_for(lambda: len(env.handled) > 0, 10, "the first records over fan-out")
    await env.split(parent)
    low, high = await env.open_shards()
    await feed.wait_sent(300)
    total = await feed.stop()

    await wait_for(lambda: env.numbers() >= set(range(total)), 30, f"all {total} records")
    assert env.numbers() == set(range(total))
    assert_per_key_order(env.handled)
    assert_parents_ended_first(
        env, {low.shard_id: {parent.shard_id}, high.shard_id: {parent.shard_id}}
    )
    item = env.item_at_shard_end[parent.shard_id]
    assert item is not None
    assert sorted(item["childShardIds"]["SS"]) == [low.shard_id, high.shard_id]
    await env.stop_workers()


# -- 3. a killed worker's shards are resumed -------------------------------------------------


class WorkerProcess:
    """The worker program (``python -m kinesio.cli._worker``) on the same stream and lease
    table, killed with SIGKILL: a real crash, nothing released and nothing checkpointed at the
    end."""

    def __init__(self, env: Env, tmp: Path) -> None:
        self.log = tmp / "b.log"
        self.err_path = tmp / "b.err"
        environ = dict(os.environ)
        environ["AWS_ENDPOINT_URL_KINESIS"] = env.kinesis_endpoint.endpoint_url
        environ["AWS_ENDPOINT_URL_DYNAMODB"] = env.dynamo_endpoint.endpoint_url
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *WORKER,
                env.stream,
                env.table,
                str(self.log),
                "--failover",
                "1.5",
                "--take-interval",
                "0.375",
                "--shard-sync",
                "1",
                "--idle-time",
                "0.1",
                "--checkpoint-every",
                "10",
            ],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )

    def handled(self) -> list[tuple[str, int, str]]:
        """(shard, number, partition key) for each record in the worker's log (a line cut
        short by the kill is skipped)."""
        if not self.log.exists():
            return []
        return [(h.shard, h.n, h.key) for h in read_worker_log(self.log, "worker").handled]

    def errors(self) -> str:
        return self.err_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._err.close()


async def test_a_killed_workers_shards_are_resumed_by_the_other(env: Env, tmp_path: Path) -> None:
    await env.create_stream(4)
    # the lease table first, so that the worker process finds it and does not race to create it
    async with DynamoDBLeaseStore(env.table, aws=env.dynamo_endpoint.aws_config()):
        pass
    b = WorkerProcess(env, tmp_path)
    try:
        await wait_for(
            lambda: (
                len(env.raw_items()) == 4
                and all("leaseOwner" in i for i in env.raw_items().values())
            ),
            30,
            "the worker process to take the four shards",
        )
        a = await env.start_worker("a")
        await wait_for(
            lambda: (
                len(a._coordinator.held) == 2
                and sum(1 for i in env.raw_items().values() if "leaseOwner" in i) == 4
            ),
            20,
            "the in-process worker to steal its share",
        )
        owners = {k: i["leaseOwner"]["S"] for k, i in env.raw_items().items()}
        b_shards = {k for k, owner in owners.items() if owner != a.worker_id}
        assert len(b_shards) == 2, owners

        feed = await env.feed()
        await feed.wait_sent(300)
        await wait_for(
            lambda: {s for s, _, _ in b.handled()} == b_shards, 20, "the worker process to read"
        )
        b.kill()
        killed_at = feed.sent
        await feed.wait_sent(300)
        total = await feed.stop()

        def all_numbers() -> set[int]:
            return env.numbers() | {n for _, n, _ in b.handled()}

        await wait_for(lambda: all_numbers() >= set(range(total)), 30, f"all {total} records")
        assert all_numbers() == set(range(total)), b.errors()
        assert len(a._coordinator.held) == 4
        # a resumed b's shards, and read there what was written after the kill
        resumed = {r.shard_id for _, r, _ in env.handled if number(r) >= killed_at}
        assert resumed >= b_shards
        # each worker handled every key in put order
        assert_per_key_order(env.handled)
        b_per_key: dict[str, list[int]] = defaultdict(list)
        for _, n, key in b.handled():
            b_per_key[key].append(n)
        for key, numbers in b_per_key.items():
            assert numbers == sorted(numbers), key
        await env.stop_workers()
    finally:
        b.close()
    items = env.raw_items()
    assert len(items) == 4
    assert all("leaseOwner" not in i and i["checkpoint"]["S"].isdigit() for i in items.values())
