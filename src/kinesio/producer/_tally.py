"""Per-request tallies for :class:`kinesio.events.PutRecordsSent`, kept only while someone
listens to events, so that the send path pays nothing otherwise."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

from kinesio.events import ShardPutStats, Stats

if TYPE_CHECKING:
    from kinesio.producer._pending import _Pending


class Spread:
    """count / sum / min / max of samples, accumulated (see :class:`kinesio.events.Stats`)."""

    __slots__ = ("count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value

    def freeze(self) -> Stats:
        if not self.count:
            return Stats()
        return Stats(self.count, self.total, self.minimum, self.maximum)


class Tally:
    """One shard's part of one PutRecords request."""

    __slots__ = (
        "buffering_ms",
        "errors",
        "kinesis_bytes_put",
        "kinesis_records_failed",
        "kinesis_records_put",
        "latency_ms",
        "retries",
        "shard_id",
        "throttled",
        "user_bytes_put",
        "user_records_failed",
        "user_records_put",
        "user_records_recovered",
    )

    def __init__(self, shard_id: str) -> None:
        self.shard_id = shard_id
        self.user_records_put = 0
        self.user_records_recovered = 0
        self.user_records_failed = 0
        self.user_bytes_put = 0
        self.kinesis_records_put = 0
        self.kinesis_records_failed = 0
        self.kinesis_bytes_put = 0
        self.throttled = 0
        self.errors: Counter[str] = Counter()
        self.latency_ms = Spread()
        self.buffering_ms = Spread()
        self.retries = Spread()

    def delivered(self, p: _Pending, sent: float, now: float) -> None:
        self.user_records_put += 1
        if p.attempts > 1:
            self.user_records_recovered += 1
        self.user_bytes_put += len(p.data)
        self.latency_ms.add((now - p.created) * 1000.0)
        self.buffering_ms.add(max(0.0, sent - p.created) * 1000.0)
        self.retries.add(max(0, p.attempts - 1))

    def failed(self, users: int, code: str, throttle: bool) -> None:
        self.kinesis_records_failed += 1
        self.user_records_failed += users
        self.errors[code] += 1
        if throttle:
            self.throttled += 1

    def freeze(self) -> ShardPutStats:
        return ShardPutStats(
            shard_id=self.shard_id,
            user_records_put=self.user_records_put,
            user_records_recovered=self.user_records_recovered,
            user_records_failed=self.user_records_failed,
            user_bytes_put=self.user_bytes_put,
            kinesis_records_put=self.kinesis_records_put,
            kinesis_records_failed=self.kinesis_records_failed,
            kinesis_bytes_put=self.kinesis_bytes_put,
            throttled=self.throttled,
            errors=tuple(sorted(self.errors.items())),
            latency_ms=self.latency_ms.freeze(),
            buffering_ms=self.buffering_ms.freeze(),
            retries=self.retries.freeze(),
        )


def tally_of(tallies: dict[str, Tally], shard_id: str) -> Tally:
    t = tallies.get(shard_id)
    if t is None:
        t = tallies[shard_id] = Tally(shard_id)
    return t
