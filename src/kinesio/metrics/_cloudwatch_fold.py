"""CloudWatch's metric catalogue, and kinesio's events folded into statistic sets for it."""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from kinesio.events import (
    BatchProcessed,
    CheckpointWritten,
    DiagnosticEvent,
    HandlerRetried,
    LeaseAcquired,
    LeaseLostEvent,
    LeaseReleased,
    PutRecordsSent,
    RecordDeadLettered,
    RecordFailed,
    RecordsFetched,
    Stats,
    Throttled,
)

#: ``"global"``: no dimension; ``"stream"``: also per ``StreamName``; ``"shard"``: also per
#: ``StreamName`` + ``ShardId`` (the KPL's metrics granularity; each level adds metrics).
Granularity = Literal["global", "stream", "shard"]
LEVELS: dict[str, int] = {"global": 0, "stream": 1, "shard": 2}

#: name -> (unit, finest level, origin, what it measures)
METRICS: dict[str, tuple[str, str, str, str]] = {
    "UserRecordsPut": ("Count", "shard", "KPL", "user records delivered"),
    "UserRecordsDataPut": ("Bytes", "shard", "KPL", "data bytes of user records delivered"),
    "KinesisRecordsPut": ("Count", "shard", "KPL", "Kinesis records written"),
    "KinesisRecordsDataPut": ("Bytes", "shard", "KPL", "data bytes of Kinesis records written"),
    "ErrorsByCode": (
        "Count",
        "shard",
        "KPL",
        "Kinesis records not written, with an ErrorCode dimension",
    ),
    "AllErrors": ("Count", "shard", "KPL", "Kinesis records not written, all codes"),
    "RetriesPerRecord": ("Count", "shard", "KPL", "retries of each delivered user record"),
    "BufferingTime": (
        "Milliseconds",
        "shard",
        "KPL",
        "put() to the sending of the request that delivered the record",
    ),
    "RequestTime": ("Milliseconds", "stream", "KPL", "PutRecords round trip"),
    "UserRecordsFailed": ("Count", "stream", "kinesio", "user records that failed for good"),
    "Throttles": (
        "Count",
        "shard",
        "kinesio",
        "throttled Kinesis records (PutRecords) or throttled reads",
    ),
    "RecordsProcessed": ("Count", "shard", "KCL", "user records the handler returned from"),
    "DataBytesProcessed": ("Bytes", "shard", "KCL", "their data bytes"),
    "HandlerRetries": ("Count", "shard", "kinesio", "handler calls that raised and were retried"),
    "RecordsDeadLettered": ("Count", "shard", "kinesio", "records handed to dead_letter"),
    "MillisBehindLatest": ("Milliseconds", "shard", "KCL", "how far behind each read was"),
    "CurrentLeases": ("Count", "stream", "KCL", "leases held, sampled at each flush"),
    "TakenLeases": ("Count", "stream", "KCL", "leases taken (including stolen)"),
    "LostLeases": ("Count", "stream", "KCL", "leases lost to another worker"),
    "Checkpoints": ("Count", "shard", "kinesio", "checkpoints written"),
}

Dimensions = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _Agg:
    unit: str
    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, count: int, total: float, minimum: float, maximum: float) -> None:
        self.count += count
        self.total += total
        self.minimum = min(self.minimum, minimum)
        self.maximum = max(self.maximum, maximum)


