"""AWS client creation (aiobotocore) and the one place where botocore errors become kinesio's.

Configuration follows boto3: the default credential chain, ``AWS_DEFAULT_REGION``,
``AWS_PROFILE``, and ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_KINESIS`` /
``AWS_ENDPOINT_URL_DYNAMODB`` all work with no code change; :class:`AWSConfig` overrides them.
"""

from __future__ import annotations

import asyncio
import binascii
import datetime as dt
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass
from typing import Any

import aiohttp
import botocore.exceptions as bexc
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.eventstream import EventStreamBuffer, ParserError

from kinesio._errors import (
    AccessDeniedError,
    AWSError,
    ConfigurationError,
    CredentialsError,
    EndpointConnectionError,
    ExpiredIteratorError,
    InvalidArgumentError,
    ResourceInUseError,
    ResourceNotFoundError,
    ServiceError,
    ThrottlingError,
    ValidationError,
)
from kinesio._kinesis import StartingPosition
from kinesio._models import (
    ChildShard,
    GetRecordsOutput,
    KinesisRecord,
    PutRecordsEntry,
    PutRecordsResultEntry,
    Shard,
    StreamConsumer,
    StreamSummary,
    SubscribeEvent,
)
from kinesio._records_json import PARSED_RECORDS, epoch_timestamp, install_get_records_parser

_CODES: dict[str, type[AWSError]] = {}
for _cls, _codes in (
    (
        ThrottlingError,
        "ProvisionedThroughputExceededException LimitExceededException ThrottlingException "
        "Throttling ThrottledException RequestLimitExceeded KMSThrottlingException "
        "TooManyRequestsException",
    ),
    (
        ServiceError,
        "InternalFailure InternalFailureException InternalServerError ServiceUnavailable "
        "ServiceUnavailableException InternalError",
    ),
    (ExpiredIteratorError, "ExpiredIteratorException ExpiredNextTokenException"),
    (ResourceNotFoundError, "ResourceNotFoundException"),
    (ResourceInUseError, "ResourceInUseException"),
    (
        AccessDeniedError,
        "AccessDeniedException AccessDenied KMSAccessDeniedException UnauthorizedOperation",
    ),
    (
        CredentialsError,
        "UnrecognizedClientException InvalidSignatureException ExpiredTokenException "
        "InvalidClientTokenId MissingAuthenticationToken SignatureDoesNotMatch",
    ),
    (
        InvalidArgumentError,
        "InvalidArgumentException ValidationException SerializationException "
        "InvalidParameterValue InvalidParameterCombination MissingParameter",
    ),
):
    for _code in _codes.split():
        _CODES[_code] = _cls


def error_from_code(code: str, message: str, *, operation: str = "", status: int = 0) -> AWSError:
    """The kinesio error for an AWS error code (also used by the in-memory fakes)."""
    cls = _CODES.get(code)
    if cls is None:
        cls = ServiceError if status >= 500 else AWSError
    text = f"{operation}: {code}: {message}" if operation else f"{code}: {message}"
    return cls(text, code=code, operation=operation)


@contextmanager
def map_aws_errors(operation: str) -> Iterator[None]:
    """Turn botocore / aiohttp failures raised inside the block into kinesio errors."""
    try:
        yield
    except bexc.ClientError as exc:
        err = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        raise error_from_code(
            str(err.get("Code", "Unknown")),
            str(err.get("Message", "")),
            operation=operation,
            status=status,
        ) from exc
    except (bexc.NoCredentialsError, bexc.PartialCredentialsError) as exc:
        raise CredentialsError(
            f"{operation}: no AWS credentials found ({exc}); set AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or pass an aiobotocore session",
            code="NoCredentials",
            operation=operation,
        ) from exc
    except bexc.NoRegionError as exc:
        raise ConfigurationError(
            "no AWS region configured: set AWS_DEFAULT_REGION or pass region_name="
        ) from exc
    except bexc.ParamValidationError as exc:
        raise ValidationError(f"{operation}: {exc}") from exc
    except (TimeoutError, bexc.HTTPClientError, bexc.ConnectionError, OSError) as exc:
        raise EndpointConnectionError(
            f"{operation}: could not reach the endpoint: {exc}",
            code="EndpointConnectionError",
            operation=operation,
        ) from exc


def tuned_session(session: AioSession) -> AioSession:
    """A session kinesio created itself: parse timestamps the fast way (timezone-aware UTC).

    Sessions passed in by users are left as they are.
    """
    factory = session.get_component("response_parser_factory")
    factory.set_parser_defaults(timestamp_parser=epoch_timestamp)
    return session


