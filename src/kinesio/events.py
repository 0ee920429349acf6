"""Diagnostic events: what the producer and the consumer are doing, step by step.

Pass ``on_event=callback`` to :class:`kinesio.AsyncProducer` / :class:`kinesio.AsyncConsumer`
(or their blocking facades) to receive each event; every event is also logged at DEBUG on the
``kinesio.events`` logger, through the same path. A callback must be quick and must not block:
it runs on the event loop. An exception it raises is logged and does not stop kinesio.

Every event names the stream it concerns (``stream_name``, filled in by the producer or
consumer that emits it), so that one callback — e.g.
:class:`kinesio.metrics.prometheus.PrometheusMetrics` or
:class:`kinesio.metrics.cloudwatch.CloudWatchMetrics` — can serve several producers and
consumers; :func:`broadcast` passes each event to several callbacks.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger("kinesio.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class DiagnosticEvent:
    """Base of every event. ``at`` is the wall-clock time (``time.time()``) it happened;
    ``stream_name`` the stream of the producer or consumer that emitted it (set by the
    :class:`Emitter` when the event is built without one)."""

    at: float = field(default_factory=time.time)
    stream_name: str = ""


# -- leases --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseAcquired(DiagnosticEvent):
    """This worker took a lease: unowned or expired (``stolen`` False) or from a live worker.

    ``lease_counter`` is the counter the take wrote (the fencing token this worker now holds).
    """

    lease_key: str
    previous_owner: str | None
    stolen: bool
    lease_counter: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseRenewed(DiagnosticEvent):
    lease_key: str
    lease_counter: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseLostEvent(DiagnosticEvent):
    """This worker no longer holds the lease (another took it, or it could not be renewed)."""

    lease_key: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseHandedOff(DiagnosticEvent):
    """This worker let go of a lease another worker stole for a graceful hand-off, after its
    last checkpoint (``sequence_number`` / ``sub_sequence_number``, where the new owner
    ``to`` resumes). That write clears ``checkpointOwner`` and, unlike a checkpoint, leaves
    the lease counter to the new owner. A :class:`LeaseLostEvent` follows."""

    lease_key: str
    to: str | None
    sequence_number: str
    sub_sequence_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseReleased(DiagnosticEvent):
    """This worker gave the lease up (graceful shutdown, or its shard ended)."""

    lease_key: str


# -- shards --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardBlockedOnParent(DiagnosticEvent):
    """A leased shard waits until its parents have been read to their end."""

    shard_id: str
    parents: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardStarted(DiagnosticEvent):
    """Records of a leased shard are being fetched, after ``checkpoint``."""

    shard_id: str
    checkpoint: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardEnded(DiagnosticEvent):
    """A shard was read to its end: its children's leases exist, SHARD_END is checkpointed."""

    shard_id: str
    children: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointWritten(DiagnosticEvent):
    """A checkpoint was written; ``lease_counter`` is the counter the write set (fenced by the
    one before it, which this worker held)."""

    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    lease_counter: int


# -- producer ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttled(DiagnosticEvent):
    """Kinesis throttled a call for shard ``shard_id``.

    ``operation`` ``"PutRecords"`` (producer): ``records`` Kinesis records of that shard were
    throttled in one request. ``"GetRecords"``, ``"GetShardIterator"`` or
    ``"SubscribeToShard"`` (consumer): the whole call was refused, ``records`` is 0; the
    fetcher retries after a backoff.
    """

    operation: str
    shard_id: str
    records: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordFailed(DiagnosticEvent):
    """A user record failed for good (its future holds the error; ``on_error`` was called).

    ``error`` is the error's message, ``error_type`` its class name (``RecordExpiredError``,
    ``BacklogFullError``, ``ProducerClosedError``, ``AccessDeniedError``, ...).
    """

    partition_key: str
    error: str
    error_type: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardMapRefreshed(DiagnosticEvent):
    """The producer re-read the stream's shards (periodically, or after a misrouted record)."""

    open_shards: int


