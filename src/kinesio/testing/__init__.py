"""A test kit: an in-memory Kinesis that enforces the service's limits, for fast tests."""

from kinesio.testing._kinesis import Fault, InMemoryKinesis, ShardStats

__all__ = ["Fault", "InMemoryKinesis", "ShardStats"]
