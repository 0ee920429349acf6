"""The bad-input table: one row per kind of bad input, each a typed kinesio error with a clear
message, and nothing lost or corrupted around it.

Every row runs a scenario that does something good, then the bad thing (which must raise the
row's error, with the row's words in its message), then something good again, and checks that
the good work is all there and nothing was written for the bad one. Rows whose error is None
are runtime conditions kinesio handles itself (as the KCL does): no error reaches the caller
and nothing is lost. The documentation's "Errors" page (docs/errors.md) lists the same rows.

Rows about AWS behaviour run against moto's server (``moto_endpoint``); faults that no
emulator produces (access denied) are injected into the real aiobotocore clients with
``BotocoreFaults``; the rest run on the in-memory fakes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass
from typing import Any

import pytest

from _streams import all_user_records, stored_by_shard
from _streams import moto_stream as stream_on_moto
from kinesio import aggregation
from kinesio._aws import AioKinesis, AWSConfig, create_client
from kinesio._config import ConsumerSettings, InitialPosition, Polling, ProducerSettings
from kinesio._errors import (
    AccessDeniedError,
    AggregationError,
    ConfigurationError,
    CredentialsError,
    EndpointConnectionError,
    KinesioError,
    MalformedLeaseError,
    ProducerClosedError,
    ResourceInUseError,
    ResourceNotFoundError,
    ValidationError,
)
from kinesio._models import (
    SHARD_END,
    TRIM_HORIZON,
    ExtendedSequenceNumber,
    Lease,
    ProducerRecord,
    PutRecordsEntry,
    Record,
    Shard,
)
from kinesio.consumer import AsyncConsumer
from kinesio.consumer._checkpointer import Checkpointer, check_issued_by, issuing_shard_index
from kinesio.consumer._coordinator import LeaseHandle
from kinesio.consumer._polling import PollingFetcher
from kinesio.leases import DynamoDBLeaseStore, MemoryLeaseStore
from kinesio.local import LocalEndpoint
from kinesio.producer import AsyncProducer
from kinesio.testing import BotocoreFaults, Fault, InMemoryKinesis
from test_aggregation import body_of, field, varint, wrap

STREAM = "orders"
FAST = ProducerSettings(linger=0.01, retry_backoff=0.01, max_retry_backoff=0.05)
TIMEOUT = 60.0


@dataclass(frozen=True)
class Ctx:
    """What a scenario gets: the test request (for fixtures) and the row's expectation."""

    request: pytest.FixtureRequest
    raises: Callable[[], AbstractContextManager[Any]]

    @property
    def moto(self) -> LocalEndpoint:
        endpoint: LocalEndpoint = self.request.getfixturevalue("moto_endpoint")
        return endpoint

    @property
    def monkeypatch(self) -> pytest.MonkeyPatch:
        patch: pytest.MonkeyPatch = self.request.getfixturevalue("monkeypatch")
        return patch


Scenario = Callable[[Ctx], Awaitable[None]]


@dataclass(frozen=True)
class Row:
    input: str
    error: type[KinesioError] | None
    match: str
    scenario: Scenario
    emulator: bool


ROWS: list[Row] = []


def row(
    input: str, error: type[KinesioError] | None, match: str = "", *, emulator: bool = False
) -> Callable[..., Any]:
    """Register a scenario as a row; ``emulator`` rows use moto's server."""

    def register(scenario: Scenario) -> Scenario:
        ROWS.append(Row(input, error, match, scenario, emulator))
        return scenario

    return register


def name() -> str:
    return f"bad-{uuid.uuid4().hex[:10]}"


# -- producer input --------------------------------------------------------------------------


async def _bad_put_between_good_ones(ctx: Ctx, data: object, key: object, ehk: object) -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream(STREAM, 2)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=FAST) as producer:
        await producer.put_and_wait(b"before", "k1")
        with ctx.raises():
            await producer.put(data, key, ehk)  # type: ignore[arg-type]
        await producer.put_and_wait(b"after", "k2")
        await producer.flush()
        assert producer.metrics().user_records_put == 2
    stored = await all_user_records(kinesis, STREAM)
    assert sorted(r.data for r in stored) == [b"after", b"before"]