class EventFold:
    """One statistic set per (namespace, metric name, dimension set), fed by events.

    Events may arrive from several event loops (blocking facades run their own): the
    aggregates are guarded by a thread lock, held only to add or to swap them out.
    """

    def __init__(self, namespace: str | None, granularity: Granularity, extra: Dimensions) -> None:
        self._namespace = namespace
        self._level = LEVELS[granularity]
        self._extra = extra
        self._lock = threading.Lock()
        self._aggs: dict[tuple[str, str, Dimensions], _Agg] = {}
        self._held: dict[tuple[str, str], set[str]] = defaultdict(set)

    def __call__(self, event: DiagnosticEvent) -> None:
        with self._lock:
            self._record(event)

    def take(self) -> list[tuple[tuple[str, str, Dimensions], _Agg]]:
        """The interval's aggregates, then the leases-held gauges sampled now; starts anew."""
        with self._lock:
            aggs, self._aggs = self._aggs, {}
            for (ns, stream), held in self._held.items():
                self._sample(ns, "CurrentLeases", stream, None, len(held))
            gauges, self._aggs = self._aggs, {}
        return [*aggs.items(), *gauges.items()]

    def _record(self, event: DiagnosticEvent) -> None:
        ns = self._namespace or event.stream_name or "kinesio"
        stream = event.stream_name
        match event:
            case PutRecordsSent():
                self._sample(ns, "RequestTime", stream, None, event.duration_ms)
                for s in event.shards:
                    shard = s.shard_id
                    self._sample(ns, "UserRecordsPut", stream, shard, s.user_records_put)
                    self._sample(ns, "UserRecordsDataPut", stream, shard, s.user_bytes_put)
                    self._sample(ns, "KinesisRecordsPut", stream, shard, s.kinesis_records_put)
                    self._sample(ns, "KinesisRecordsDataPut", stream, shard, s.kinesis_bytes_put)
                    if s.errors:
                        for code, n in s.errors:
                            self._sample(
                                ns, "ErrorsByCode", stream, shard, n, (("ErrorCode", code),)
                            )
                        self._sample(ns, "AllErrors", stream, shard, s.kinesis_records_failed)
                    self._stats(ns, "RetriesPerRecord", stream, shard, s.retries)
                    self._stats(ns, "BufferingTime", stream, shard, s.buffering_ms)
            case RecordFailed():
                self._sample(ns, "UserRecordsFailed", stream, None, 1)
            case Throttled():
                self._sample(ns, "Throttles", stream, event.shard_id, max(1, event.records))
            case RecordsFetched():
                if event.millis_behind_latest is not None:
                    self._sample(
                        ns, "MillisBehindLatest", stream, event.shard_id, event.millis_behind_latest
                    )
            case BatchProcessed():
                self._sample(ns, "RecordsProcessed", stream, event.shard_id, event.records)
                self._sample(ns, "DataBytesProcessed", stream, event.shard_id, event.bytes)
            case HandlerRetried():
                self._sample(ns, "HandlerRetries", stream, event.shard_id, 1)
            case RecordDeadLettered():
                self._sample(ns, "RecordsDeadLettered", stream, event.shard_id, 1)
            case LeaseAcquired():
                self._held[(ns, stream)].add(event.lease_key)
                self._sample(ns, "TakenLeases", stream, None, 1)
            case LeaseLostEvent():
                self._held[(ns, stream)].discard(event.lease_key)
                self._sample(ns, "LostLeases", stream, None, 1)
            case LeaseReleased():
                self._held[(ns, stream)].discard(event.lease_key)
            case CheckpointWritten():
                self._sample(ns, "Checkpoints", stream, event.shard_id, 1)
            case _:
                pass  # events without a CloudWatch metric

    def _sample(
        self,
        namespace: str,
        name: str,
        stream: str,
        shard: str | None,
        value: float,
        extra: Dimensions = (),
    ) -> None:
        self._add(namespace, name, stream, shard, 1, value, value, value, extra)

    def _stats(self, namespace: str, name: str, stream: str, shard: str, stats: Stats) -> None:
        if stats.count:
            self._add(
                namespace,
                name,
                stream,
                shard,
                stats.count,
                stats.total,
                stats.minimum,
                stats.maximum,
            )

    def _add(
        self,
        namespace: str,
        name: str,
        stream: str,
        shard: str | None,
        count: int,
        total: float,
        minimum: float,
        maximum: float,
        extra: Dimensions = (),
    ) -> None:
        unit = METRICS[name][0]
        for dims in self._dimension_sets(stream, shard):
            key = (namespace, name, dims + extra + self._extra)
            agg = self._aggs.get(key)
            if agg is None:
                agg = self._aggs[key] = _Agg(unit)
            agg.add(count, total, minimum, maximum)

    def _dimension_sets(self, stream: str, shard: str | None) -> Iterable[Dimensions]:
        yield ()
        if self._level >= 1 and stream:
            yield (("StreamName", stream),)
            if self._level >= 2 and shard is not None:
                yield (("StreamName", stream), ("ShardId", shard))