@dataclass(frozen=True, kw_only=True, slots=True)
class AWSConfig:
    """Where and as whom to call AWS. Every field defaults to boto3's own resolution.

    ``endpoint_url`` applies to every service kinesio calls (Kinesis, DynamoDB, CloudWatch),
    like ``AWS_ENDPOINT_URL``; leave it None to use the per-service environment variables.
    """

    region_name: str | None = None
    endpoint_url: str | None = None
    profile_name: str | None = None
    session: AioSession | None = None

    def new_session(self) -> AioSession:
        if self.session is not None:
            return self.session
        return tuned_session(AioSession(profile=self.profile_name))

    def __repr__(self) -> str:  # never show a session's credentials
        return (
            f"AWSConfig(region_name={self.region_name!r}, endpoint_url={self.endpoint_url!r}, "
            f"profile_name={self.profile_name!r})"
        )


async def create_client(
    service: str,
    aws: AWSConfig,
    stack: AsyncExitStack,
    *,
    max_attempts: int = 1,
    max_pool_connections: int = 10,
    read_timeout: float = 30.0,
    connect_timeout: float = 10.0,
) -> Any:
    """An aiobotocore client whose lifetime is tied to ``stack``.

    ``max_attempts=1`` (the default) turns botocore's own retries off so that every throttle
    reaches kinesio's limiter and retry logic instead of being hidden inside botocore.
    """
    config = AioConfig(
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=max_pool_connections,
        read_timeout=read_timeout,
        connect_timeout=connect_timeout,
    )
    session = aws.new_session()
    with map_aws_errors(f"create {service} client"):
        client = session.create_client(
            service, region_name=aws.region_name, endpoint_url=aws.endpoint_url, config=config
        )
        return await stack.enter_async_context(client)


def _shard(item: dict[str, Any]) -> Shard:
    rng = item["HashKeyRange"]
    seq = item.get("SequenceNumberRange", {})
    return Shard(
        shard_id=item["ShardId"],
        starting_hash_key=int(rng["StartingHashKey"]),
        ending_hash_key=int(rng["EndingHashKey"]),
        parent_shard_id=item.get("ParentShardId"),
        adjacent_parent_shard_id=item.get("AdjacentParentShardId"),
        starting_sequence_number=seq.get("StartingSequenceNumber", "0"),
        ending_sequence_number=seq.get("EndingSequenceNumber"),
    )


def _records(items: Sequence[dict[str, Any]]) -> list[KinesisRecord]:
    return [
        KinesisRecord(
            sequence_number=r["SequenceNumber"],
            data=bytes(r["Data"]),
            partition_key=r["PartitionKey"],
            approximate_arrival_timestamp=r.get("ApproximateArrivalTimestamp"),
        )
        for r in items
    ]


def _child_shards(items: Sequence[dict[str, Any]] | None) -> list[ChildShard]:
    return [
        ChildShard(
            shard_id=c["ShardId"],
            parent_shards=tuple(c.get("ParentShards", ())),
            starting_hash_key=int(c["HashKeyRange"]["StartingHashKey"]),
            ending_hash_key=int(c["HashKeyRange"]["EndingHashKey"]),
        )
        for c in items or ()
    ]


def _position_args(position: StartingPosition, *, type_key: str) -> dict[str, Any]:
    args: dict[str, Any] = {type_key: position.type}
    if position.sequence_number is not None:
        args["StartingSequenceNumber"] = position.sequence_number
    if position.timestamp is not None:
        args["Timestamp"] = position.timestamp
    return args


def _subscribe_position(position: StartingPosition) -> dict[str, Any]:
    # SubscribeToShard names the fields Type / SequenceNumber / Timestamp, unlike
    # GetShardIterator's ShardIteratorType / StartingSequenceNumber / Timestamp.
    args: dict[str, Any] = {"Type": position.type}
    if position.sequence_number is not None:
        args["SequenceNumber"] = position.sequence_number
    if position.timestamp is not None:
        args["Timestamp"] = position.timestamp
    return args


# -- SubscribeToShard: an event stream that may lack its initial-response event -------------
#
# botocore parses an event-stream response by first reading one ``initial-response`` event
# (the operation's non-streamed output) and fails with "First event was not of type
# initial-response" otherwise, after consuming that first event. The real service sends one;
# kinesis-mock does not. Rather than patch botocore's parser for every client in the process,
# a ``before-parse`` hook on this client alone hands the parser a view of the raw body that
# starts with a synthesized, empty initial-response and leaves out the server's own one if it
# sends it: the parser then sees the same events either way, and no event is lost.


_SUBSCRIBE_BEFORE_PARSE = "before-parse.kinesis.SubscribeToShard"
_SHIM_ID = "kinesio.subscribe-to-shard.initial-response"
_EVENT_PRELUDE = 12  # total length, headers length, prelude CRC: 3 big-endian uint32


