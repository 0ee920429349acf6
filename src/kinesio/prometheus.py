"""Moved to :mod:`kinesio.metrics.prometheus`; this name stays for code written before."""

from kinesio.metrics.prometheus import METRICS, MetricsServer, PrometheusMetrics

__all__ = ["METRICS", "MetricsServer", "PrometheusMetrics"]
