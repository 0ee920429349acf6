"""Prometheus metrics for producers and consumers, labelled by stream and shard.

Needs the ``prometheus`` extra (``pip install 'kinesio[prometheus]'``). Build one
:class:`PrometheusMetrics`, pass it as ``on_event=`` to every producer and consumer of the
process, and either let your own ``/metrics`` endpoint serve its registry or start one with
:meth:`PrometheusMetrics.serve`::

    metrics = PrometheusMetrics()                  # registers into prometheus_client.REGISTRY
    server = metrics.serve(9464)                   # http://127.0.0.1:9464/metrics
    async with AsyncProducer("orders", on_event=metrics) as producer: ...

Everything is built from :mod:`kinesio.events`; the metric names are listed in
:data:`METRICS` (and in the README).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

from kinesio.events import (
    BatchProcessed,
    CheckpointWritten,
    DiagnosticEvent,
    HandlerRetried,
    LeaseAcquired,
    LeaseLostEvent,
    LeaseReleased,
    LeaseRenewed,
    PutRecordsSent,
    RecordDeadLettered,
    RecordFailed,
    RecordsFetched,
    ShardBlockedOnParent,
    ShardEnded,
    ShardMapRefreshed,
    ShardStarted,
    SubscriptionRenewed,
    Throttled,
)

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import Metric
    from prometheus_client.exposition import start_http_server
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "kinesio.prometheus needs prometheus-client: pip install 'kinesio[prometheus]'"
    ) from exc

from kinesio.metrics._prometheus_families import (
    DURATION_BUCKETS,
    METRICS,
    Histogram,
    Labels,
    families,
)

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = ["DURATION_BUCKETS", "METRICS", "MetricsServer", "PrometheusMetrics"]


class _Collector:
    """The registry's view: a consistent copy of the counts at each scrape."""

    def __init__(self, owner: PrometheusMetrics) -> None:
        self._owner = owner

    def describe(self) -> Iterator[Metric]:
        return iter(families({}, {}, {}))

    def collect(self) -> Iterator[Metric]:
        return iter(self._owner._families())


