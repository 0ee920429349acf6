"""kinesio.prometheus: metrics of a real producer and consumer, scraped over HTTP and parsed."""

from __future__ import annotations

import asyncio
import importlib
import sys
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from _metrics_drive import consume, produce
from kinesio import events as ev
from kinesio.consumer import _fetcher
from kinesio.metrics.prometheus import METRICS, PrometheusMetrics
from kinesio.testing import Fault, InMemoryKinesis

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(ls) for (n, ls) in samples if n == name]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


async def test_producer_and_consumer_metrics_by_stream_and_shard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_fetcher, "BACKOFF_INITIAL", 0.01)
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("orders", 2)
    shards = {sh.shard_id for sh in await kinesis.list_shards("orders")}
    kinesis.inject(
        Fault("PutRecords", "ProvisionedThroughputExceededException", per_record=True, count=3)
    )
    await produce(kinesis, "orders", 100, metrics, aggregate=False)
    kinesis.inject(Fault("GetRecords", "ProvisionedThroughputExceededException", count=2))

    with metrics.serve(0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        live: list[Samples] = []

        async def scrape_while_running() -> None:
            live.append(parse(await asyncio.to_thread(scrape, server.url)))

        await consume(kinesis, "orders", 100, metrics, while_running=scrape_while_running)
    after = parse(generate_latest(registry).decode())

    # producer, per shard: 100 delivered, 3 records throttled once and recovered
    records = "kinesio_producer_user_records_total"
    assert {s["shard"] for s in series(after, records)} == shards
    assert {s["stream"] for s in series(after, records)} == {"orders"}
    delivered = total(after, records, result="success") + total(after, records, result="recovered")
    assert delivered == 100
    assert total(after, records, result="failed") == 3
    assert 1 <= total(after, records, result="recovered") <= 3
    assert total(after, "kinesio_producer_kinesis_records_total", result="success") == 100
    code = "ProvisionedThroughputExceededException"
    assert total(after, "kinesio_producer_errors_total", code=code) == 3
    assert total(after, "kinesio_throttles_total", operation="PutRecords") == 3
    assert total(after, "kinesio_producer_retries_total") >= 3
    latency = "kinesio_producer_record_latency_seconds_count"
    assert total(after, latency) == 100
    assert total(after, "kinesio_producer_push_delay_seconds_count") == 100
    assert (
        total(after, "kinesio_producer_requests_total", outcome="ok") == kinesis.calls["PutRecords"]
    )
    assert (
        total(after, "kinesio_producer_request_duration_seconds_count")
        == kinesis.calls["PutRecords"]
    )
    assert total(after, "kinesio_producer_open_shards", stream="orders") == 2

    # consumer, while it held both leases (scraped over HTTP)
    [running] = live
    assert total(running, "kinesio_consumer_leases_held", stream="orders") == 2
    behind = series(running, "kinesio_consumer_millis_behind_latest")
    assert {s["shard"] for s in behind} == shards
    # (the last batch counts once the handler asks for the next one)
    assert total(running, "kinesio_consumer_records_processed_total") > 0
    # ... and after a graceful shutdown
    assert total(after, "kinesio_consumer_records_processed_total") == 100
    assert {s["shard"] for s in series(after, "kinesio_consumer_records_processed_total")} == shards
    assert total(after, "kinesio_consumer_bytes_processed_total") == sum(
        len(b"record-%d" % i) for i in range(100)
    )
    assert total(after, "kinesio_consumer_records_fetched_total") == 100
    assert total(after, "kinesio_consumer_fetches_total", operation="GetRecords") >= 2
    assert total(after, "kinesio_throttles_total", operation="GetRecords") == 2
    assert total(after, "kinesio_consumer_lease_events_total", event="acquired") == 2
    assert total(after, "kinesio_consumer_lease_events_total", event="released") == 2
    assert total(after, "kinesio_consumer_checkpoints_total") >= 2
    assert total(after, "kinesio_consumer_shard_events_total", event="started") == 2
    assert total(after, "kinesio_consumer_leases_held", stream="orders") == 0
    assert series(after, "kinesio_consumer_millis_behind_latest") == []


def test_every_metric_is_exposed_with_its_type_and_help() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    for name, (kind, _labels, doc) in METRICS.items():
        family = families[name.removesuffix("_total")]
        assert family.type == kind, name
        assert family.documentation == doc


def test_one_instance_per_registry() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusMetrics(registry)


def test_lease_shard_and_failure_events_map_to_their_series() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    for event in (
        ev.LeaseAcquired(
            stream_name="s", lease_key="a", previous_owner="w2", stolen=True, lease_counter=3
        ),
        ev.RecordsFetched(
            stream_name="s",
            shard_id="a",
            operation="SubscribeToShard",
            kinesis_records=0,
            records=0,
            bytes=0,
            millis_behind_latest=1500,
        ),
        ev.SubscriptionRenewed(stream_name="s", shard_id="a", subscription=2, reason="expired"),
        ev.ShardBlockedOnParent(stream_name="s", shard_id="b", parents=("a",)),
        ev.ShardEnded(stream_name="s", shard_id="a", children=("b", "c")),
        ev.LeaseLostEvent(stream_name="s", lease_key="a", reason="taken"),
        ev.RecordFailed(
            stream_name="s", partition_key="k", error="expired", error_type="RecordExpiredError"
        ),
        ev.PutRecordsSent(
            stream_name="s",
            duration_ms=30_000.0,
            error="ServiceUnavailable",
            shards=(
                ev.ShardPutStats(
                    shard_id="a",
                    user_records_failed=4,
                    kinesis_records_failed=1,
                    errors=(("ServiceUnavailable", 1),),
                ),
            ),
        ),
    ):
        metrics(event)
    after = parse(generate_latest(registry).decode())
    lease_events = "kinesio_consumer_lease_events_total"
    assert total(after, lease_events, shard="a", event="stolen") == 1
    assert total(after, lease_events, shard="a", event="acquired") == 0
    assert total(after, lease_events, shard="a", event="lost") == 1
    assert total(after, "kinesio_consumer_leases_held", stream="s") == 0
    assert series(after, "kinesio_consumer_millis_behind_latest") == []  # gone with the lease
    assert total(after, "kinesio_consumer_fetches_total", operation="SubscribeToShard") == 1
    assert total(after, "kinesio_consumer_subscription_renewals_total", shard="a") == 1
    shard_events = "kinesio_consumer_shard_events_total"
    assert total(after, shard_events, shard="b", event="blocked_on_parent") == 1
    assert total(after, shard_events, shard="a", event="ended") == 1
    failed = "kinesio_producer_user_records_failed_total"
    assert total(after, failed, error="RecordExpiredError") == 1
    assert total(after, "kinesio_producer_requests_total", outcome="ServiceUnavailable") == 1
    assert total(after, "kinesio_producer_user_records_total", result="failed") == 4
    assert total(after, "kinesio_producer_errors_total", code="ServiceUnavailable") == 1
    duration = "kinesio_producer_request_duration_seconds_bucket"
    assert total(after, duration, le="10.0") == 0
    assert total(after, duration, le="+Inf") == 1


def test_a_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    for name in ("kinesio.metrics.prometheus", "kinesio.prometheus"):
        monkeypatch.delitem(sys.modules, name, raising=False)
        with pytest.raises(ImportError, match=r"kinesio\[prometheus\]"):
            importlib.import_module(name)
