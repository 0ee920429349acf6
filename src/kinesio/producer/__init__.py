"""The producer: KPL-grade batching, aggregation, rate limiting and retries."""

from kinesio.producer._producer import AsyncProducer, ErrorHook, MetricsHook
from kinesio.producer._shard_map import ShardMap

__all__ = ["AsyncProducer", "ErrorHook", "MetricsHook", "ShardMap"]
