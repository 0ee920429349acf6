"""A test kit: an in-memory Kinesis that enforces the service's limits, for fast tests, and
fault injection for real aiobotocore clients (emulators never throttle)."""

from kinesio.testing._botocore_faults import CONNECTION_CLOSED, READ_TIMEOUT, BotocoreFaults
from kinesio.testing._kinesis import CONNECTION_ERROR, Fault, InMemoryKinesis, ShardStats

__all__ = [
    "CONNECTION_CLOSED",
    "CONNECTION_ERROR",
    "READ_TIMEOUT",
    "BotocoreFaults",
    "Fault",
    "InMemoryKinesis",
    "ShardStats",
]
