"""Metrics: the producer's own snapshots (:class:`ProducerMetrics`), and two sinks that turn
the diagnostic events of producers and consumers into metrics labelled by stream and shard:
:mod:`kinesio.metrics.prometheus` (the ``prometheus`` extra) and
:mod:`kinesio.metrics.cloudwatch` (through aiobotocore).

The sinks are imported on their own (``from kinesio.metrics.prometheus import
PrometheusMetrics``), so that using one needs no dependency of the other. ``kinesio.prometheus``
and ``kinesio.cloudwatch`` name the same modules, for code written before they moved here.
"""

from kinesio.metrics._snapshots import (
    ProducerMetrics,
    ProducerMetricsRecorder,
    count_histogram,
    latency_histogram,
    size_histogram,
)

__all__ = [
    "ProducerMetrics",
    "ProducerMetricsRecorder",
    "count_histogram",
    "latency_histogram",
    "size_histogram",
]
