"""AioKinesis: :class:`kinesio._kinesis.KinesisAPI` over an aiobotocore Kinesis client."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
)
from typing import Any

import aiohttp
import botocore.exceptions as bexc

from kinesio._aws._client import AWSConfig, create_client
from kinesio._aws._error_map import map_aws_errors
from kinesio._aws._eventstream import tolerate_missing_initial_response
from kinesio._aws._shapes import (
    child_shards_from,
    position_args,
    records_from,
    shard_from,
    subscribe_position,
)
from kinesio._errors import (
    EndpointConnectionError,
    ResourceInUseError,
)
from kinesio._kinesis import StartingPosition
from kinesio._models import (
    GetRecordsOutput,
    PutRecordsEntry,
    PutRecordsResultEntry,
    Shard,
    StreamConsumer,
    StreamSummary,
    SubscribeEvent,
)
from kinesio._put_records_json import install_put_records_json
from kinesio._records_json import PARSED_RECORDS, install_get_records_parser


class AioKinesis:
    """:class:`kinesio._kinesis.KinesisAPI` over an aiobotocore Kinesis client."""

    def __init__(self, client: Any, stack: AsyncExitStack | None = None) -> None:
        self._client = client
        self._stack = stack
        install_get_records_parser(client)
        install_put_records_json(client)

    @classmethod
    async def create(cls, aws: AWSConfig, *, max_pool_connections: int = 24) -> AioKinesis:
        stack = AsyncExitStack()
        try:
            client = await create_client(
                "kinesis", aws, stack, max_pool_connections=max_pool_connections
            )
        except BaseException:
            await stack.aclose()
            raise
        return cls(client, stack)

    async def aclose(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def describe_stream_summary(self, stream_name: str) -> StreamSummary:
        with map_aws_errors("DescribeStreamSummary"):
            resp = await self._client.describe_stream_summary(StreamName=stream_name)
        d = resp["StreamDescriptionSummary"]
        return StreamSummary(
            stream_name=d["StreamName"],
            stream_arn=d["StreamARN"],
            status=d["StreamStatus"],
            open_shard_count=int(d.get("OpenShardCount", 0)),
            retention_period_hours=int(d.get("RetentionPeriodHours", 24)),
            consumer_count=int(d.get("ConsumerCount", 0)),
        )

    async def list_shards(self, stream_name: str) -> list[Shard]:
        shards: list[Shard] = []
        with map_aws_errors("ListShards"):
            resp = await self._client.list_shards(StreamName=stream_name, MaxResults=1000)
            shards.extend(shard_from(s) for s in resp.get("Shards", []))
            token = resp.get("NextToken")
            while token:
                try:
                    resp = await self._client.list_shards(NextToken=token, MaxResults=1000)
                except bexc.ClientError:
                    # Some emulators (moto) want StreamName sent again with NextToken,
                    # which the real service rejects: try that form only as a fallback.
                    resp = await self._client.list_shards(
                        StreamName=stream_name, NextToken=token, MaxResults=1000
                    )
                shards.extend(shard_from(s) for s in resp.get("Shards", []))
                token = resp.get("NextToken")
        return shards

    async def put_records(
        self, stream_name: str, entries: Sequence[PutRecordsEntry]
    ) -> list[PutRecordsResultEntry]:
        records: list[dict[str, Any]] = []
        for e in entries:
            r: dict[str, Any] = {"Data": e.data, "PartitionKey": e.partition_key}
            if e.explicit_hash_key is not None:
                r["ExplicitHashKey"] = e.explicit_hash_key
            records.append(r)
        with map_aws_errors("PutRecords"):
            resp = await self._client.put_records(StreamName=stream_name, Records=records)
        return [
            PutRecordsResultEntry(
                shard_id=r.get("ShardId"),
                sequence_number=r.get("SequenceNumber"),
                error_code=r.get("ErrorCode"),
                error_message=r.get("ErrorMessage"),
            )
            for r in resp["Records"]
        ]

    async def get_shard_iterator(
        self, stream_name: str, shard_id: str, position: StartingPosition
    ) -> str:
        with map_aws_errors("GetShardIterator"):
            resp = await self._client.get_shard_iterator(
                StreamName=stream_name,
                ShardId=shard_id,
                **position_args(position, type_key="ShardIteratorType"),
            )
        return str(resp["ShardIterator"])

    async def get_records(self, shard_iterator: str, *, limit: int = 10_000) -> GetRecordsOutput:
        with map_aws_errors("GetRecords"):
            resp = await self._client.get_records(ShardIterator=shard_iterator, Limit=limit)
        records = resp.get(PARSED_RECORDS)
        return GetRecordsOutput(
            records=records_from(resp.get("Records", [])) if records is None else records,
            next_shard_iterator=resp.get("NextShardIterator"),
            millis_behind_latest=resp.get("MillisBehindLatest"),
            child_shards=child_shards_from(resp.get("ChildShards")),
        )

    async def register_stream_consumer(self, stream_arn: str, consumer_name: str) -> StreamConsumer:
        try:
            with map_aws_errors("RegisterStreamConsumer"):
                resp = await self._client.register_stream_consumer(
                    StreamARN=stream_arn, ConsumerName=consumer_name
                )
        except ResourceInUseError:
            return await self.describe_stream_consumer(stream_arn, consumer_name)
        c = resp["Consumer"]
        return StreamConsumer(c["ConsumerName"], c["ConsumerARN"], c["ConsumerStatus"])

    async def describe_stream_consumer(self, stream_arn: str, consumer_name: str) -> StreamConsumer:
        with map_aws_errors("DescribeStreamConsumer"):
            resp = await self._client.describe_stream_consumer(
                StreamARN=stream_arn, ConsumerName=consumer_name
            )
        c = resp["ConsumerDescription"]
        return StreamConsumer(c["ConsumerName"], c["ConsumerARN"], c["ConsumerStatus"])

    def subscribe_to_shard(
        self, consumer_arn: str, shard_id: str, position: StartingPosition
    ) -> AbstractAsyncContextManager[AsyncIterator[SubscribeEvent]]:
        return self._subscribe(consumer_arn, shard_id, position)

    @asynccontextmanager
    async def _subscribe(
        self, consumer_arn: str, shard_id: str, position: StartingPosition
    ) -> AsyncIterator[AsyncIterator[SubscribeEvent]]:
        tolerate_missing_initial_response(self._client)
        with map_aws_errors("SubscribeToShard"):
            resp = await self._client.subscribe_to_shard(
                ConsumerARN=consumer_arn,
                ShardId=shard_id,
                StartingPosition=subscribe_position(position),
            )
        stream = resp["EventStream"]

        async def events() -> AsyncIterator[SubscribeEvent]:
            try:
                with map_aws_errors("SubscribeToShard"):
                    async for event in stream:
                        e = event.get("SubscribeToShardEvent")
                        if e is None:
                            continue
                        yield SubscribeEvent(
                            records=records_from(e.get("Records", [])),
                            continuation_sequence_number=e.get("ContinuationSequenceNumber"),
                            millis_behind_latest=e.get("MillisBehindLatest"),
                            child_shards=child_shards_from(e.get("ChildShards")),
                        )
            except aiohttp.ClientError as exc:
                # The event stream is read straight from aiohttp: a connection dropped
                # mid-subscription surfaces as aiohttp's error, not botocore's.
                raise EndpointConnectionError(
                    f"SubscribeToShard: the event stream broke off: {exc!r}",
                    code="EndpointConnectionError",
                    operation="SubscribeToShard",
                ) from exc

        try:
            yield events()
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result

    # -- control plane (KinesisAdminAPI) --------------------------------------------------

    async def create_stream(self, stream_name: str, shard_count: int) -> None:
        with map_aws_errors("CreateStream"):
            await self._client.create_stream(StreamName=stream_name, ShardCount=shard_count)

    async def delete_stream(self, stream_name: str) -> None:
        with map_aws_errors("DeleteStream"):
            await self._client.delete_stream(StreamName=stream_name, EnforceConsumerDeletion=True)

    async def wait_for_active(self, stream_name: str, *, timeout: float = 60.0) -> StreamSummary:
        deadline = time.monotonic() + timeout
        while True:
            summary = await self.describe_stream_summary(stream_name)
            if summary.status == "ACTIVE":
                return summary
            if time.monotonic() > deadline:
                raise not_active(stream_name, summary.status, timeout)
            await asyncio.sleep(0.2)

    async def split_shard(
        self, stream_name: str, shard_id: str, new_starting_hash_key: int
    ) -> None:
        with map_aws_errors("SplitShard"):
            await self._client.split_shard(
                StreamName=stream_name,
                ShardToSplit=shard_id,
                NewStartingHashKey=str(new_starting_hash_key),
            )

    async def merge_shards(self, stream_name: str, shard_id: str, adjacent_shard_id: str) -> None:
        with map_aws_errors("MergeShards"):
            await self._client.merge_shards(
                StreamName=stream_name,
                ShardToMerge=shard_id,
                AdjacentShardToMerge=adjacent_shard_id,
            )


def not_active(stream: str, status: str, timeout: float) -> ResourceInUseError:
    """The error for a stream still not ACTIVE after ``timeout`` seconds of waiting."""
    return ResourceInUseError(
        f"stream {stream!r} still {status} after {timeout:.0f} s",
        code="ResourceInUseException",
        operation="DescribeStreamSummary",
    )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
