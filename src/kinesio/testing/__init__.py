"""A test kit: an in-memory Kinesis that enforces the service's limits, for fast tests, fault
injection for real aiobotocore clients (emulators never throttle), and Lambda Kinesis events."""

from kinesio.testing._botocore_faults import CONNECTION_CLOSED, READ_TIMEOUT, BotocoreFaults
from kinesio.testing._kinesis import CONNECTION_ERROR, Fault, InMemoryKinesis, ShardStats
from kinesio.testing._lambda import LambdaEventBuilder, lambda_event

__all__ = [
    "CONNECTION_CLOSED",
    "CONNECTION_ERROR",
    "READ_TIMEOUT",
    "BotocoreFaults",
    "Fault",
    "InMemoryKinesis",
    "LambdaEventBuilder",
    "ShardStats",
    "lambda_event",
]
