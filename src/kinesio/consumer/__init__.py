"""The consumer: KCL-compatible leases, fenced checkpoints, resharding, polling and fan-out."""

from kinesio.consumer._checkpointer import Checkpointer, PreparedCheckpoint
from kinesio.consumer._consumer import AsyncConsumer
from kinesio.consumer._handlers import RecordHandler
from kinesio.consumer._processor import (
    InitializationInput,
    LeaseLostInput,
    ProcessRecordsInput,
    RecordProcessor,
    ShardEndedInput,
    ShutdownRequestedInput,
)
from kinesio.consumer._stream import ShardStream

__all__ = [
    "AsyncConsumer",
    "Checkpointer",
    "InitializationInput",
    "LeaseLostInput",
    "PreparedCheckpoint",
    "ProcessRecordsInput",
    "RecordHandler",
    "RecordProcessor",
    "ShardEndedInput",
    "ShardStream",
    "ShutdownRequestedInput",
]
