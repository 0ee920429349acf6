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
