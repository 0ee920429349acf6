"""The per-request and per-read events: PutRecordsSent, RecordsFetched, SubscriptionRenewed,
BatchProcessed, consumer-side Throttled, and the stream name every event carries."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

import kinesio
from _metrics_drive import consume, produce
from kinesio import events as ev
from kinesio.consumer import _fetcher
from kinesio.producer import _sender
from kinesio.testing import Fault, InMemoryKinesis
from kinesio.testing.pytest_plugin import TEST_CONSUMER_SETTINGS


@pytest.fixture(autouse=True)
def _short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fetcher, "BACKOFF_INITIAL", 0.01)


def _data_bytes(count: int) -> int:
    return sum(len(b"record-%d" % i) for i in range(count))


@pytest.mark.parametrize("aggregate", [False, True])
async def test_one_put_records_sent_per_request_adds_up(aggregate: bool) -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("s", 2)
    kinesis.inject(Fault("PutRecords", "ServiceUnavailable", count=1))
    kinesis.inject(
        Fault("PutRecords", "ProvisionedThroughputExceededException", per_record=True, count=3)
    )
    seen: list[ev.DiagnosticEvent] = []
    await produce(kinesis, "s", 200, seen.append, aggregate=aggregate)

    sent = [e for e in seen if isinstance(e, ev.PutRecordsSent)]
    assert len(sent) == kinesis.calls["PutRecords"]
    assert all(e.stream_name == "s" for e in seen)
    whole = [e for e in sent if e.error is not None]
    assert [e.error for e in whole] == ["ServiceUnavailable"]
    assert sum(s.user_records_put for s in whole[0].shards) == 0
    assert sum(s.user_records_failed for s in whole[0].shards) > 0

    shards = [s for e in sent for s in e.shards]
    open_shards = {sh.shard_id for sh in await kinesis.list_shards("s")}
    assert {s.shard_id for s in shards} == open_shards
    assert sum(s.user_records_put for s in shards) == 200
    assert sum(s.user_bytes_put for s in shards) == _data_bytes(200)
    throttled = sum(s.throttled for s in shards)
    assert throttled == 3
    codes: dict[str, int] = {}
    for s in shards:
        for code, n in s.errors:
            codes[code] = codes.get(code, 0) + n
    assert codes["ProvisionedThroughputExceededException"] == 3
    kinesis_put = sum(s.kinesis_records_put for s in shards)
    stored = sum(len(kinesis.records("s", shard)) for shard in open_shards)
    assert kinesis_put == stored
    assert (kinesis_put < 200) == aggregate
    # every user record that needed a retry is counted once as recovered, with its retries
    recovered = sum(s.user_records_recovered for s in shards)
    assert recovered >= 1
    assert sum(s.retries.total for s in shards) >= recovered
    assert sum(s.retries.count for s in shards) == 200
    for s in shards:
        if s.user_records_put:
            assert s.latency_ms.count == s.buffering_ms.count == s.user_records_put
            assert 0 <= s.buffering_ms.minimum <= s.latency_ms.maximum
            assert s.buffering_ms.total <= s.latency_ms.total
    assert all(e.duration_ms >= 0 for e in sent)


async def test_put_records_sent_is_not_built_without_a_listener(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    built: list[object] = []

    def counting(**kwargs: object) -> ev.PutRecordsSent:
        built.append(kwargs)
        return ev.PutRecordsSent(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_sender, "PutRecordsSent", counting)
    caplog.set_level(logging.INFO, logger="kinesio.events")
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("s", 1)
    async with kinesio.AsyncProducer("s", kinesis=kinesis) as producer:
        await producer.put_and_wait(b"x", "k")
    assert built == []
    # ... and is built for a callback
    seen: list[ev.DiagnosticEvent] = []
    async with kinesio.AsyncProducer("s", kinesis=kinesis, on_event=seen.append) as producer:
        await producer.put_and_wait(b"x", "k")
    assert len(built) == 1
    assert any(isinstance(e, ev.PutRecordsSent) for e in seen)


async def test_polling_reads_and_processed_batches_add_up() -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("s", 2)
    await produce(kinesis, "s", 120, lambda e: None, aggregate=True)
    kinesis.inject(Fault("GetRecords", "ProvisionedThroughputExceededException", count=2))
    seen: list[ev.DiagnosticEvent] = []
    handled = await consume(kinesis, "s", 120, seen.append)
    assert sorted(handled) == sorted(b"record-%d" % i for i in range(120))
    assert all(e.stream_name == "s" for e in seen)

    fetched = [e for e in seen if isinstance(e, ev.RecordsFetched)]
    assert {e.operation for e in fetched} == {"GetRecords"}
    assert sum(e.records for e in fetched) == 120
    assert sum(e.bytes for e in fetched) == _data_bytes(120)
    assert sum(e.kinesis_records for e in fetched) < 120  # aggregates count once
    assert any(e.millis_behind_latest is not None for e in fetched)

    processed = [e for e in seen if isinstance(e, ev.BatchProcessed)]
    assert sum(e.records for e in processed) == 120
    assert sum(e.bytes for e in processed) == _data_bytes(120)
    shards = {sh.shard_id for sh in await kinesis.list_shards("s")}
    assert {e.shard_id for e in processed} == shards

    throttles = [e for e in seen if isinstance(e, ev.Throttled)]
    assert len(throttles) == 2
    assert all(t.operation == "GetRecords" and t.records == 0 for t in throttles)
    assert {t.shard_id for t in throttles} <= shards


async def test_fan_out_reads_and_subscription_renewals() -> None:
    kinesis = InMemoryKinesis(subscription_ttl=0.3, heartbeat_interval=0.05)
    await kinesis.create_stream("s", 1)
    await produce(kinesis, "s", 30, lambda e: None, aggregate=False)
    kinesis.inject(Fault("SubscribeToShard", "LimitExceededException", count=1))
    seen: list[ev.DiagnosticEvent] = []
    settings = dataclasses.replace(
        TEST_CONSUMER_SETTINGS, retrieval=kinesio.FanOut(consumer_name="metrics-efo")
    )

    async def until_renewed_twice() -> None:
        async with asyncio.timeout(20):
            while sum(isinstance(e, ev.SubscriptionRenewed) for e in seen) < 2:
                await asyncio.sleep(0.02)

    handled = await consume(
        kinesis, "s", 30, seen.append, settings=settings, while_running=until_renewed_twice
    )
    assert len(handled) == 30
    fetched = [e for e in seen if isinstance(e, ev.RecordsFetched)]
    assert {e.operation for e in fetched} == {"SubscribeToShard"}
    assert sum(e.records for e in fetched) == 30
    renewed = [e for e in seen if isinstance(e, ev.SubscriptionRenewed)]
    assert [e.subscription for e in renewed[:2]] == [2, 3]
    assert renewed[0].reason == "expired"
    throttles = [e for e in seen if isinstance(e, ev.Throttled)]
    assert [(t.operation, t.records) for t in throttles] == [("SubscribeToShard", 0)]


def test_the_emitter_names_the_stream_and_says_whether_anyone_listens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kinesio.events")
    assert not ev.Emitter(None, stream_name="s").enabled
    seen: list[ev.DiagnosticEvent] = []
    emitter = ev.Emitter(seen.append, stream_name="orders")
    assert emitter.enabled
    emitter.emit(ev.LeaseReleased(lease_key="k"))
    emitter.emit(ev.LeaseReleased(lease_key="k", stream_name="other"))
    assert [e.stream_name for e in seen] == ["orders", "other"]
    caplog.set_level(logging.DEBUG, logger="kinesio.events")
    assert ev.Emitter(None).enabled


def test_broadcast_reaches_every_hook_even_after_one_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first: list[ev.DiagnosticEvent] = []
    last: list[ev.DiagnosticEvent] = []

    def broken(event: ev.DiagnosticEvent) -> None:
        raise RuntimeError("boom")

    hook = ev.broadcast(first.append, broken, last.append)
    event = ev.LeaseReleased(lease_key="k")
    hook(event)
    assert first == last == [event]
    assert "boom" in caplog.text


async def test_a_request_throttled_whole_is_reported_per_shard() -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("s", 1)
    kinesis.inject(Fault("PutRecords", "LimitExceededException", count=1))
    seen: list[ev.DiagnosticEvent] = []
    await produce(kinesis, "s", 5, seen.append, aggregate=False)
    [first, *_] = [e for e in seen if isinstance(e, ev.PutRecordsSent)]
    assert first.error == "LimitExceededException"
    [stats] = first.shards
    assert stats.throttled == stats.kinesis_records_failed == stats.user_records_failed > 0
    assert stats.errors == (("LimitExceededException", stats.kinesis_records_failed),)
    throttles = [e for e in seen if isinstance(e, ev.Throttled)]
    assert [(t.operation, t.shard_id, t.records) for t in throttles] == [
        ("PutRecords", stats.shard_id, stats.kinesis_records_failed)
    ]
