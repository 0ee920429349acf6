"""kinesio.cloudwatch against moto's CloudWatch on 127.0.0.1: metrics of a real producer and
consumer published with PutMetricData and read back with GetMetricStatistics / ListMetrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

import kinesio
from _metrics_drive import consume, produce
from kinesio import events as ev
from kinesio._aws import AWSConfig, create_client
from kinesio.local import LocalEndpoint
from kinesio.metrics.cloudwatch import (
    MAX_DATUMS_PER_CALL,
    BlockingCloudWatchMetrics,
    CloudWatchMetrics,
)
from kinesio.testing import BotocoreFaults, Fault, InMemoryKinesis

pytestmark = pytest.mark.integration


@asynccontextmanager
async def cloudwatch(aws: AWSConfig) -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:
        yield await create_client("cloudwatch", aws, stack)


async def statistic(
    client: Any, namespace: str, name: str, dimensions: dict[str, str], stat: str = "Sum"
) -> float:
    """``stat`` of ``name`` with exactly ``dimensions``, over the last hour."""
    now = dt.datetime.now(dt.UTC)
    response = await client.get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=now - dt.timedelta(hours=1),
        EndTime=now + dt.timedelta(minutes=5),
        Period=3600,
        Statistics=[stat],
    )
    return float(sum(p[stat] for p in response["Datapoints"]))


async def metric_dimensions(client: Any, namespace: str) -> dict[str, set[tuple[str, ...]]]:
    """Per metric name, the dimension-name sets it was published with."""
    out: dict[str, set[tuple[str, ...]]] = {}
    paginator = client.get_paginator("list_metrics")
    async for page in paginator.paginate(Namespace=namespace):
        for m in page["Metrics"]:
            names = tuple(sorted(d["Name"] for d in m.get("Dimensions", [])))
            out.setdefault(m["MetricName"], set()).add(names)
    return out


def namespace() -> str:
    return f"kinesio-test-{uuid.uuid4().hex[:8]}"


async def test_producer_and_consumer_metrics_reach_cloudwatch(
    moto_endpoint: LocalEndpoint,
) -> None:
    aws = moto_endpoint.aws_config()
    ns = namespace()
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("orders", 2)
    shards = sorted(sh.shard_id for sh in await kinesis.list_shards("orders"))
    kinesis.inject(
        Fault("PutRecords", "ProvisionedThroughputExceededException", per_record=True, count=3)
    )
    async with CloudWatchMetrics(namespace=ns, aws=aws, flush_interval=3600) as metrics:
        await produce(kinesis, "orders", 100, metrics, aggregate=True)
        await consume(kinesis, "orders", 100, metrics)
    assert metrics.last_error is None
    assert metrics.dropped == 0

    async with cloudwatch(aws) as client:
        # moto answers for every metric whose dimensions include the ones asked for (the
        # service wants an exact match), so shard-level metrics are read shard by shard.

        async def per_shard(name: str, stat: str = "Sum", **extra: str) -> list[float]:
            return [
                await statistic(
                    client, ns, name, {"StreamName": "orders", "ShardId": shard, **extra}, stat
                )
                for shard in shards
            ]

        put = await per_shard("UserRecordsPut")
        assert sum(put) == 100
        assert all(n > 0 for n in put)
        assert 0 < sum(await per_shard("KinesisRecordsPut")) < 100  # aggregated
        code = "ProvisionedThroughputExceededException"
        assert sum(await per_shard("ErrorsByCode", ErrorCode=code)) == 3
        assert sum(await per_shard("AllErrors")) == 3
        assert sum(await per_shard("RetriesPerRecord")) >= 1
        assert sum(await per_shard("RetriesPerRecord", "SampleCount")) == 100
        assert sum(await per_shard("BufferingTime", "SampleCount")) == 100
        assert sum(await per_shard("RecordsProcessed")) == 100
        assert sum(await per_shard("DataBytesProcessed")) == sum(
            len(b"record-%d" % i) for i in range(100)
        )
        assert sum(await per_shard("Checkpoints")) >= 2
        assert all(n > 0 for n in await per_shard("MillisBehindLatest", "SampleCount"))
        stream = {"StreamName": "orders"}
        assert await statistic(client, ns, "TakenLeases", stream) == 2
        assert (
            await statistic(client, ns, "RequestTime", stream, "SampleCount")
            == (kinesis.calls["PutRecords"])
        )
        assert await statistic(client, ns, "CurrentLeases", stream, "Maximum") == 0
        dims = await metric_dimensions(client, ns)
    for name in ("UserRecordsPut", "MillisBehindLatest", "RecordsProcessed", "BufferingTime"):
        assert dims[name] == {(), ("StreamName",), ("ShardId", "StreamName")}, name
    assert dims["RequestTime"] == {(), ("StreamName",)}
    assert dims["ErrorsByCode"] == {
        ("ErrorCode",),
        ("ErrorCode", "StreamName"),
        ("ErrorCode", "ShardId", "StreamName"),
    }


async def test_stream_granularity_and_extra_dimensions(moto_endpoint: LocalEndpoint) -> None:
    aws = moto_endpoint.aws_config()
    ns = namespace()
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("orders", 2)
    metrics = CloudWatchMetrics(
        namespace=ns, granularity="stream", dimensions={"Host": "h1"}, aws=aws
    )
    await produce(kinesis, "orders", 20, metrics, aggregate=False)
    await metrics.aclose()
    async with cloudwatch(aws) as client:
        dims = await metric_dimensions(client, ns)
        put = await statistic(client, ns, "UserRecordsPut", {"StreamName": "orders", "Host": "h1"})
    assert dims["UserRecordsPut"] == {("Host",), ("Host", "StreamName")}
    assert put == 20


async def test_batches_of_at_most_1000_metric_data(moto_endpoint: LocalEndpoint) -> None:
    faults = BotocoreFaults(service="cloudwatch")  # no fault: it counts the calls
    aws = faults.aws_config(moto_endpoint)
    sizes: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        sizes.append(len(params["MetricData"]))

    assert aws.session is not None
    aws.session.register("provide-client-params.cloudwatch.PutMetricData", count)
    ns = namespace()
    metrics = CloudWatchMetrics(namespace=ns, aws=aws)
    shards = [f"shardId-{i:012d}" for i in range(300)]
    for shard in shards:
        metrics(
            ev.PutRecordsSent(
                stream_name="wide",
                duration_ms=5.0,
                error=None,
                shards=(ev.ShardPutStats(shard_id=shard, user_records_put=1),),
            )
        )
    await metrics.flush()
    # 300 shards x 4 counts, 4 stream-level and 4 global counts, RequestTime at 2 levels
    assert sum(sizes) == 300 * 4 + 4 + 4 + 2
    assert len(sizes) == 2
    assert max(sizes) == MAX_DATUMS_PER_CALL
    async with cloudwatch(aws) as client:
        last = {"StreamName": "wide", "ShardId": shards[-1]}
        assert await statistic(client, ns, "UserRecordsPut", last) == 1
    await metrics.aclose()


async def test_a_failed_flush_keeps_the_data_for_the_next(moto_endpoint: LocalEndpoint) -> None:
    faults = BotocoreFaults(Fault("PutMetricData", "AccessDenied", count=1), service="cloudwatch")
    aws = faults.aws_config(moto_endpoint)
    ns = namespace()
    metrics = CloudWatchMetrics(namespace=ns, aws=aws)
    metrics(ev.CheckpointWritten(stream_name="s", shard_id="a", sequence_number="1",
                                 sub_sequence_number=0, lease_counter=2))  # fmt: skip
    with pytest.raises(kinesio.AccessDeniedError):
        await metrics.flush()
    assert isinstance(metrics.last_error, kinesio.AccessDeniedError)
    await metrics.flush()  # the same data, sent again
    assert metrics.last_error is None
    async with cloudwatch(aws) as client:
        assert await statistic(client, ns, "Checkpoints", {"StreamName": "s", "ShardId": "a"}) == 1
    await metrics.aclose()


async def test_data_rejected_as_invalid_is_dropped_and_said(
    moto_endpoint: LocalEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    faults = BotocoreFaults(
        Fault("PutMetricData", "InvalidParameterValue", count=1), service="cloudwatch"
    )
    metrics = CloudWatchMetrics(namespace=namespace(), aws=faults.aws_config(moto_endpoint))
    metrics(
        ev.LeaseAcquired(
            stream_name="s", lease_key="a", previous_owner=None, stolen=False, lease_counter=1
        )
    )
    with pytest.raises(kinesio.InvalidArgumentError):
        await metrics.flush()
    assert metrics.dropped > 0
    assert "dropped" in caplog.text
    await metrics.aclose()  # nothing left to send: closes cleanly


async def test_the_periodic_flush_publishes_without_being_asked(
    moto_endpoint: LocalEndpoint,
) -> None:
    aws = moto_endpoint.aws_config()
    ns = namespace()
    async with CloudWatchMetrics(namespace=ns, aws=aws, flush_interval=0.05) as metrics:
        metrics(ev.RecordFailed(stream_name="s", partition_key="k", error="x"))
        async with cloudwatch(aws) as client:
            for _ in range(200):
                if await statistic(client, ns, "UserRecordsFailed", {"StreamName": "s"}) == 1:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the periodic flush never published")


def test_settings_are_checked() -> None:
    with pytest.raises(kinesio.ConfigurationError):
        CloudWatchMetrics(granularity="host")  # type: ignore[arg-type]
    with pytest.raises(kinesio.ConfigurationError):
        CloudWatchMetrics(flush_interval=0)
    with pytest.raises(kinesio.ConfigurationError):
        CloudWatchMetrics(namespace="")


def test_the_blocking_variant_with_the_blocking_producer(moto_endpoint: LocalEndpoint) -> None:
    aws = moto_endpoint.aws_config()
    ns = namespace()
    kinesis = InMemoryKinesis()
    asyncio.run(kinesis.create_stream("s", 1))
    [shard] = asyncio.run(kinesis.list_shards("s"))
    with BlockingCloudWatchMetrics(namespace=ns, aws=aws) as metrics:
        with kinesio.Producer("s", kinesis=kinesis, on_event=metrics) as producer:
            futures = [producer.put(b"x", f"k{i}") for i in range(10)]
            producer.flush()
        assert all(f.result().shard_id == shard.shard_id for f in futures)

    async def read_back() -> float:
        async with cloudwatch(aws) as client:
            dims = {"StreamName": "s", "ShardId": shard.shard_id}
            return await statistic(client, ns, "UserRecordsPut", dims)

    assert asyncio.run(read_back()) == 10
