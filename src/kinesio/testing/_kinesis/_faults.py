"""Faults to inject into :class:`~kinesio.testing.InMemoryKinesis` calls."""

from __future__ import annotations

import random
from dataclasses import dataclass

from kinesio._errors import ConfigurationError

#: ``Fault.error_code`` that makes a call fail as if the endpoint could not be reached.
CONNECTION_ERROR = "ConnectionError"
PER_RECORD_MESSAGES = {"InternalFailure": "Internal service failure."}


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure to inject into :class:`InMemoryKinesis` calls (see :meth:`InMemoryKinesis.inject`).

    ``operation`` is an AWS API name (``"PutRecords"``, ``"GetRecords"``, ``"GetShardIterator"``,
    ``"ListShards"``, ``"SubscribeToShard"``, ...) or ``"*"`` for every call. ``error_code`` is an
    AWS error code (``"InternalFailure"``, ``"ServiceUnavailable"``,
    ``"ProvisionedThroughputExceededException"``, ``"ExpiredIteratorException"``, ...): the call
    raises the kinesio error :class:`kinesio._aws.AioKinesis` raises for that code;
    :data:`CONNECTION_ERROR` (``"ConnectionError"``) raises
    :class:`kinesio.EndpointConnectionError`; ``None`` only adds latency.

    ``per_record`` (PutRecords only) fails individual entries with ``error_code`` instead of
    the whole call; each entry draws its own chance. ``probability`` is the chance (0..1) that a
    matching call (or entry) is hit, drawn from the fake's seeded random generator.
    ``count`` is how many times the fault fires before it is spent (``None``: forever).
    ``latency`` is the time in seconds (real time, ``asyncio.sleep``) added before the call
    answers when the fault fires. ``response_lost`` makes the call take effect first and then
    raise, as when a response is lost on the way back (the records are stored, the caller sees
    an error and may send them again).
    """

    operation: str
    error_code: str | None = None
    per_record: bool = False
    probability: float = 1.0
    count: int | None = None
    latency: float = 0.0
    response_lost: bool = False
    message: str = "injected fault"

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ConfigurationError(f"Fault.probability must be in [0, 1], not {self.probability}")
        if self.count is not None and self.count < 0:
            raise ConfigurationError(f"Fault.count must be >= 0 or None, not {self.count}")
        if self.latency < 0:
            raise ConfigurationError(f"Fault.latency must be >= 0 seconds, not {self.latency}")
        if self.per_record:
            if self.operation not in ("PutRecords", "*"):
                raise ConfigurationError("per_record faults only apply to PutRecords")
            if self.error_code is None:
                raise ConfigurationError("a per_record fault needs an error_code")
            if self.response_lost:
                raise ConfigurationError("per_record and response_lost exclude each other")
        if self.response_lost and self.error_code is None:
            raise ConfigurationError("a response_lost fault needs an error_code")

    def matches(self, operation: str) -> bool:
        """Whether this fault applies to calls of ``operation`` (an AWS API name)."""
        return self.operation in ("*", operation)


@dataclass(eq=False)
class ArmedFault:
    """An injected fault and how many more times it may fire (``None``: forever)."""

    fault: Fault
    remaining: int | None

    def fires(self, operation: str, rng: random.Random, *, per_record: bool) -> bool:
        """Whether this fault hits one call (``per_record`` False) or one PutRecords entry
        (True) of ``operation``: it is of that kind, applies, is not spent and wins its draw
        from ``rng`` (drawn only then). A hit uses up one of its ``count``."""
        fault = self.fault
        if fault.per_record != per_record or not fault.matches(operation) or self.remaining == 0:
            return False
        if fault.probability < 1.0 and rng.random() >= fault.probability:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True
