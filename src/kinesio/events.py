"""Diagnostic events: what the producer and the consumer are doing, step by step.

Pass ``on_event=callback`` to :class:`kinesio.AsyncProducer` / :class:`kinesio.AsyncConsumer`
(or their blocking facades) to receive each event; every event is also logged at DEBUG on the
``kinesio.events`` logger, through the same path. A callback must be quick and must not block:
it runs on the event loop. An exception it raises is logged and does not stop kinesio.
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
    """Base of every event. ``at`` is the wall-clock time (``time.time()``) it happened."""

    at: float = field(default_factory=time.time)


# -- leases --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseAcquired(DiagnosticEvent):
    """This worker took a lease: unowned or expired (``stolen`` False) or from a live worker."""

    lease_key: str
    previous_owner: str | None
    stolen: bool


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
    shard_id: str
    sequence_number: str
    sub_sequence_number: int


# -- producer ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttled(DiagnosticEvent):
    """Kinesis throttled ``records`` Kinesis records of one shard in one request."""

    operation: str
    shard_id: str
    records: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordFailed(DiagnosticEvent):
    """A user record failed for good (its future holds the error; ``on_error`` was called)."""

    partition_key: str
    error: str


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
    value per window that led to the decision, oldest first: Kinesis records throttled on the
    whole stream, and the shard's own throttled Kinesis records, user records put and Kinesis
    bytes put.
    """

    shard_id: str
    new_starting_hash_key: int
    starting_hash_key: int
    ending_hash_key: int
    stream_throttled: tuple[int, ...]
    shard_throttled: tuple[int, ...]
    shard_records: tuple[int, ...]
    shard_bytes: tuple[int, ...]


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
    """Throttles were over the threshold long enough, but no split was started.

    ``reason``: ``"in-flight"`` (a split is still running), ``"cool-down"`` (the last one
    ended less than ``AutoSplit.cooldown`` ago), ``"not-open"`` (no throttled shard is open
    in the producer's shard map any more), ``"too-narrow"`` (the hottest shard holds a single
    hash key) or ``"no-keys"`` (no hash key was seen on it). ``shard_id`` is the hottest shard
    when one was chosen; ``stream_throttled`` as in :class:`AutoSplitStarted`.
    """

    reason: str
    shard_id: str | None
    stream_throttled: tuple[int, ...]


EventHook = Callable[[DiagnosticEvent], object]


class Emitter:
    """The one path every event takes: a DEBUG log line, then the user's callback."""

    __slots__ = ("_hook",)

    def __init__(self, hook: EventHook | None) -> None:
        self._hook = hook

    def emit(self, event: DiagnosticEvent) -> None:
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