@dataclass(eq=False)
class MetricsServer:
    """The HTTP endpoint started by :meth:`PrometheusMetrics.serve` (a daemon thread).

    ``port`` is the port it listens on (the free one picked when 0 was asked for);
    :meth:`close` stops it. Usable as a context manager."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PrometheusMetrics:
    """Prometheus metrics built from kinesio's diagnostic events; pass it as ``on_event=``.

    One instance serves any number of producers and consumers (each event names its stream),
    and registers once into ``registry`` (default: ``prometheus_client.REGISTRY``, which
    ``prometheus_client``'s own endpoints serve); a second instance on the same registry
    raises ``ValueError`` (duplicated metric names). The metrics are listed in
    :data:`METRICS`. Calling it is cheap and thread-safe (a lock guards the counts; scrapes
    copy them under the lock).

    ``kinesio_consumer_millis_behind_latest`` keeps a shard only while this worker holds its
    lease: the series disappears when the lease is lost, released or the shard ends.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = REGISTRY if registry is None else registry
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._summaries: dict[str, dict[Labels, tuple[float, float]]] = defaultdict(dict)
        self._histograms: dict[str, dict[Labels, Histogram]] = defaultdict(dict)
        self._held: dict[str, set[str]] = defaultdict(set)
        self.registry.register(_Collector(self))

    def serve(self, port: int, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve this instance's registry at ``http://addr:port/metrics`` from a daemon thread.

        ``addr`` defaults to the loopback interface: pass ``"0.0.0.0"`` (or the host's
        address) for a Prometheus server on another host. ``port`` 0 picks a free port
        (see ``MetricsServer.port``). Raises ``OSError`` if the port is taken.
        """
        server, thread = start_http_server(port, addr=addr, registry=self.registry)
        return MetricsServer(addr, int(server.server_port), server, thread)

    # -- the on_event callback -----------------------------------------------------------

    def __call__(self, event: DiagnosticEvent) -> None:
        with self._lock:
            self._record(event)

    def _inc(self, name: str, labels: Labels, amount: float = 1.0) -> None:
        self._values[name][labels] += amount

    def _observe(self, name: str, labels: Labels, count: int, total: float) -> None:
        series = self._summaries[name]
        old_count, old_total = series.get(labels, (0.0, 0.0))
        series[labels] = (old_count + count, old_total + total)

    def _record(self, event: DiagnosticEvent) -> None:
        stream = event.stream_name
        match event:
            case PutRecordsSent():
                self._put_records(stream, event)
            case RecordFailed():
                self._inc("kinesio_producer_user_records_failed", (stream, event.error_type))
            case ShardMapRefreshed():
                self._values["kinesio_producer_open_shards"][(stream,)] = event.open_shards
            case Throttled():
                self._inc(
                    "kinesio_throttles",
                    (stream, event.shard_id, event.operation),
                    max(1, event.records),
                )
            case RecordsFetched():
                shard = (stream, event.shard_id)
                self._inc("kinesio_consumer_fetches", (*shard, event.operation))
                self._inc("kinesio_consumer_records_fetched", shard, event.records)
                if event.millis_behind_latest is not None and event.shard_id in self._held.get(
                    stream, ()
                ):
                    self._values["kinesio_consumer_millis_behind_latest"][shard] = (
                        event.millis_behind_latest
                    )
            case BatchProcessed():
                shard = (stream, event.shard_id)
                self._inc("kinesio_consumer_records_processed", shard, event.records)
                self._inc("kinesio_consumer_bytes_processed", shard, event.bytes)
            case HandlerRetried():
                self._inc("kinesio_consumer_handler_retries", (stream, event.shard_id))
            case RecordDeadLettered():
                self._inc("kinesio_consumer_records_dead_lettered", (stream, event.shard_id))
            case LeaseAcquired():
                kind = "stolen" if event.stolen else "acquired"
                self._inc("kinesio_consumer_lease_events", (stream, event.lease_key, kind))
                self._held[stream].add(event.lease_key)
                self._set_held(stream)
            case LeaseRenewed():
                self._inc("kinesio_consumer_lease_events", (stream, event.lease_key, "renewed"))
            case LeaseLostEvent() | LeaseReleased():
                kind = "lost" if isinstance(event, LeaseLostEvent) else "released"
                self._inc("kinesio_consumer_lease_events", (stream, event.lease_key, kind))
                self._held[stream].discard(event.lease_key)
                self._set_held(stream)
                self._values["kinesio_consumer_millis_behind_latest"].pop(
                    (stream, event.lease_key), None
                )
            case CheckpointWritten():
                self._inc("kinesio_consumer_checkpoints", (stream, event.shard_id))
            case SubscriptionRenewed():
                self._inc("kinesio_consumer_subscription_renewals", (stream, event.shard_id))
            case ShardStarted():
                self._inc("kinesio_consumer_shard_events", (stream, event.shard_id, "started"))
            case ShardEnded():
                self._inc("kinesio_consumer_shard_events", (stream, event.shard_id, "ended"))
            case ShardBlockedOnParent():
                self._inc(
                    "kinesio_consumer_shard_events", (stream, event.shard_id, "blocked_on_parent")
                )
            case _:
                pass  # events without a metric

    def _set_held(self, stream: str) -> None:
        self._values["kinesio_consumer_leases_held"][(stream,)] = len(self._held[stream])

    def _put_records(self, stream: str, event: PutRecordsSent) -> None:
        self._inc("kinesio_producer_requests", (stream, event.error or "ok"))
        histogram = self._histograms["kinesio_producer_request_duration_seconds"]
        h = histogram.get((stream,))
        if h is None:
            h = histogram[(stream,)] = Histogram()
        h.observe(event.duration_ms / 1000.0)
        for s in event.shards:
            shard = (stream, s.shard_id)
            records = "kinesio_producer_user_records"
            first_try = s.user_records_put - s.user_records_recovered
            if first_try:
                self._inc(records, (*shard, "success"), first_try)
            if s.user_records_recovered:
                self._inc(records, (*shard, "recovered"), s.user_records_recovered)
            if s.user_records_failed:
                self._inc(records, (*shard, "failed"), s.user_records_failed)
            if s.kinesis_records_put:
                self._inc(
                    "kinesio_producer_kinesis_records", (*shard, "success"), s.kinesis_records_put
                )
            if s.kinesis_records_failed:
                self._inc(
                    "kinesio_producer_kinesis_records",
                    (*shard, "failed"),
                    s.kinesis_records_failed,
                )
            for code, n in s.errors:
                self._inc("kinesio_producer_errors", (*shard, code), n)
            if s.user_records_put:
                self._inc("kinesio_producer_user_bytes", shard, s.user_bytes_put)
                self._inc("kinesio_producer_retries", shard, s.retries.total)
                self._observe(
                    "kinesio_producer_record_latency_seconds",
                    shard,
                    s.latency_ms.count,
                    s.latency_ms.total / 1000.0,
                )
                self._observe(
                    "kinesio_producer_push_delay_seconds",
                    shard,
                    s.buffering_ms.count,
                    s.buffering_ms.total / 1000.0,
                )

    def _families(self) -> list[Metric]:
        with self._lock:
            values = {name: dict(series) for name, series in self._values.items()}
            summaries = {name: dict(series) for name, series in self._summaries.items()}
            histograms: dict[str, dict[Labels, Histogram]] = {}
            for name, series in self._histograms.items():
                copies: dict[Labels, Histogram] = {}
                for key, h in series.items():
                    c = copies[key] = Histogram()
                    c.counts, c.total = list(h.counts), h.total
                histograms[name] = copies
        return families(values, summaries, histograms)
