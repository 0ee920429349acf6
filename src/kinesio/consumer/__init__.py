"""The consumer: KCL-compatible leases, fenced checkpoints, resharding, polling and fan-out."""

from kinesio.consumer._checkpointer import Checkpointer, PreparedCheckpoint
from kinesio.consumer._consumer import (
    AsyncConsumer,
    InitializationInput,
    LeaseLostInput,
    ProcessRecordsInput,
    RecordHandler,
    RecordProcessor,
    ShardEndedInput,
    ShardStream,
    ShutdownRequestedInput,
)

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
