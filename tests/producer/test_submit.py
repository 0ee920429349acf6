"""AsyncProducer.submit: records accepted without a per-record result lose no guarantee."""

from __future__ import annotations

import pytest

from _streams import all_user_records
from kinesio._config import Drop, ProducerSettings
from kinesio._errors import (
    BacklogFullError,
    KinesioError,
    ProducerClosedError,
    RecordExpiredError,
    ValidationError,
)
from kinesio._models import ProducerRecord
from kinesio.producer import AsyncProducer
from kinesio.testing import Fault, InMemoryKinesis

STREAM = "submitted"


def settings(**kw: object) -> ProducerSettings:
    base: dict[str, object] = {"linger": 0.01, "retry_backoff": 0.01, "max_retry_backoff": 0.05}
    base.update(kw)
    return ProducerSettings(**base)  # type: ignore[arg-type]


async def make_stream(shards: int) -> InMemoryKinesis:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream(STREAM, shards)
    return kinesis


@pytest.mark.parametrize("aggregate", [True, False])
async def test_submitted_records_are_all_delivered_in_per_key_order(aggregate: bool) -> None:
    kinesis = await make_stream(4)
    async with AsyncProducer(
        STREAM, kinesis=kinesis, settings=settings(aggregate=aggregate)
    ) as producer:
        for i in range(2000):
            await producer.submit(b"%d:%d" % (i % 40, i), f"k{i % 40}")
        await producer.flush()
        m = producer.metrics()
        assert m.user_records_put == 2000
        assert m.user_records_failed == 0
    stored = await all_user_records(kinesis, STREAM)
    assert len(stored) == 2000
    per_key: dict[str, list[int]] = {}
    for r in stored:
        key, n = r.data.split(b":")
        per_key.setdefault(key.decode(), []).append(int(n))
    assert len(per_key) == 40
    for numbers in per_key.values():
        assert numbers == sorted(numbers)


async def test_submit_mixes_with_put_and_flush_waits_for_both() -> None:
    kinesis = await make_stream(2)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings(linger=5.0)) as producer:
        await producer.submit(b"a", "k1")
        fut = await producer.put(b"b", "k2")
        await producer.submit(b"c", "k3")
        await producer.flush()
        assert fut.done()
        assert producer.metrics().user_records_put == 3
    assert sorted(r.data for r in await all_user_records(kinesis, STREAM)) == [b"a", b"b", b"c"]


async def test_a_submitted_record_that_fails_reaches_on_error_and_the_metrics() -> None:
    kinesis = await make_stream(1)
    kinesis.inject(Fault("PutRecords", "ProvisionedThroughputExceededException", per_record=True))
    failed: list[tuple[ProducerRecord, KinesioError]] = []
    async with AsyncProducer(
        STREAM,
        kinesis=kinesis,
        settings=settings(record_ttl=0.3),
        on_error=lambda r, e: failed.append((r, e)),
    ) as producer:
        for i in range(10):
            await producer.submit(b"e%d" % i, f"k{i}")
        await producer.flush()
        assert producer.metrics().user_records_failed == 10
    assert sorted(r.data for r, _ in failed) == sorted(b"e%d" % i for i in range(10))
    assert all(isinstance(e, RecordExpiredError) for _, e in failed)


async def test_submit_rejects_bad_input_and_a_full_backlog_like_put() -> None:
    kinesis = await make_stream(1)
    dropped: list[KinesioError] = []
    s = settings(max_buffered_records=3, overflow=Drop(), linger=5.0)
    async with AsyncProducer(
        STREAM, kinesis=kinesis, settings=s, on_error=lambda r, e: dropped.append(e)
    ) as producer:
        with pytest.raises(ValidationError):
            await producer.submit("not bytes", "k")  # type: ignore[arg-type]
        for i in range(5):
            await producer.submit(b"d", f"k{i}")
        await producer.flush()
        m = producer.metrics()
    assert len(dropped) == 2
    assert all(isinstance(e, BacklogFullError) for e in dropped)
    assert m.user_records_put == 3
    assert m.user_records_dropped == 2
    with pytest.raises(ProducerClosedError):
        await producer.submit(b"late", "k")