# -- auto-split ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoSplitStarted(DiagnosticEvent):
    """The producer asked Kinesis to split ``shard_id`` (``ProducerSettings.auto_split``).

    ``new_starting_hash_key`` is the estimated median of the hash keys the producer wrote to
    the shard (range ``starting_hash_key``..``ending_hash_key``, inclusive). The tuples hold one
    value per window that led to the decision, oldest first: the whole stream's pressure
    (Kinesis records throttled plus user records held back by the producer's own rate limiter
    as the window closed), and the shard's own throttled Kinesis records, held-back user
    records, user records put and Kinesis bytes put.
    """

    shard_id: str
    new_starting_hash_key: int
    starting_hash_key: int
    ending_hash_key: int
    stream_throttled: tuple[int, ...]
    shard_throttled: tuple[int, ...]
    shard_records: tuple[int, ...]
    shard_bytes: tuple[int, ...]
    shard_held: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoSplitDone(DiagnosticEvent):
    """The split finished: the stream is ACTIVE again and the shard map holds ``children``.

    ``duration`` is the seconds from SplitShard to the refreshed shard map; the cool-down
    starts now.
    """

    shard_id: str
    new_starting_hash_key: int
    children: tuple[str, ...]
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoSplitFailed(DiagnosticEvent):
    """The split failed (``error``: e.g. LimitExceeded, ResourceInUse, access denied).

    No record is affected; the cool-down starts now, then the producer may try again.
    """

    shard_id: str
    new_starting_hash_key: int
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoSplitSkipped(DiagnosticEvent):
    """Pressure was over the threshold long enough, but no split was started.

    ``reason``: ``"in-flight"`` (a split is still running), ``"cool-down"`` (the last one
    ended less than ``AutoSplit.cooldown`` ago), ``"not-open"`` (no throttled shard is open
    in the producer's shard map any more), ``"too-narrow"`` (the hottest shard holds a single
    hash key) or ``"no-keys"`` (no hash key was seen on it). ``shard_id`` is the hottest shard
    when one was chosen; ``stream_throttled`` as in :class:`AutoSplitStarted`.
    """

    reason: str
    shard_id: str | None
    stream_throttled: tuple[int, ...]


# -- PutRecords requests (producer) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stats:
    """Count, sum, minimum and maximum of a set of samples (a CloudWatch statistic set).

    ``Stats()`` is the empty set (every figure 0)."""

    count: int = 0
    total: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardPutStats:
    """What one PutRecords request did for one shard (see :class:`PutRecordsSent`).

    User records: ``user_records_put`` delivered by this request (``user_records_recovered``
    of them after an earlier failed attempt), ``user_bytes_put`` their data bytes,
    ``user_records_failed`` not delivered by it — in Kinesis records it did not write, or,
    after a reshard, in an aggregate that landed on a shard whose range leaves them out — they
    are retried, or fail for good when out of TTL or attempts (see :class:`RecordFailed`).
    Kinesis records (an aggregate counts once): ``kinesis_records_put`` and
    ``kinesis_bytes_put`` written, ``kinesis_records_failed`` not written, ``throttled`` of
    those refused for throughput, ``errors`` the failed ones by AWS error code. Over the
    delivered user records: ``latency_ms`` put() to delivery, ``buffering_ms`` put() to the
    sending of this request (milliseconds), ``retries`` attempts before this one.
    """

    shard_id: str
    user_records_put: int = 0
    user_records_recovered: int = 0
    user_records_failed: int = 0
    user_bytes_put: int = 0
    kinesis_records_put: int = 0
    kinesis_records_failed: int = 0
    kinesis_bytes_put: int = 0
    throttled: int = 0
    errors: tuple[tuple[str, int], ...] = ()
    latency_ms: Stats = Stats()
    buffering_ms: Stats = Stats()
    retries: Stats = Stats()


