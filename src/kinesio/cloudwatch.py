"""Moved to :mod:`kinesio.metrics.cloudwatch`; this name stays for code written before."""

from kinesio.metrics.cloudwatch import (
    MAX_DATUMS_PER_CALL,
    METRICS,
    BlockingCloudWatchMetrics,
    CloudWatchMetrics,
    Granularity,
)

__all__ = [
    "MAX_DATUMS_PER_CALL",
    "METRICS",
    "BlockingCloudWatchMetrics",
    "CloudWatchMetrics",
    "Granularity",
]