def _event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message (``application/vnd.amazon.eventstream``) with string headers."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        # name length (1 byte), name, type 7 (string), value length (2 bytes), value
        encoded += bytes((len(raw_name),)) + raw_name + b"\x07"
        encoded += len(raw_value).to_bytes(2, "big") + raw_value
    total = _EVENT_PRELUDE + len(encoded) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    prelude += binascii.crc32(prelude).to_bytes(4, "big")
    message = prelude + encoded + payload
    return message + binascii.crc32(message).to_bytes(4, "big")


_INITIAL_RESPONSE = _event_message(
    {
        ":message-type": "event",
        ":event-type": "initial-response",
        ":content-type": "application/x-amz-json-1.1",
    },
    b"{}",
)


class _InitialResponseFirst:
    """The raw body of a SubscribeToShard response, seen through aiohttp's ``content``
    interface, beginning with exactly one initial-response event whatever the server sent."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.content = self

    async def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        yield _INITIAL_RESPONSE, True
        head: bytes | None = b""
        async for chunk, end_of_chunk in self._raw.content.iter_chunks():
            if head is None:
                yield chunk, end_of_chunk
                continue
            head += chunk
            first = _first_message_length(head)
            if first is None:
                continue  # the server's first message is not complete yet
            if _is_initial_response(head[:first]):
                head = head[first:]
            if head:
                yield head, end_of_chunk
            head = None
        if head:
            yield head, True  # a truncated first message: let the parser report it

    def close(self) -> None:
        self._raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _first_message_length(data: bytes) -> int | None:
    if len(data) < _EVENT_PRELUDE:
        return None
    total = int.from_bytes(data[:4], "big")
    return total if len(data) >= total else None


def _is_initial_response(message: bytes) -> bool:
    buffer = EventStreamBuffer()
    buffer.add_data(message)
    try:
        parsed = next(buffer)
    except (ParserError, StopIteration):  # malformed: botocore's parser will reject it
        return False
    return bool(parsed.headers.get(":event-type") == "initial-response")


def _wrap_subscribe_body(response_dict: dict[str, Any], **_: Any) -> None:
    if int(response_dict.get("status_code", 0)) >= 300:
        return  # an error response: a JSON body, read already
    body = response_dict.get("body")
    if hasattr(getattr(body, "content", None), "iter_chunks"):
        response_dict["body"] = _InitialResponseFirst(body)


def _tolerate_missing_initial_response(client: Any) -> None:
    """Install :func:`_wrap_subscribe_body` on ``client`` (once; later calls do nothing)."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is not None:
        events.register(_SUBSCRIBE_BEFORE_PARSE, _wrap_subscribe_body, unique_id=_SHIM_ID)


class AioKinesis:
    """:class:`kinesio._kinesis.KinesisAPI` over an aiobotocore Kinesis client."""

    def __init__(self, client: Any, stack: AsyncExitStack | None = None) -> None:
        self._client = client
        self._stack = stack
        install_get_records_parser(client)

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
            shards.extend(_shard(s) for s in resp.get("Shards", []))
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
                shards.extend(_shard(s) for s in resp.get("Shards", []))
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
                **_position_args(position, type_key="ShardIteratorType"),
            )
        return str(resp["ShardIterator"])

    async def get_records(self, shard_iterator: str, *, limit: int = 10_000) -> GetRecordsOutput:
        with map_aws_errors("GetRecords"):
            resp = await self._client.get_records(ShardIterator=shard_iterator, Limit=limit)
        records = resp.get(PARSED_RECORDS)
        return GetRecordsOutput(
            records=_records(resp.get("Records", [])) if records is None else records,
            next_shard_iterator=resp.get("NextShardIterator"),
            millis_behind_latest=resp.get("MillisBehindLatest"),
            child_shards=_child_shards(resp.get("ChildShards")),
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
        _tolerate_missing_initial_response(self._client)
        with map_aws_errors("SubscribeToShard"):
            resp = await self._client.subscribe_to_shard(
                ConsumerARN=consumer_arn,
                ShardId=shard_id,
                StartingPosition=_subscribe_position(position),
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
                            records=_records(e.get("Records", [])),
                            continuation_sequence_number=e.get("ContinuationSequenceNumber"),
                            millis_behind_latest=e.get("MillisBehindLatest"),
                            child_shards=_child_shards(e.get("ChildShards")),
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
                raise ResourceInUseError(
                    f"stream {stream_name!r} still {summary.status} after {timeout:.0f} s",
                    code="ResourceInUseException",
                    operation="DescribeStreamSummary",
                )
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


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
