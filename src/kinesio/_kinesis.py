"""The Kinesis seam: the calls kinesis makes, as a small Protocol.

Two implementations: :class:`kinesio._aws.AioKinesis` (aiobotocore, the real service or an
emulator) and :class:`kinesio.testing.InMemoryKinesis` (a fake faithful to the service limits).
Every implementation raises kinesio errors (``kinesio.AWSError`` subclasses), never botocore's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from kinesio._models import (
    GetRecordsOutput,
    PutRecordsEntry,
    PutRecordsResultEntry,
    Shard,
    StreamConsumer,
    StreamSummary,
    SubscribeEvent,
)

IteratorType = Literal[
    "TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "AT_TIMESTAMP"
]


@dataclass(frozen=True, slots=True)
class StartingPosition:
    """Where a shard iterator or a fan-out subscription starts."""

    type: IteratorType
    sequence_number: str | None = None
    timestamp: dt.datetime | None = None


@runtime_checkable
class KinesisAPI(Protocol):
    """The Kinesis data-plane calls kinesio uses. Methods raise ``kinesio.AWSError`` subclasses."""

    async def describe_stream_summary(self, stream_name: str) -> StreamSummary: ...

    async def list_shards(self, stream_name: str) -> list[Shard]:
        """Every shard of the stream (open and closed, still within retention), all pages."""
        ...

    async def put_records(
        self, stream_name: str, entries: Sequence[PutRecordsEntry]
    ) -> list[PutRecordsResultEntry]:
        """One PutRecords call; the result list is parallel to ``entries``."""
        ...

    async def get_shard_iterator(
        self, stream_name: str, shard_id: str, position: StartingPosition
    ) -> str: ...

    async def get_records(
        self, shard_iterator: str, *, limit: int = 10_000
    ) -> GetRecordsOutput: ...

    async def register_stream_consumer(self, stream_arn: str, consumer_name: str) -> StreamConsumer:
        """Register (or find the already registered) enhanced fan-out consumer."""
        ...

    async def describe_stream_consumer(
        self, stream_arn: str, consumer_name: str
    ) -> StreamConsumer: ...

    def subscribe_to_shard(
        self, consumer_arn: str, shard_id: str, position: StartingPosition
    ) -> AbstractAsyncContextManager[AsyncIterator[SubscribeEvent]]:
        """A subscription (at most 5 minutes long) yielding its events."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class KinesisAdminAPI(Protocol):
    """Control-plane calls used by the CLI, the playground and tests."""

    async def create_stream(self, stream_name: str, shard_count: int) -> None: ...

    async def delete_stream(self, stream_name: str) -> None: ...

    async def wait_for_active(
        self, stream_name: str, *, timeout: float = 60.0
    ) -> StreamSummary: ...

    async def split_shard(
        self, stream_name: str, shard_id: str, new_starting_hash_key: int
    ) -> None: ...

    async def merge_shards(
        self, stream_name: str, shard_id: str, adjacent_shard_id: str
    ) -> None: ...