def _put_row(input: str, match: str, data: object, key: object, ehk: object = None) -> None:
    async def scenario(ctx: Ctx) -> None:
        await _bad_put_between_good_ones(ctx, data, key, ehk)

    row(input, ValidationError, match)(scenario)


_put_row("partition-key-empty", "1 to 256", b"x", "")
_put_row("partition-key-257-chars", "1 to 256", b"x", "k" * 257)
_put_row("partition-key-not-str", "partition_key must be a str", b"x", 42)
_put_row("data-not-bytes", "data must be bytes", "text", "k")
_put_row("data-over-max-record-size", "exceeds max_record_size", b"x" * (1024 * 1024), "k")
_put_row("explicit-hash-key-negative", r"\[0, 2\*\*128\)", b"x", "k", -1)
_put_row("explicit-hash-key-2**128", r"\[0, 2\*\*128\)", b"x", "k", 2**128)
_put_row("explicit-hash-key-not-numeric", "decimal integer", b"x", "k", "12ab")


@row("put-after-close", ProducerClosedError, "closed")
async def _put_after_close(ctx: Ctx) -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream(STREAM, 1)
    producer = AsyncProducer(STREAM, kinesis=kinesis, settings=FAST)
    await producer.start()
    accepted = [await producer.put(b"%d" % i, "k") for i in range(5)]
    await producer.aclose()
    with ctx.raises():
        await producer.put(b"late", "k")
    assert all(f.done() and f.exception() is None for f in accepted)
    assert [r.data for r in await all_user_records(kinesis, STREAM)] == [
        b"%d" % i for i in range(5)
    ]


@row("stream-creating", ResourceInUseError, "is CREATING")
async def _stream_creating(ctx: Ctx) -> None:
    now = [0.0]
    kinesis = InMemoryKinesis(creating_delay=30.0, clock=lambda: now[0])
    await kinesis.create_stream(STREAM, 1)
    with ctx.raises():
        await AsyncProducer(STREAM, kinesis=kinesis, settings=FAST).start()
    now[0] = 31.0  # ACTIVE now: the same stream takes writes
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=FAST) as producer:
        await producer.put_and_wait(b"x", "k")
    assert len(await all_user_records(kinesis, STREAM)) == 1


# -- AWS access (moto's server) ----------------------------------------------------------------


@asynccontextmanager
async def moto_stream(endpoint: LocalEndpoint, shards: int = 1) -> AsyncIterator[str]:
    """The shared moto stream helper, for ``async with`` beside the async clients here."""
    with stream_on_moto(endpoint, name(), shards) as stream:
        yield stream


def moto_records(endpoint: LocalEndpoint, stream: str) -> list[bytes]:
    return [r.data for rows in stored_by_shard(endpoint, stream).values() for r in rows]


async def _deliver_one(aws: AWSConfig, stream: str, data: bytes) -> None:
    async with AsyncProducer(stream, aws=aws, settings=FAST) as producer:
        await producer.put_and_wait(data, "k")


@row("stream-does-not-exist", ResourceNotFoundError, "DescribeStreamSummary", emulator=True)
async def _stream_missing(ctx: Ctx) -> None:
    aws = ctx.moto.aws_config()
    async with moto_stream(ctx.moto) as stream:
        with ctx.raises():
            await AsyncProducer(f"{stream}-missing", aws=aws, settings=FAST).start()
        await _deliver_one(aws, stream, b"elsewhere")
        assert moto_records(ctx.moto, stream) == [b"elsewhere"]


