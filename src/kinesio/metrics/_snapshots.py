"""Metric snapshots. Snapshots add together (``a + b``) to aggregate intervals or producers.

Distributions are HDR histograms (``hdrh``): exact counts, percentiles within 0.1 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

# Latencies in milliseconds up to one hour; sizes in bytes up to 10 MiB; small counts to 10 000.
_LATENCY_MS_MAX = 3_600_000
_SIZE_MAX = 10 * 1024 * 1024 + 1024
_COUNT_MAX = 10_000


def latency_histogram() -> HdrHistogram:
    return HdrHistogram(1, _LATENCY_MS_MAX, 3)


def size_histogram() -> HdrHistogram:
    return HdrHistogram(1, _SIZE_MAX, 3)


def count_histogram() -> HdrHistogram:
    return HdrHistogram(1, _COUNT_MAX, 3)


def _merged(first: HdrHistogram, *more: HdrHistogram) -> HdrHistogram:
    """A new histogram holding the counts of all the given ones (which stay unchanged)."""
    out = HdrHistogram(
        first.lowest_trackable_value, first.highest_trackable_value, first.significant_figures
    )
    for h in (first, *more):
        out.add(h)
    return out


@dataclass(frozen=True, slots=True)
class ProducerMetrics:
    """What a producer did over ``interval_seconds``.

    ``a + b`` adds counts and distributions and the intervals (for consecutive snapshots of one
    producer; to total several producers over the same period, add and read the counts).

    Counts: ``user_records_put`` delivered, ``user_records_failed`` failed for good (expired,
    rejected, closed), ``user_records_dropped`` refused by a full backlog (``Drop``),
    ``kinesis_records_put`` Kinesis records written (an aggregate counts once),
    ``put_records_calls`` requests made, ``throttled`` per-record throttle answers,
    ``retries`` user records sent again, ``user_bytes_put`` data bytes delivered.
    Distributions: ``attempts`` (sends per delivered record), ``latency_ms`` (put() to result),
    ``record_size`` (user record data bytes), ``batch_size`` (Kinesis records per request).
    """

    interval_seconds: float = 0.0
    user_records_put: int = 0
    user_records_failed: int = 0
    user_records_dropped: int = 0
    kinesis_records_put: int = 0
    put_records_calls: int = 0
    throttled: int = 0
    retries: int = 0
    user_bytes_put: int = 0
    attempts: HdrHistogram = field(default_factory=count_histogram, compare=False)
    latency_ms: HdrHistogram = field(default_factory=latency_histogram, compare=False)
    record_size: HdrHistogram = field(default_factory=size_histogram, compare=False)
    batch_size: HdrHistogram = field(default_factory=count_histogram, compare=False)

    @property
    def user_records_per_second(self) -> float:
        return self.user_records_put / self.interval_seconds if self.interval_seconds else 0.0

    @property
    def user_bytes_per_second(self) -> float:
        return self.user_bytes_put / self.interval_seconds if self.interval_seconds else 0.0

    def latency_percentile(self, percentile: float) -> float:
        """Latency in milliseconds at ``percentile`` (0–100); 0 when nothing was delivered."""
        return float(self.latency_ms.get_value_at_percentile(percentile))

    def __add__(self, other: ProducerMetrics) -> ProducerMetrics:
        if not isinstance(other, ProducerMetrics):
            return NotImplemented
        return ProducerMetrics(
            interval_seconds=self.interval_seconds + other.interval_seconds,
            user_records_put=self.user_records_put + other.user_records_put,
            user_records_failed=self.user_records_failed + other.user_records_failed,
            user_records_dropped=self.user_records_dropped + other.user_records_dropped,
            kinesis_records_put=self.kinesis_records_put + other.kinesis_records_put,
            put_records_calls=self.put_records_calls + other.put_records_calls,
            throttled=self.throttled + other.throttled,
            retries=self.retries + other.retries,
            user_bytes_put=self.user_bytes_put + other.user_bytes_put,
            attempts=_merged(self.attempts, other.attempts),
            latency_ms=_merged(self.latency_ms, other.latency_ms),
            record_size=_merged(self.record_size, other.record_size),
            batch_size=_merged(self.batch_size, other.batch_size),
        )

    def summary(self) -> dict[str, float]:
        """The figures as a flat dict (for logs and dashboards)."""
        return {
            "interval_seconds": self.interval_seconds,
            "user_records_put": self.user_records_put,
            "user_records_failed": self.user_records_failed,
            "user_records_dropped": self.user_records_dropped,
            "kinesis_records_put": self.kinesis_records_put,
            "put_records_calls": self.put_records_calls,
            "throttled": self.throttled,
            "retries": self.retries,
            "user_records_per_second": self.user_records_per_second,
            "latency_ms_p50": self.latency_percentile(50),
            "latency_ms_p99": self.latency_percentile(99),
            "attempts_max": float(self.attempts.get_max_value()),
        }


class ProducerMetricsRecorder:
    """The mutable counters behind :class:`ProducerMetrics` (one per producer).

    The per-record distributions are counted in plain dicts (``value -> count``) on the hot
    path and folded into their HDR histograms at each snapshot: the same exact counts, without
    an HDR ``record_value`` (about 1.5 µs) per user record.
    """

    __slots__ = (
        "attempts",
        "attempts_counts",
        "batch_size",
        "kinesis_records_put",
        "latency_counts",
        "latency_ms",
        "put_records_calls",
        "record_size",
        "record_size_counts",
        "retries",
        "started",
        "throttled",
        "user_bytes_put",
        "user_records_dropped",
        "user_records_failed",
        "user_records_put",
    )

    def __init__(self, started: float) -> None:
        self.started = started
        self.user_records_put = 0
        self.user_records_failed = 0
        self.user_records_dropped = 0
        self.kinesis_records_put = 0
        self.put_records_calls = 0
        self.throttled = 0
        self.retries = 0
        self.user_bytes_put = 0
        self.attempts = count_histogram()
        self.latency_ms = latency_histogram()
        self.record_size = size_histogram()
        self.batch_size = count_histogram()
        self.attempts_counts: dict[int, int] = {}
        self.latency_counts: dict[int, int] = {}
        self.record_size_counts: dict[int, int] = {}

    def _fold(self) -> None:
        for counts, histogram in (
            (self.attempts_counts, self.attempts),
            (self.latency_counts, self.latency_ms),
            (self.record_size_counts, self.record_size),
        ):
            if counts:
                record = histogram.record_value
                for value, count in counts.items():
                    record(value, count)
                counts.clear()

    def snapshot(self, now: float) -> ProducerMetrics:
        self._fold()
        return ProducerMetrics(
            interval_seconds=max(0.0, now - self.started),
            user_records_put=self.user_records_put,
            user_records_failed=self.user_records_failed,
            user_records_dropped=self.user_records_dropped,
            kinesis_records_put=self.kinesis_records_put,
            put_records_calls=self.put_records_calls,
            throttled=self.throttled,
            retries=self.retries,
            user_bytes_put=self.user_bytes_put,
            attempts=_merged(self.attempts),
            latency_ms=_merged(self.latency_ms),
            record_size=_merged(self.record_size),
            batch_size=_merged(self.batch_size),
        )
