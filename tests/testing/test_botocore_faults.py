"""BotocoreFaults on a plain aiobotocore client against moto's server: what the hooks do."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import botocore.exceptions as bexc
import pytest
from aiobotocore.session import AioSession

from _streams import stored_raw
from kinesio._aws import AioKinesis, AWSConfig, create_client, map_aws_errors
from kinesio._errors import (
    AccessDeniedError,
    AWSError,
    ConfigurationError,
    EndpointConnectionError,
    ServiceError,
    ThrottlingError,
)
from kinesio._models import PutRecordsEntry
from kinesio.local import LocalEndpoint
from kinesio.testing import (
    CONNECTION_CLOSED,
    CONNECTION_ERROR,
    READ_TIMEOUT,
    BotocoreFaults,
    Fault,
)

pytestmark = pytest.mark.integration


def stored(endpoint: LocalEndpoint, stream: str) -> dict[tuple[str, str], bytes]:
    """(shard id, sequence number) -> data of every record in the stream, read with boto3."""
    return {(shard, r["SequenceNumber"]): r["Data"] for shard, r in stored_raw(endpoint, stream)}


@pytest.fixture
def stream(moto_stream: Callable[[str, int], str]) -> str:
    return moto_stream("faults", 2)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def client_with(
    faults: BotocoreFaults, endpoint: LocalEndpoint, stack: AsyncExitStack, attempts: int = 1
) -> Any:
    return await create_client("kinesis", faults.aws_config(endpoint), stack, max_attempts=attempts)


def entries(n: int, prefix: str = "") -> list[dict[str, Any]]:
    return [{"Data": f"{prefix}{i}".encode(), "PartitionKey": f"key-{i}"} for i in range(n)]


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ProvisionedThroughputExceededException", 400, ThrottlingError),
        ("ThrottlingException", 400, ThrottlingError),
        ("InternalFailure", 500, ServiceError),
        ("ServiceUnavailable", 503, ServiceError),
        ("AccessDeniedException", 400, AccessDeniedError),
    ],
)
async def test_whole_call_errors_look_like_the_service_answered_them(
    moto_endpoint: LocalEndpoint,
    stream: str,
    stack: AsyncExitStack,
    code: str,
    status: int,
    error: type[AWSError],
) -> None:
    faults = BotocoreFaults(Fault("PutRecords", code, message="injected"))
    client = await client_with(faults, moto_endpoint, stack)
    with pytest.raises(bexc.ClientError) as info:
        await client.put_records(StreamName=stream, Records=entries(3))
    assert info.value.response["Error"] == {"Code": code, "Message": "injected"}
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    with pytest.raises(error, match=code), map_aws_errors("PutRecords"):
        await client.put_records(StreamName=stream, Records=entries(3))
    assert stored(moto_endpoint, stream) == {}  # the request never reached the emulator
    assert faults.injected[code] == 2
    # other operations are untouched
    assert (await client.describe_stream_summary(StreamName=stream))["StreamDescriptionSummary"]


async def test_partial_failures_are_spliced_back_at_their_indexes(
    moto_endpoint: LocalEndpoint, stream: str, stack: AsyncExitStack
) -> None:
    faults = BotocoreFaults(
        Fault("PutRecords", "ProvisionedThroughputExceededException", per_record=True,
              probability=0.3, message="Rate exceeded for shard"),
        Fault("PutRecords", "InternalFailure", per_record=True, probability=0.2),
        seed=3,
    )  # fmt: skip
    client = await client_with(faults, moto_endpoint, stack)
    records = entries(60)
    resp = await client.put_records(StreamName=stream, Records=records)
    assert len(records) == 60  # the caller's list is left alone
    answers = resp["Records"]
    assert len(answers) == 60
    failed = {i for i, a in enumerate(answers) if "ErrorCode" in a}
    codes = {a["ErrorCode"] for a in answers if "ErrorCode" in a}
    assert codes == {"ProvisionedThroughputExceededException", "InternalFailure"}
    assert 0 < len(failed) < 60
    assert resp["FailedRecordCount"] == len(failed) == faults.failed_records
    for i in failed:
        assert set(answers[i]) == {"ErrorCode", "ErrorMessage"}
    # the failed entries were never written; each answer points at its own record
    held = stored(moto_endpoint, stream)
    assert sorted(held.values()) == sorted(f"{i}".encode() for i in range(60) if i not in failed)
    for i, a in enumerate(answers):
        if i not in failed:
            assert held[a["ShardId"], a["SequenceNumber"]] == f"{i}".encode()


async def test_when_every_entry_fails_nothing_is_sent(
    moto_endpoint: LocalEndpoint, stream: str, stack: AsyncExitStack
) -> None:
    faults = BotocoreFaults(Fault("PutRecords", "InternalFailure", per_record=True))
    client = await client_with(faults, moto_endpoint, stack)
    resp = await client.put_records(StreamName=stream, Records=entries(5))
    assert resp["FailedRecordCount"] == 5
    assert [a["ErrorCode"] for a in resp["Records"]] == ["InternalFailure"] * 5
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    # a whole-call fault still applies to such a call
    faults.inject(Fault("PutRecords", "ThrottlingException", count=1))
    with pytest.raises(bexc.ClientError, match="ThrottlingException"):
        await client.put_records(StreamName=stream, Records=entries(5))
    # ... and so does a lost answer (nothing was written, the caller sees an error)
    faults.inject(Fault("PutRecords", CONNECTION_ERROR, response_lost=True, count=1))
    with pytest.raises(bexc.ConnectionClosedError):
        await client.put_records(StreamName=stream, Records=entries(5))
    assert stored(moto_endpoint, stream) == {}


async def test_count_limits_how_often_a_fault_fires(
    moto_endpoint: LocalEndpoint, stream: str, stack: AsyncExitStack
) -> None:
    call_fault = Fault("PutRecords", "ProvisionedThroughputExceededException", count=3)
    faults = BotocoreFaults(call_fault)
    client = await client_with(faults, moto_endpoint, stack)
    outcomes = []
    for _ in range(5):
        try:
            await client.put_records(StreamName=stream, Records=entries(1))
            outcomes.append("ok")
        except bexc.ClientError:
            outcomes.append("throttled")
    assert outcomes == ["throttled"] * 3 + ["ok"] * 2
    assert faults.faults == ()
    assert faults.calls["PutRecords"] == 5

    faults.inject(Fault("PutRecords", "InternalFailure", per_record=True, count=4))
    first = await client.put_records(StreamName=stream, Records=entries(10))
    second = await client.put_records(StreamName=stream, Records=entries(10))
    assert ["ErrorCode" in a for a in first["Records"]] == [True] * 4 + [False] * 6
    assert second["FailedRecordCount"] == 0
    assert faults.injected == {"ProvisionedThroughputExceededException": 3, "InternalFailure": 4}
    assert len(stored(moto_endpoint, stream)) == 2 + 6 + 10


async def test_remove_ends_one_fault_and_keeps_the_others(
    moto_endpoint: LocalEndpoint, stream: str, stack: AsyncExitStack
) -> None:
    storm = Fault("PutRecords", "ProvisionedThroughputExceededException")
    # per-record faults are drawn first: the failing call spends two of these three
    flaky = Fault("PutRecords", "InternalFailure", per_record=True, count=3)
    faults = BotocoreFaults(storm, flaky)
    client = await client_with(faults, moto_endpoint, stack)
    with pytest.raises(bexc.ClientError):
        await client.put_records(StreamName=stream, Records=entries(2))
    faults.remove(storm)  # the storm is over; the per-record fault is still armed
    answer = await client.put_records(StreamName=stream, Records=entries(2))
    assert answer["FailedRecordCount"] == 1
    assert faults.faults == ()
    with pytest.raises(ConfigurationError, match="not injected"):
        faults.remove(storm)


async def test_probability_draws_from_the_seeded_generator(
    moto_endpoint: LocalEndpoint, stream: str, stack: AsyncExitStack
) -> None:
    def pattern(resp: dict[str, Any]) -> list[bool]:
        return ["ErrorCode" in a for a in resp["Records"]]

    patterns = []
    for _ in range(2):
        faults = BotocoreFaults(
            Fault("PutRecords", "InternalFailure", per_record=True, probability=0.3), seed=11
        )
        client = await client_with(faults, moto_endpoint, stack)
        resp = await client.put_records(StreamName=stream, Records=entries(400))
        patterns.append(pattern(resp))
    assert patterns[0] == patterns[1]
    assert 0.2 < sum(patterns[0]) / 400 < 0.4

    faults = BotocoreFaults(Fault("PutRecords", "ThrottlingException", probability=0.5), seed=5)
    client = await client_with(faults, moto_endpoint, stack)
    hits = 0
    for _ in range(40):
        try:
            await client.put_records(StreamName=stream, Records=entries(1))
        except bexc.ClientError:
            hits += 1
    assert 8 < hits < 32
    assert faults.injected["ThrottlingException"] == hits


@pytest.mark.parametrize(
    ("code", "raised"),
    [
        (CONNECTION_ERROR, bexc.EndpointConnectionError),
        (CONNECTION_CLOSED, bexc.ConnectionClosedError),
        (READ_TIMEOUT, bexc.ReadTimeoutError),
    ],
)
async def test_connection_errors_are_botocores_own(
    moto_endpoint: LocalEndpoint,
    stream: str,
    stack: AsyncExitStack,
    code: str,
    raised: type[Exception],
) -> None:
    faults = BotocoreFaults(Fault("PutRecords", code))
    client = await client_with(faults, moto_endpoint, stack)
    with pytest.raises(raised):
        await client.put_records(StreamName=stream, Records=entries(2))
    kinesis = AioKinesis(client)
    with pytest.raises(EndpointConnectionError):
        await kinesis.put_records(stream, [PutRecordsEntry(b"x", "k")])
    assert stored(moto_endpoint, stream) == {}


async def test_a_lost_answer_means_the_call_took_effect(
    moto_endpoint: LocalEndpoint, stream: str, stack: AsyncExitStack
) -> None:
    faults = BotocoreFaults(Fault("PutRecords", "InternalFailure", response_lost=True, count=1))
    client = await client_with(faults, moto_endpoint, stack)
    with pytest.raises(bexc.ClientError) as info:
        await client.put_records(StreamName=stream, Records=entries(2, "a"))
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    faults.inject(Fault("PutRecords", CONNECTION_ERROR, response_lost=True, count=1))
    with pytest.raises(bexc.ConnectionClosedError):
        await client.put_records(StreamName=stream, Records=entries(2, "b"))
    await client.put_records(StreamName=stream, Records=entries(2, "c"))
    assert sorted(stored(moto_endpoint, stream).values()) == [
        b"a0", b"a1", b"b0", b"b1", b"c0", b"c1"
    ]  # fmt: skip


async def test_latency_delays_the_call(
    moto_endpoint: LocalEndpoint, stream: str, stack: AsyncExitStack
) -> None:
    faults = BotocoreFaults(Fault("PutRecords", latency=0.3, count=1))
    client = await client_with(faults, moto_endpoint, stack)
    start = time.monotonic()
    resp = await client.put_records(StreamName=stream, Records=entries(1))
    assert time.monotonic() - start >= 0.3
    assert resp["FailedRecordCount"] == 0
    start = time.monotonic()
    await client.put_records(StreamName=stream, Records=entries(1))
    assert time.monotonic() - start < 0.3


async def test_star_matches_every_operation(
    moto_endpoint: LocalEndpoint, stream: str, stack: AsyncExitStack
) -> None:
    faults = BotocoreFaults(Fault("*", "InternalFailure", count=2))
    kinesis = AioKinesis(await client_with(faults, moto_endpoint, stack))
    with pytest.raises(ServiceError, match="ListShards"):
        await kinesis.list_shards(stream)
    with pytest.raises(ServiceError, match="DescribeStreamSummary"):
        await kinesis.describe_stream_summary(stream)
    assert len(await kinesis.list_shards(stream)) == 2
    assert faults.calls == {"ListShards": 2, "DescribeStreamSummary": 1}


async def test_botocore_retries_see_injected_throttles(
    moto_endpoint: LocalEndpoint, stream: str, stack: AsyncExitStack
) -> None:
    faults = BotocoreFaults(Fault("PutRecords", "ThrottlingException", count=1))
    client = await client_with(faults, moto_endpoint, stack, attempts=2)
    resp = await client.put_records(StreamName=stream, Records=entries(1))
    assert resp["ResponseMetadata"]["RetryAttempts"] == 1
    assert faults.calls["PutRecords"] == 1
    assert len(stored(moto_endpoint, stream)) == 1


async def test_attach_to_a_client_then_detach(
    moto_endpoint: LocalEndpoint, stream: str, stack: AsyncExitStack
) -> None:
    client = await create_client("kinesis", moto_endpoint.aws_config(), stack)
    faults = BotocoreFaults(Fault("PutRecords", "AccessDeniedException"))
    faults.attach(client)
    with pytest.raises(bexc.ClientError, match="AccessDeniedException"):
        await client.put_records(StreamName=stream, Records=entries(1))
    faults.detach()
    await client.put_records(StreamName=stream, Records=entries(1))
    assert faults.calls["PutRecords"] == 1
    with pytest.raises(ConfigurationError):
        faults.attach(object())


async def test_one_injector_per_client(
    moto_endpoint: LocalEndpoint, stream: str, stack: AsyncExitStack
) -> None:
    config = BotocoreFaults().aws_config(moto_endpoint)
    assert config.session is not None
    BotocoreFaults().attach(config.session)
    client = await create_client("kinesis", config, stack)
    with pytest.raises(ConfigurationError, match="same client"):
        await client.put_records(StreamName=stream, Records=entries(1))


def test_aws_config_keeps_the_base_settings() -> None:
    session = AioSession()
    base = AWSConfig(region_name="eu-west-1", endpoint_url="http://127.0.0.1:1", session=session)
    config = BotocoreFaults().aws_config(base)
    assert config.session is session
    assert (config.region_name, config.endpoint_url) == ("eu-west-1", "http://127.0.0.1:1")
    fresh = BotocoreFaults().aws_config()
    assert isinstance(fresh.session, AioSession)