def _no_credentials_env(patch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        patch.delenv(var, raising=False)
    for var in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        patch.delenv(var, raising=False)
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kinesio-credentials")
    patch.setenv("AWS_CONFIG_FILE", "/nonexistent/kinesio-config")
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@row("no-credentials", CredentialsError, "no AWS credentials found", emulator=True)
async def _no_credentials(ctx: Ctx) -> None:
    async with moto_stream(ctx.moto) as stream:
        with ctx.monkeypatch.context() as patch:
            _no_credentials_env(patch)
            bare = AWSConfig(endpoint_url=ctx.moto.endpoint_url, region_name="us-east-1")
            with ctx.raises():
                await AsyncProducer(stream, aws=bare, settings=FAST).start()
        await _deliver_one(ctx.moto.aws_config(), stream, b"with credentials")
        assert moto_records(ctx.moto, stream) == [b"with credentials"]


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@row("endpoint-unreachable", EndpointConnectionError, "could not reach the endpoint", emulator=True)
async def _unreachable(ctx: Ctx) -> None:
    nowhere = AWSConfig(endpoint_url=f"http://127.0.0.1:{_unused_port()}", region_name="us-east-1")
    with ctx.raises():
        await AsyncProducer(STREAM, aws=nowhere, settings=FAST).start()
    with ctx.raises():
        async with DynamoDBLeaseStore("kinesio-unreachable", aws=nowhere):
            pass


@row(
    "access-denied-on-put-records",
    AccessDeniedError,
    "PutRecords: AccessDeniedException",
    emulator=True,
)
async def _access_denied_put(ctx: Ctx) -> None:
    faults = BotocoreFaults()
    async with moto_stream(ctx.moto) as stream:
        async with AsyncProducer(stream, aws=faults.aws_config(ctx.moto), settings=FAST) as p:
            await p.put_and_wait(b"before", "k")
            faults.inject(Fault("PutRecords", "AccessDeniedException", count=1))
            denied = await p.put(b"denied", "k")
            with ctx.raises():
                await asyncio.wait_for(denied, TIMEOUT)
            await p.put_and_wait(b"after", "k")  # the producer keeps working
        assert moto_records(ctx.moto, stream) == [b"before", b"after"]


# -- the lease table (moto's DynamoDB) ---------------------------------------------------------


@asynccontextmanager
async def raw_dynamodb(endpoint: LocalEndpoint) -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:
        yield await create_client("dynamodb", endpoint.aws_config(), stack)


async def table_exists(client: Any, table: str) -> bool:
    names: list[str] = (await client.list_tables())["TableNames"]
    return table in names


def _consumer(stream: str, app: str, aws: AWSConfig, **settings: Any) -> AsyncConsumer:
    return AsyncConsumer(
        stream, application_name=app, aws=aws, settings=ConsumerSettings(**settings)
    )


@row(
    "lease-table-missing-creation-disabled",
    ResourceNotFoundError,
    "does not exist",
    emulator=True,
)
async def _table_missing(ctx: Ctx) -> None:
    app = name()
    async with moto_stream(ctx.moto) as stream, raw_dynamodb(ctx.moto) as dynamodb:
        with ctx.raises():
            await _consumer(stream, app, ctx.moto.aws_config(), create_lease_table=False).start()
        assert not await table_exists(dynamodb, app)  # nothing created behind the user's back


@row("lease-table-wrong-key-schema", ConfigurationError, "is not a lease table", emulator=True)
async def _table_wrong_schema(ctx: Ctx) -> None:
    app = name()
    item = {"id": {"S": "unrelated"}, "value": {"N": "7"}}
    async with moto_stream(ctx.moto) as stream, raw_dynamodb(ctx.moto) as dynamodb:
        await dynamodb.create_table(
            TableName=app,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        try:
            with ctx.raises():
                await _consumer(stream, app, ctx.moto.aws_config()).start()
            await dynamodb.put_item(TableName=app, Item=item)
            assert (await dynamodb.scan(TableName=app))["Items"] == [item]
        finally:
            await dynamodb.delete_table(TableName=app)


@row(
    "access-denied-on-lease-table",
    AccessDeniedError,
    "DescribeTable: AccessDeniedException",
    emulator=True,
)
async def _access_denied_table(ctx: Ctx) -> None:
    app = name()
    faults = BotocoreFaults(Fault("*", "AccessDeniedException"), service="dynamodb")
    async with moto_stream(ctx.moto) as stream, raw_dynamodb(ctx.moto) as dynamodb:
        with ctx.raises():
            await _consumer(stream, app, faults.aws_config(ctx.moto)).start()
        assert faults.calls["DescribeTable"] == 1
        assert not await table_exists(dynamodb, app)


async def _malformed_item(ctx: Ctx, bad: dict[str, Any], attribute: str) -> None:
    table = name()
    store = DynamoDBLeaseStore(table, aws=ctx.moto.aws_config())
    async with raw_dynamodb(ctx.moto) as dynamodb:
        try:
            await store.create_table_if_missing()
            good = [
                await store.create_lease(Lease(lease_key=f"shardId-00000000000{i}")) for i in (0, 1)
            ]
            await dynamodb.put_item(TableName=table, Item=bad)
            with ctx.raises() as info:
                await store.list_leases()
            assert info.value.lease_key == bad["leaseKey"]["S"]
            assert info.value.attribute == attribute
            for lease in good:  # the other leases still read, unchanged
                assert lease is not None
                assert await store.get_lease(lease.lease_key) == lease
            stored = await dynamodb.get_item(
                TableName=table, Key={"leaseKey": bad["leaseKey"]}, ConsistentRead=True
            )
            assert stored["Item"] == bad  # nothing written back
        finally:
            await store.aclose()
            await dynamodb.delete_table(TableName=table)


_BAD_KEY = {"leaseKey": {"S": "shardId-000000000009"}}


@row(
    "lease-item-missing-attribute",
    MalformedLeaseError,
    "'leaseCounter' is missing",
    emulator=True,
)
async def _lease_missing_attribute(ctx: Ctx) -> None:
    await _malformed_item(ctx, {**_BAD_KEY, "checkpoint": {"S": TRIM_HORIZON}}, "leaseCounter")


@row("lease-item-mistyped-attribute", MalformedLeaseError, "has type S, expected N", emulator=True)
async def _lease_mistyped_attribute(ctx: Ctx) -> None:
    bad = {**_BAD_KEY, "leaseCounter": {"S": "3"}, "checkpoint": {"S": TRIM_HORIZON}}
    await _malformed_item(ctx, bad, "leaseCounter")


# -- checkpoints -------------------------------------------------------------------------------


def v2_sequence_number(shard_index: int, counter: int) -> str:
    """A sequence number in the service's version 2 layout, issued by ``shard_index``."""
    return str(2 << 184 | counter << 36 | shard_index << 4)


@asynccontextmanager
async def held_checkpointer(shard_id: str) -> AsyncIterator[tuple[Checkpointer, MemoryLeaseStore]]:
    store = MemoryLeaseStore()
    created = await store.create_lease(Lease(lease_key=shard_id))
    assert created is not None
    taken = await store.take(created, "worker")
    assert taken is not None
    yield Checkpointer(LeaseHandle(taken, store, "worker", time.monotonic), shard_id), store


async def _bad_checkpoint(
    ctx: Ctx, bad: Callable[[Checkpointer], Awaitable[None]], shard_index: int = 1
) -> None:
    shard_id = f"shardId-{shard_index:012d}"
    async with held_checkpointer(shard_id) as (cp, store):
        good = ExtendedSequenceNumber(v2_sequence_number(shard_index, 10))
        cp._delivered_up_to(ExtendedSequenceNumber(v2_sequence_number(shard_index, 20)))
        await cp.checkpoint(good)
        with ctx.raises():
            await bad(cp)
        lease = await store.get_lease(shard_id)
        assert lease is not None
        assert lease.checkpoint == good  # the stored checkpoint unchanged
        later = ExtendedSequenceNumber(v2_sequence_number(shard_index, 15))
        await cp.checkpoint(later)  # and the checkpointer still works
        lease = await store.get_lease(shard_id)
        assert lease is not None
        assert lease.checkpoint == later


@row(
    "checkpoint-sequence-number-of-another-shard", ValidationError, "issued by shardId-000000000002"
)
async def _checkpoint_other_shard(ctx: Ctx) -> None:
    # below what this shard delivered, above its checkpoint: only the shard it encodes tells
    await _bad_checkpoint(
        ctx, lambda cp: cp.checkpoint(ExtendedSequenceNumber(v2_sequence_number(2, 12)))
    )


@row("checkpoint-record-of-another-shard", ValidationError, "staged on the checkpointer of")
async def _checkpoint_other_record(ctx: Ctx) -> None:
    other = Record(b"x", "k", v2_sequence_number(2, 12), shard_id="shardId-000000000002")
    await _bad_checkpoint(ctx, lambda cp: cp.checkpoint(other))


@row("checkpoint-not-delivered", ValidationError, "was not delivered")
async def _checkpoint_not_delivered(ctx: Ctx) -> None:
    await _bad_checkpoint(
        ctx, lambda cp: cp.checkpoint(ExtendedSequenceNumber(v2_sequence_number(1, 99)))
    )


@row("checkpoint-not-a-sequence-number", ValidationError, "not a position to checkpoint")
async def _checkpoint_sentinel(ctx: Ctx) -> None:
    await _bad_checkpoint(ctx, lambda cp: cp.checkpoint(ExtendedSequenceNumber(SHARD_END)))


@row(
    "access-denied-on-lease-table-checkpoint",
    AccessDeniedError,
    "UpdateItem: AccessDeniedException",
    emulator=True,
)
async def _access_denied_checkpoint(ctx: Ctx) -> None:
    faults = BotocoreFaults(service="dynamodb")
    shard_id = "shardId-000000000001"
    store = DynamoDBLeaseStore(name(), aws=faults.aws_config(ctx.moto))
    try:
        await store.create_table_if_missing()
        created = await store.create_lease(Lease(lease_key=shard_id))
        assert created is not None
        taken = await store.take(created, "worker")
        assert taken is not None
        handle = LeaseHandle(taken, store, "worker", time.monotonic)
        cp = Checkpointer(handle, shard_id)
        first, second = (ExtendedSequenceNumber(v2_sequence_number(1, n)) for n in (10, 20))
        cp._delivered_up_to(second)
        await cp.checkpoint(first)
        faults.inject(Fault("UpdateItem", "AccessDeniedException", count=1))
        with ctx.raises():
            await cp.checkpoint(second)
        stored = await store.get_lease(shard_id)
        assert stored is not None
        assert stored.checkpoint == first  # nothing written
        assert handle.active  # an AWS error is not a lost lease: retrying is safe
        await cp.checkpoint(second)
        stored = await store.get_lease(shard_id)
        assert stored is not None
        assert stored.checkpoint == second
    finally:
        await store.aclose()
        async with raw_dynamodb(ctx.moto) as dynamodb:
            await dynamodb.delete_table(TableName=store.table_name)


# -- settings ----------------------------------------------------------------------------------


@row("at-timestamp-in-the-future", ConfigurationError, "is in the future")
async def _at_timestamp_future(ctx: Ctx) -> None:
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with ctx.raises():
        InitialPosition.at_timestamp(future)
    with ctx.raises():
        ConsumerSettings(initial_position=InitialPosition("AT_TIMESTAMP", future))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert InitialPosition.at_timestamp(past).timestamp == past


@row("producer-settings-contradict", ConfigurationError, "cannot exceed max_record_size")
async def _producer_settings(ctx: Ctx) -> None:
    with ctx.raises():
        ProducerSettings(max_aggregate_size=2 * 1024 * 1024)
    ProducerSettings(max_aggregate_size=2 * 1024 * 1024, max_record_size=4 * 1024 * 1024)


@row("consumer-settings-contradict", ConfigurationError, "below failover_time")
async def _consumer_settings(ctx: Ctx) -> None:
    with ctx.raises():
        ConsumerSettings(failover_time=3.0, renew_interval=5.0)
    assert ConsumerSettings(failover_time=6.0, renew_interval=5.0).effective_renew_interval == 5


# -- KPL aggregates ----------------------------------------------------------------------------


_GOOD = aggregation.encode([ProducerRecord(b"g1", "a"), ProducerRecord(b"g2", "b")])
_GOOD_BODY = body_of(_GOOD)


async def _bad_aggregate_between_good_ones(ctx: Ctx, bad: bytes) -> None:
    with ctx.raises():
        aggregation.decode(bad)
    # On the consumer's path the same bytes are a plain record, and its neighbours are intact.
    kinesis = InMemoryKinesis()
    await kinesis.create_stream(STREAM, 1)
    entries = [PutRecordsEntry(d, "outer") for d in (_GOOD, bad, _GOOD)]
    results = await kinesis.put_records(STREAM, entries)
    assert all(r.error_code is None for r in results)
    (shard,) = await kinesis.list_shards(STREAM)
    got = await fetch(kinesis, shard, 5)
    assert [(r.data, r.aggregated) for r in got] == [
        (b"g1", True),
        (b"g2", True),
        (bad, False),
        (b"g1", True),
        (b"g2", True),
    ]
    assert [r.sub_sequence_number for r in got] == [0, 1, 0, 0, 1]


def _aggregate_row(input: str, match: str, bad: bytes) -> None:
    async def scenario(ctx: Ctx) -> None:
        await _bad_aggregate_between_good_ones(ctx, bad)

    row(input, AggregationError, match)(scenario)


_aggregate_row("aggregate-bad-md5", "MD5 mismatch", aggregation.MAGIC + _GOOD_BODY + b"\x00" * 16)
_aggregate_row("aggregate-truncated-protobuf", "overruns", wrap(_GOOD_BODY[:-3]))
_aggregate_row(
    "aggregate-key-index-out-of-range",
    "index",
    wrap(field(1, 2, b"k") + field(3, 2, varint(1 << 3) + varint(7) + field(3, 2, b"d"))),
)
_aggregate_row(
    "aggregate-absurd-varint-length",
    "overruns",
    wrap(field(1, 2, b"k") + varint(3 << 3 | 2) + varint(2**63) + b"x"),
)
_aggregate_row(
    "aggregate-varint-over-10-bytes",
    "varint longer than 10 bytes",
    wrap(field(1, 2, b"k") + varint(3 << 3 | 2) + b"\xff" * 11 + b"\x01"),
)


async def fetch(kinesis: InMemoryKinesis, shard: Shard, count: int) -> list[Record]:
    """``count`` user records of ``shard`` from the start, through the consumer's fetcher."""
    fetcher = PollingFetcher(
        kinesis,
        STREAM,
        shard,
        ExtendedSequenceNumber(TRIM_HORIZON),
        polling=Polling(idle_time=0.01, catch_up_interval=0.0),
    )
    got: list[Record] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            while len(got) < count:
                got += (await fetcher.next_batch()).records
    finally:
        await fetcher.aclose()
    return got


# -- runtime conditions kinesio handles --------------------------------------------------------


@row("expired-shard-iterator", None)
async def _expired_iterator(ctx: Ctx) -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream(STREAM, 1)
    (shard,) = await kinesis.list_shards(STREAM)
    fetcher = PollingFetcher(
        kinesis,
        STREAM,
        shard,
        ExtendedSequenceNumber(TRIM_HORIZON),
        polling=Polling(idle_time=0.01, catch_up_interval=0.0),
    )
    got: list[Record] = []

    async def read_until(count: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while len(got) < count:
                got.extend((await fetcher.next_batch()).records)

    try:
        await kinesis.put_records(STREAM, [PutRecordsEntry(b"%d" % i, "k") for i in range(5)])
        await read_until(5)
        iterators = kinesis.calls["GetShardIterator"]
        kinesis.inject(Fault("GetRecords", "ExpiredIteratorException", count=2))
        await kinesis.put_records(STREAM, [PutRecordsEntry(b"%d" % i, "k") for i in range(5, 10)])
        await read_until(10)  # a new iterator from where reading stood: no gap, no repeat
    finally:
        await fetcher.aclose()
    assert [r.data for r in got] == [b"%d" % i for i in range(10)]
    assert kinesis.calls["GetShardIterator"] == iterators + 2


@row("shard-deleted-under-its-lease", None)
async def _shard_deleted(ctx: Ctx) -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream(STREAM, 1)
    parent = "shardId-000000000000"
    await kinesis.put_records(STREAM, [PutRecordsEntry(b"old", "k")])
    await kinesis.split_shard(STREAM, parent, 2**127)
    children = sorted(s.shard_id for s in await kinesis.list_shards(STREAM) if s.shard_id != parent)
    # retention: the closed parent's records expire and the shard leaves ListShards
    kinesis.trim(STREAM, older_than=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert parent not in {s.shard_id for s in await kinesis.list_shards(STREAM)}
    store = MemoryLeaseStore()
    # The table as a KCL left it: the parent unfinished, its children waiting for it.
    await store.create_lease(Lease(lease_key=parent))
    for child in children:
        await store.create_lease(Lease(lease_key=child, parent_shard_ids=frozenset({parent})))
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=FAST) as producer:
        for i in range(20):
            await producer.put(b"new-%d" % i, f"key-{i}")
    seen: list[bytes] = []
    settings = ConsumerSettings(
        failover_time=3.0,
        take_interval=0.2,
        initial_position=InitialPosition.TRIM_HORIZON,
        retrieval=Polling(idle_time=0.05, catch_up_interval=0.0),
    )
    async with AsyncConsumer(
        STREAM, application_name="app", settings=settings, kinesis=kinesis, lease_store=store
    ) as consumer:

        def handle(record: Record) -> None:
            seen.append(record.data)
            if len(seen) == 20:
                consumer.request_shutdown()

        async with asyncio.timeout(TIMEOUT):
            await consumer.consume_with(handle)
    assert sorted(seen) == sorted(b"new-%d" % i for i in range(20))
    lease = await store.get_lease(parent)
    assert lease is None or lease.checkpoint.sequence_number == SHARD_END


# -- the table ---------------------------------------------------------------------------------


def test_the_table_has_a_row_per_kind_of_bad_input() -> None:
    ids = [r.input for r in ROWS]
    assert len(ids) == len(set(ids)) >= 25


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(r, id=r.input, marks=[pytest.mark.integration] if r.emulator else [])
        for r in ROWS
    ],
)
async def test_bad_input(bad: Row, request: pytest.FixtureRequest) -> None:
    raised: list[BaseException] = []

    @contextmanager
    def raises() -> Iterator[Any]:
        assert bad.error is not None, "a row without an error must not expect one"
        with pytest.raises(bad.error, match=bad.match) as info:
            yield info
        assert isinstance(info.value, KinesioError)
        assert str(info.value).strip(), "the message must say what is wrong"
        raised.append(info.value)

    await bad.scenario(Ctx(request, raises))
    if bad.error is not None:
        assert raised, f"the scenario of {bad.input} never tried the bad input"


@pytest.mark.integration
async def test_kinesis_mock_sequence_numbers_name_the_shard_that_issued_them(
    kinesis_mock_endpoint: LocalEndpoint,
) -> None:
    """The version 2 layout the checkpoint check reads (and ``v2_sequence_number`` writes) is
    the one kinesis-mock, which follows the service's format, hands out."""
    kinesis = await AioKinesis.create(kinesis_mock_endpoint.aws_config())
    stream = name()
    try:
        await kinesis.create_stream(stream, 4)
        await kinesis.wait_for_active(stream)
        entries = [PutRecordsEntry(b"x", f"key-{i}") for i in range(40)]
        results = await kinesis.put_records(stream, entries)
        await kinesis.delete_stream(stream)
    finally:
        await kinesis.aclose()
    assert {r.shard_id for r in results} == {f"shardId-{i:012d}" for i in range(4)}
    for result in results:
        assert result.sequence_number is not None
        assert result.shard_id is not None
        index = issuing_shard_index(result.sequence_number)
        assert index is not None
        assert f"shardId-{index:012d}" == result.shard_id
        check_issued_by(result.sequence_number, result.shard_id)
        other = f"shardId-{(index + 1) % 4:012d}"
        with pytest.raises(ValidationError, match=f"not by {other}"):
            check_issued_by(result.sequence_number, other)