@dataclass(frozen=True, slots=True, kw_only=True)
class PutRecordsSent(DiagnosticEvent):
    """A PutRecords request was answered, or failed whole (one event per request).

    ``duration_ms``: the call's round trip (milliseconds). ``error``: the AWS error code (or
    error class) when the whole call failed, else None (individual records may still have
    failed: see ``shards``). ``shards``: per shard of the request, what it did.
    Built only when someone listens (an ``on_event`` callback or DEBUG logging on
    ``kinesio.events``), so it costs nothing otherwise.
    """

    duration_ms: float
    error: str | None
    shards: tuple[ShardPutStats, ...]


# -- records fetched and processed (consumer) --------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordsFetched(DiagnosticEvent):
    """A read of one shard came back: a GetRecords call (``operation`` ``"GetRecords"``) or
    one event of an enhanced fan-out subscription (``"SubscribeToShard"``), possibly empty.

    ``kinesis_records``: Kinesis records read (an aggregate counts once); ``records``: user
    records after deaggregation and after dropping what was delivered already; ``bytes``:
    their data bytes; ``millis_behind_latest``: how far the read was behind the shard's
    newest record (milliseconds; None when the service did not say).
    """

    shard_id: str
    operation: str
    kinesis_records: int
    records: int
    bytes: int
    millis_behind_latest: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionRenewed(DiagnosticEvent):
    """An enhanced fan-out fetcher opened a new SubscribeToShard subscription after its
    previous one ended (``reason``: ``"expired"`` after the service's 5 minutes or a close
    by the server, else the error that ended it). ``subscription`` counts the subscriptions
    of this shard by this fetcher, this one included (2 for the first renewal)."""

    shard_id: str
    subscription: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchProcessed(DiagnosticEvent):
    """The handler (``consume_with``, a processor's ``process_records``, or the code
    iterating ``ShardStream.records()``) returned from a batch of one shard: ``records`` user
    records of ``bytes`` data bytes. ``millis_behind_latest`` as fetched with the batch."""

    shard_id: str
    records: int
    bytes: int
    millis_behind_latest: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HandlerRetried(DiagnosticEvent):
    """``consume_with``'s handler raised on a record and will be called with it again
    (``retries`` > 0): ``attempt`` is the attempt that failed (1 for the first), ``error`` its
    message and ``error_type`` its class name."""

    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    attempt: int
    error: str
    error_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordDeadLettered(DiagnosticEvent):
    """A record whose handler still failed after ``attempts`` attempts was handed to the
    ``dead_letter`` hook, which returned: the record counts as processed and is checkpointed
    past."""

    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    attempts: int
    error: str
    error_type: str


EventHook = Callable[[DiagnosticEvent], object]


def broadcast(*hooks: EventHook) -> EventHook:
    """One ``on_event`` callback that passes each event to every hook, in order.

    An exception raised by one hook is logged and does not keep the event from the others.
    """
    chain = tuple(hooks)

    def hook(event: DiagnosticEvent) -> None:
        for h in chain:
            try:
                h(event)
            except Exception:
                logger.exception("on_event callback %r raised for %r", h, event)

    return hook


class Emitter:
    """The one path every event takes: a DEBUG log line, then the user's callback.

    ``stream_name`` is written into every event built without one, so that each event names
    its stream wherever it was built.
    """

    __slots__ = ("_hook", "_stream_name")

    def __init__(self, hook: EventHook | None, *, stream_name: str = "") -> None:
        self._hook = hook
        self._stream_name = stream_name

    @property
    def enabled(self) -> bool:
        """Whether an event would reach anyone (a callback, or DEBUG logging): events that
        cost something to build are built only then."""
        return self._hook is not None or logger.isEnabledFor(logging.DEBUG)

    def emit(self, event: DiagnosticEvent) -> None:
        if self._stream_name and not event.stream_name:
            # Events are frozen for their readers; the emitter is the one place that
            # completes them, before anyone sees them.
            object.__setattr__(event, "stream_name", self._stream_name)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%r", event)
        if self._hook is None:
            return
        try:
            result = self._hook(event)
        except Exception:
            logger.exception("on_event callback raised for %r", event)
            return
        if inspect.iscoroutine(result):
            result.close()
            logger.error("on_event must be a plain function, not a coroutine function")
