"""Prometheus' metric catalogue for kinesio, and the metric families a scrape returns."""

from __future__ import annotations

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

_STREAM = ("stream",)
_SHARD = ("stream", "shard")

#: Every metric: name -> (type, label names, help). Counters get Prometheus' ``_total``
#: suffix on their samples; summaries have ``_count`` and ``_sum`` samples.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # producer
    "kinesio_producer_user_records": (
        "counter",
        (*_SHARD, "result"),
        "User records by PutRecords outcome: success (delivered at the first attempt), "
        "recovered (delivered after a retry), failed (not written by the request; retried, "
        "or failed for good when out of TTL or attempts)",
    ),
    "kinesio_producer_user_bytes": ("counter", _SHARD, "Data bytes of user records delivered"),
    "kinesio_producer_kinesis_records": (
        "counter",
        (*_SHARD, "result"),
        "Kinesis records (an aggregate counts once) by outcome: success or failed",
    ),
    "kinesio_producer_errors": (
        "counter",
        (*_SHARD, "code"),
        "Kinesis records PutRecords did not write, by AWS error code",
    ),
    "kinesio_producer_retries": (
        "counter",
        _SHARD,
        "Attempts before the delivering one, summed over delivered user records",
    ),
    "kinesio_producer_record_latency_seconds": (
        "summary",
        _SHARD,
        "Time from put() to delivery of each delivered user record",
    ),
    "kinesio_producer_push_delay_seconds": (
        "summary",
        _SHARD,
        "Time from put() to the sending of the request that delivered each user record",
    ),
    "kinesio_producer_requests": (
        "counter",
        (*_STREAM, "outcome"),
        "PutRecords requests: outcome ok (answered; records may still have failed) or the "
        "error code of a request that failed whole",
    ),
    "kinesio_producer_request_duration_seconds": (
        "histogram",
        _STREAM,
        "Round trip of each PutRecords request",
    ),
    "kinesio_producer_user_records_failed": (
        "counter",
        (*_STREAM, "error"),
        "User records that failed for good (their future holds the error), by error class",
    ),
    "kinesio_producer_open_shards": (
        "gauge",
        _STREAM,
        "Open shards in the producer's shard map at its last refresh",
    ),
    # both
    "kinesio_throttles": (
        "counter",
        (*_SHARD, "operation"),
        "Throttled calls (consumer) or throttled Kinesis records (producer's PutRecords)",
    ),
    # consumer
    "kinesio_consumer_records_processed": (
        "counter",
        _SHARD,
        "User records the handler returned from",
    ),
    "kinesio_consumer_handler_retries": (
        "counter",
        _SHARD,
        "Handler calls that raised and were retried (consume_with retries)",
    ),
    "kinesio_consumer_records_dead_lettered": (
        "counter",
        _SHARD,
        "Records handed to the dead_letter hook after their last failed attempt",
    ),
    "kinesio_consumer_bytes_processed": (
        "counter",
        _SHARD,
        "Data bytes of user records the handler returned from",
    ),
    "kinesio_consumer_fetches": (
        "counter",
        (*_SHARD, "operation"),
        "Reads: GetRecords calls (polling) or subscription events (enhanced fan-out)",
    ),
    "kinesio_consumer_records_fetched": (
        "counter",
        _SHARD,
        "User records fetched (after deaggregation and deduplication)",
    ),
    "kinesio_consumer_millis_behind_latest": (
        "gauge",
        _SHARD,
        "MillisBehindLatest of the last read of each shard this worker holds",
    ),
    "kinesio_consumer_leases_held": ("gauge", _STREAM, "Leases this worker holds"),
    "kinesio_consumer_lease_events": (
        "counter",
        (*_SHARD, "event"),
        "Lease events: acquired (unowned or expired), stolen (from a live worker), renewed, "
        "lost, released",
    ),
    "kinesio_consumer_checkpoints": ("counter", _SHARD, "Checkpoints written"),
    "kinesio_consumer_subscription_renewals": (
        "counter",
        _SHARD,
        "Enhanced fan-out subscriptions opened after the shard's first one",
    ),
    "kinesio_consumer_shard_events": (
        "counter",
        (*_SHARD, "event"),
        "Shard events: started, ended, blocked_on_parent",
    ),
}

#: Bucket bounds (seconds) of ``kinesio_producer_request_duration_seconds``.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        i = 0
        while i < len(DURATION_BUCKETS) and value > DURATION_BUCKETS[i]:
            i += 1
        self.counts[i] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


Labels = tuple[str, ...]


def families(
    values: dict[str, dict[Labels, float]],
    summaries: dict[str, dict[Labels, tuple[float, float]]],
    histograms: dict[str, dict[Labels, Histogram]],
) -> list[Metric]:
    out: list[Metric] = []
    for name, (kind, labels, doc) in METRICS.items():
        family: Metric
        if kind == "counter":
            counter = CounterMetricFamily(name, doc, labels=labels)
            for key, value in sorted(values.get(name, {}).items()):
                counter.add_metric(key, value)
            family = counter
        elif kind == "gauge":
            gauge = GaugeMetricFamily(name, doc, labels=labels)
            for key, value in sorted(values.get(name, {}).items()):
                gauge.add_metric(key, value)
            family = gauge
        elif kind == "summary":
            summary = SummaryMetricFamily(name, doc, labels=labels)
            for key, (count, total) in sorted(summaries.get(name, {}).items()):
                summary.add_metric(key, count_value=int(count), sum_value=total)
            family = summary
        else:
            histogram = HistogramMetricFamily(name, doc, labels=labels)
            for key, h in sorted(histograms.get(name, {}).items()):
                histogram.add_metric(key, h.buckets(), sum_value=h.total)
            family = histogram
        out.append(family)
    return out
