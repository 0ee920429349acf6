"""Settings: frozen dataclasses validated at construction. Seconds are floats; sizes are bytes.

Defaults are the KPL's (producer) and the KCL's (consumer) unless a benchmark in
``benchmarks/RESULTS.md`` showed a better one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import ClassVar

from kinesio._errors import ConfigurationError

MiB = 1024 * 1024

#: Kinesis service limits (SPEC §1).
PUT_RECORDS_MAX_RECORDS = 500
PUT_RECORDS_MAX_BYTES = 10 * MiB
SHARD_WRITE_RECORDS_PER_SECOND = 1000
SHARD_WRITE_BYTES_PER_SECOND = 1 * MiB
DEFAULT_MAX_RECORD_SIZE = 1 * MiB
MAX_RECORD_SIZE_LIMIT = 10 * MiB


@dataclass(frozen=True, slots=True)
class Block:
    """Overflow policy: ``put()`` waits for room in the backlog.

    ``timeout`` (seconds) bounds the wait; past it ``put()`` raises ``BacklogFullError``.
    """

    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout < 0:
            raise ConfigurationError("Block.timeout must be >= 0 seconds or None")


@dataclass(frozen=True, slots=True)
class Drop:
    """Overflow policy: ``put()`` returns a future already failed with ``BacklogFullError``.

    The record is counted in ``ProducerMetrics.user_records_dropped`` and reported to
    ``on_error``; ``put()`` itself does not raise.
    """


@dataclass(frozen=True, slots=True)
class Raise:
    """Overflow policy: ``put()`` raises ``BacklogFullError`` at once; nothing is accepted."""


OverflowPolicy = Block | Drop | Raise


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigurationError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class AutoSplit:
    """Hot-shard auto-split: the producer splits the shard it sees most over its limit. Opt-in.

    Every ``window`` seconds the producer closes a window of its own per-shard counts (Kinesis
    records it had throttled, user records its own rate limiter was holding back when the
    window closed, user records and Kinesis bytes it put) and of the hash keys it wrote to each
    shard (a fixed histogram of ``histogram_buckets`` buckets over the shard's range). When the
    stream-wide pressure — throttled plus held-back records — reached ``throttle_threshold`` in
    each of the last ``consecutive_windows`` windows, it splits the shard with the most
    pressure over those windows at the median of the hash keys it wrote there (not the middle
    of the range, which may hold no traffic at all), waits until the stream is ACTIVE again
    (at most ``active_timeout`` seconds) and reloads its shard map. One split at a time; none
    for ``cooldown`` seconds after a split ended, successfully or not. A failed split
    (``LimitExceededException``, ``ResourceInUseException``, access denied, ...) is a
    :class:`kinesio.events.AutoSplitFailed` event and a warning; the producer and its records
    are unaffected. Each decision is a DiagnosticEvent (``kinesio.events``, ``# auto-split``).

    Held-back records count because the per-shard limiter (``rate_limit`` 100 %) keeps a lone
    producer's throttles rare: asked for more than a shard takes, it queues rather than being
    throttled. A record is held back when its shard's limiter cannot admit the shard's whole
    queue within ``linger``; below the limit the queue drains within ``linger`` and counts 0.

    Defaults: one-minute windows and three in a row, so a burst the per-shard limiter rides
    out does not reshard a stream (resharding is slow, costs a shard-hour each and leaves a
    parent to drain). 100 records a minute is ~0.2 % of one shard's 60 000-record minute:
    below it retries and queueing absorb the excess at no real cost. The 10-minute cool-down
    leaves time for the new shards to take the load and for Kinesis' own resharding quota
    (UPDATING takes seconds to minutes; SplitShard is limited per stream) before looking again.

    Needs ``kinesis:SplitShard``, ``kinesis:DescribeStreamSummary`` and ``kinesis:ListShards``.
    """

    throttle_threshold: int = 100
    consecutive_windows: int = 3
    window: float = 60.0
    cooldown: float = 600.0
    active_timeout: float = 300.0
    histogram_buckets: int = 64

    def __post_init__(self) -> None:
        for name in ("throttle_threshold", "consecutive_windows", "histogram_buckets"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigurationError(f"AutoSplit.{name} must be an int, got {value!r}")
        for name in ("throttle_threshold", "consecutive_windows", "window", "active_timeout"):
            _positive(f"AutoSplit.{name}", getattr(self, name))
        if self.cooldown < 0:
            raise ConfigurationError(
                f"AutoSplit.cooldown must be >= 0 seconds, got {self.cooldown!r}"
            )
        if not 2 <= self.histogram_buckets <= 4096:
            raise ConfigurationError(
                f"AutoSplit.histogram_buckets must be between 2 and 4096, got "
                f"{self.histogram_buckets!r}"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class ProducerSettings:
    """How the producer batches, limits, retries and buffers. All fields are optional.

    Batching
        ``aggregate`` packs user records bound for one shard into KPL aggregates of at most
        ``max_aggregate_size`` bytes (a lone record is sent raw). A PutRecords request carries at
        most ``max_batch_records`` Kinesis records and ``max_batch_bytes`` bytes; it is sent when
        full or when its oldest record has waited ``linger`` seconds. At most ``max_in_flight``
        requests run at once (None: twice the open shard count, between 4 and 24 — the KPL
        keeps 24 connections).
    Rate limiting
        A token bucket per shard admits ``rate_limit`` × the shard write limits
        (``shard_records_per_second`` Kinesis records and ``shard_bytes_per_second`` bytes per
        second). The KPL's default is 150 %; kinesio's is 100 %: in
        ``benchmarks/bench_shard_utilisation.py`` it reached the same shard utilisation with
        0–1 % of writes throttled, where 150 % had 3–13 % throttled and re-sent. With
        ``adaptive`` the bucket rate halves for a shard that is throttled anyway (another
        producer shares it) and recovers as writes succeed.
    Retries
        A record whose write fails with a retriable error is retried, oldest first, with
        exponential backoff from ``retry_backoff`` up to ``max_retry_backoff`` seconds, until
        ``record_ttl`` seconds after it was put or ``max_attempts`` sends (None: no limit);
        then its future fails with ``RecordExpiredError``.
    Ordering
        ``ordered=True`` keeps records of one partition key in put order even across retries:
        at most one request per shard is in flight and it holds at most one Kinesis record for
        that shard. The cost: each shard's throughput is bounded by one aggregate (or one
        record, without aggregation) per round trip.
    Backlog
        Accepted but unresolved records are bounded by ``max_buffered_records`` and
        ``max_buffered_bytes``; past that ``overflow`` decides (``Block()``, ``Drop()``,
        ``Raise()``).
    Misc
        ``max_record_size`` is the stream's maximum record size (data + partition key; 1 MiB
        unless the stream was created with a larger ``MaxRecordSizeInKiB``).
        ``shard_map_refresh_interval`` seconds between ListShards refreshes (also refreshed at
        once when a record lands on an unexpected shard). ``metrics_interval`` seconds between
        ``on_metrics`` callbacks.
    Hot-shard auto-split
        ``auto_split=AutoSplit(...)`` lets the producer split a shard it keeps seeing throttled
        (see :class:`AutoSplit`; off by default, needs ``kinesis:SplitShard``).
    """

    aggregate: bool = True
    max_aggregate_size: int = 51_200
    max_batch_records: int = PUT_RECORDS_MAX_RECORDS
    max_batch_bytes: int = 5 * MiB
    linger: float = 0.1
    max_in_flight: int | None = None
    rate_limit: float = 1.0
    shard_records_per_second: int = SHARD_WRITE_RECORDS_PER_SECOND
    shard_bytes_per_second: int = SHARD_WRITE_BYTES_PER_SECOND
    adaptive: bool = True
    record_ttl: float = 30.0
    max_attempts: int | None = None
    retry_backoff: float = 0.1
    max_retry_backoff: float = 2.0
    ordered: bool = False
    max_buffered_records: int = 100_000
    max_buffered_bytes: int = 128 * MiB
    overflow: OverflowPolicy = Block()
    max_record_size: int = DEFAULT_MAX_RECORD_SIZE
    shard_map_refresh_interval: float = 60.0
    metrics_interval: float = 60.0
    auto_split: AutoSplit | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_aggregate_size",
            "max_batch_records",
            "max_batch_bytes",
            "rate_limit",
            "shard_records_per_second",
            "shard_bytes_per_second",
            "record_ttl",
            "retry_backoff",
            "max_retry_backoff",
            "max_buffered_records",
            "max_buffered_bytes",
            "max_record_size",
            "shard_map_refresh_interval",
            "metrics_interval",
        ):
            _positive(name, getattr(self, name))
        if self.linger < 0:
            raise ConfigurationError(f"linger must be >= 0 seconds, got {self.linger!r}")
        if self.max_batch_records > PUT_RECORDS_MAX_RECORDS:
            raise ConfigurationError(
                f"max_batch_records {self.max_batch_records} exceeds the PutRecords limit "
                f"of {PUT_RECORDS_MAX_RECORDS}"
            )
        if self.max_batch_bytes > PUT_RECORDS_MAX_BYTES:
            raise ConfigurationError(
                f"max_batch_bytes {self.max_batch_bytes} exceeds the PutRecords limit of "
                f"{PUT_RECORDS_MAX_BYTES} bytes"
            )
        if self.max_record_size > MAX_RECORD_SIZE_LIMIT:
            raise ConfigurationError(
                f"max_record_size {self.max_record_size} exceeds Kinesis' maximum of "
                f"{MAX_RECORD_SIZE_LIMIT} bytes"
            )
        if self.max_aggregate_size > self.max_record_size:
            raise ConfigurationError(
                f"max_aggregate_size {self.max_aggregate_size} cannot exceed max_record_size "
                f"{self.max_record_size}: an aggregate is one Kinesis record"
            )
        if self.max_batch_bytes < self.max_record_size:
            raise ConfigurationError(
                f"max_batch_bytes {self.max_batch_bytes} is smaller than max_record_size "
                f"{self.max_record_size}: a maximum-size record could never be sent"
            )
        if self.max_buffered_bytes < self.max_record_size:
            raise ConfigurationError(
                f"max_buffered_bytes {self.max_buffered_bytes} is smaller than max_record_size "
                f"{self.max_record_size}: a maximum-size record could never be accepted"
            )
        if self.max_retry_backoff < self.retry_backoff:
            raise ConfigurationError("max_retry_backoff must be >= retry_backoff")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be >= 1 or None")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ConfigurationError("max_in_flight must be >= 1 or None")
        if not isinstance(self.overflow, Block | Drop | Raise):
            raise ConfigurationError(
                f"overflow must be Block(), Drop() or Raise(), got {self.overflow!r}"
            )
        if self.auto_split is not None and not isinstance(self.auto_split, AutoSplit):
            raise ConfigurationError(
                f"auto_split must be AutoSplit(...) or None, got {self.auto_split!r}"
            )


# -- consumer -------------------------------------------------------------------------------


#: How far in the future an AT_TIMESTAMP position may lie (clock skew between hosts).
AT_TIMESTAMP_FUTURE_TOLERANCE = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class InitialPosition:
    """Where a consumer starts on a shard that has no checkpoint yet.

    ``InitialPosition.TRIM_HORIZON`` (the oldest record kept), ``InitialPosition.LATEST`` (only
    records written from now on; the KCL's default) or ``InitialPosition.at_timestamp(dt)``.
    """

    kind: str
    timestamp: dt.datetime | None = None

    TRIM_HORIZON: ClassVar[InitialPosition]
    LATEST: ClassVar[InitialPosition]

    def __post_init__(self) -> None:
        if self.kind not in ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"):
            raise ConfigurationError(f"unknown initial position {self.kind!r}")
        if (self.kind == "AT_TIMESTAMP") != (self.timestamp is not None):
            raise ConfigurationError("AT_TIMESTAMP needs a timestamp; the others take none")
        if self.timestamp is not None:
            if self.timestamp.tzinfo is None:
                raise ConfigurationError("the AT_TIMESTAMP timestamp must be timezone-aware")
            # Checked when the position is made, however it is made: a reader started there
            # would wait for records that do not exist yet, with no sign of why.
            if self.timestamp > dt.datetime.now(dt.UTC) + AT_TIMESTAMP_FUTURE_TOLERANCE:
                raise ConfigurationError(
                    f"AT_TIMESTAMP {self.timestamp.isoformat()} is in the future; no record "
                    "can match (use LATEST to read only new records)"
                )

    @classmethod
    def at_timestamp(cls, timestamp: dt.datetime) -> InitialPosition:
        """Start at the first record that arrived at or after ``timestamp`` (timezone-aware).

        Raises ``ConfigurationError`` for a naive timestamp, or one more than
        ``AT_TIMESTAMP_FUTURE_TOLERANCE`` (5 minutes, for clock skew) in the future.
        """
        return cls("AT_TIMESTAMP", timestamp)


InitialPosition.TRIM_HORIZON = InitialPosition("TRIM_HORIZON")
InitialPosition.LATEST = InitialPosition("LATEST")


@dataclass(frozen=True, kw_only=True, slots=True)
class Polling:
    """Fetch with GetRecords (shared throughput: 2 MiB/s and 5 calls/s per shard, all readers).

    ``max_records`` per call (≤ 10 000). After a call that found the consumer caught up it waits
    ``idle_time`` seconds; while behind it calls again after ``catch_up_interval`` seconds.
    The 1.0 s default leaves room for five consumer applications on one stream within the
    5 calls/s/shard limit, at ≤ 1 s added latency; a throttled call backs off exponentially.
    """

    max_records: int = 10_000
    idle_time: float = 1.0
    catch_up_interval: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.max_records <= 10_000:
            raise ConfigurationError("Polling.max_records must be between 1 and 10 000")
        if self.idle_time < 0 or self.catch_up_interval < 0:
            raise ConfigurationError("Polling intervals must be >= 0 seconds")


@dataclass(frozen=True, kw_only=True, slots=True)
class FanOut:
    """Enhanced fan-out: a dedicated 2 MiB/s per shard pushed over SubscribeToShard.

    ``consumer_name`` is the registered stream consumer (registered if missing; registration
    takes seconds). Subscriptions are renewed every 5 minutes from the continuation sequence
    number.
    """

    consumer_name: str

    def __post_init__(self) -> None:
        if not self.consumer_name:
            raise ConfigurationError("FanOut.consumer_name must be non-empty")


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsumerSettings:
    """How the consumer leases shards, fetches and checkpoints. Seconds are floats.

    Leases (KCL 2.x defaults)
        A lease whose counter has not moved for ``failover_time`` (measured on this worker's
        monotonic clock) is expired and may be taken. Held leases are renewed every
        ``renew_interval`` (default failover/3). The table is watched (an eventually
        consistent scan) every ``watch_interval`` — by default ``min(1 s, failover/3)``,
        growing with the fleet as ``workers × failover / 60`` so that its reads stay below its
        renewal writes — and free leases are taken at once, expired ones at their deadline
        (first sight of the counter + ``failover_time``), up to the fair share: a dead worker's
        shards are read again about ``failover_time`` after its last renewal. Leases of live
        workers are stolen only in the slower round every ``take_interval`` (default
        2 × failover, a strongly consistent scan, as the KCL's taker). ``max_leases`` caps the
        leases one worker holds; ``max_leases_to_steal`` caps steals per round.
        ``shard_sync_interval`` is how often new shards are looked for.
    Hand-off
        With ``graceful_handoff`` (default on, KCL 3.x's graceful lease hand-off) a stolen
        lease names its previous owner in ``checkpointOwner``: that worker notices at its next
        renewal, finishes the batch in hand, checkpoints and lets go, and only then does the
        new owner start reading, from that checkpoint — no record is processed twice. The new
        owner waits at most ``handoff_timeout`` seconds (KCL 3 default 30), then resumes at the
        last checkpoint written. A Java KCL 2.x worker ignores ``checkpointOwner``: in a fleet
        that mixes them, leases stolen from 2.x workers wait the whole timeout, so turn it off
        there.
    Fetching
        ``retrieval`` is ``Polling()`` (default) or ``FanOut(consumer_name=...)``. Each shard
        prefetches at most ``max_prefetch_records`` records and ``max_prefetch_bytes`` bytes
        ahead of the handler; a slow handler slows fetching.
    Starting
        ``initial_position`` applies to shards without a checkpoint (KCL default: LATEST).
    Table
        ``lease_table_name`` defaults to the application name; ``create_lease_table`` creates
        it (PAY_PER_REQUEST) when missing.
    """

    failover_time: float = 10.0
    renew_interval: float | None = None
    take_interval: float | None = None
    watch_interval: float | None = None
    max_leases: int | None = None
    max_leases_to_steal: int = 1
    shard_sync_interval: float = 60.0
    initial_position: InitialPosition = InitialPosition.LATEST
    retrieval: Polling | FanOut = Polling()
    max_prefetch_records: int = 10_000
    max_prefetch_bytes: int = 64 * MiB
    worker_id: str | None = None
    lease_table_name: str | None = None
    create_lease_table: bool = True
    shutdown_timeout: float = 30.0
    graceful_handoff: bool = True
    handoff_timeout: float = 30.0

    def __post_init__(self) -> None:
        _positive("failover_time", self.failover_time)
        _positive("shard_sync_interval", self.shard_sync_interval)
        _positive("max_prefetch_records", self.max_prefetch_records)
        _positive("max_prefetch_bytes", self.max_prefetch_bytes)
        _positive("shutdown_timeout", self.shutdown_timeout)
        _positive("handoff_timeout", self.handoff_timeout)
        if self.max_leases_to_steal < 0:
            raise ConfigurationError("max_leases_to_steal must be >= 0")
        if self.max_leases is not None and self.max_leases < 1:
            raise ConfigurationError("max_leases must be >= 1 or None")
        if self.renew_interval is not None and not 0 < self.renew_interval < self.failover_time:
            raise ConfigurationError(
                f"renew_interval {self.renew_interval} must be > 0 and below failover_time "
                f"{self.failover_time}, or leases would expire between renewals"
            )
        if self.take_interval is not None and self.take_interval <= 0:
            raise ConfigurationError("take_interval must be > 0")
        if self.watch_interval is not None and self.watch_interval <= 0:
            raise ConfigurationError("watch_interval must be > 0")
        if not isinstance(self.retrieval, Polling | FanOut):
            raise ConfigurationError("retrieval must be Polling() or FanOut(consumer_name=...)")
        if not isinstance(self.initial_position, InitialPosition):
            raise ConfigurationError("initial_position must be an InitialPosition")

    @property
    def effective_renew_interval(self) -> float:
        return self.renew_interval or self.failover_time / 3

    @property
    def effective_take_interval(self) -> float:
        return self.take_interval or self.failover_time * 2

    @property
    def effective_watch_interval(self) -> float:
        """The shortest interval between watch scans (it grows with the fleet)."""
        return self.watch_interval or min(1.0, self.failover_time / 3)
