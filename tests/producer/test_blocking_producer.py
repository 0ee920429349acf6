"""The blocking Producer: records cross to the loop thread in batches, errors stay typed."""

from __future__ import annotations

import asyncio
import threading

import pytest

import kinesio
from _streams import all_user_records, stored_user_records
from kinesio.testing import Fault, InMemoryKinesis


def make_stream(shards: int = 2) -> InMemoryKinesis:
    kinesis = InMemoryKinesis()
    asyncio.run(kinesis.create_stream("s", shards))
    return kinesis


def test_validation_happens_in_the_calling_thread() -> None:
    kinesis = make_stream()
    with kinesio.Producer("s", kinesis=kinesis) as producer:
        with pytest.raises(kinesio.ValidationError):
            producer.put(b"x", "")
        with pytest.raises(kinesio.ValidationError):
            producer.put("text", "k")  # type: ignore[arg-type]
        producer.put_and_wait(b"ok", "k")
    with pytest.raises(kinesio.ProducerClosedError):
        producer.put(b"x", "k")
    assert [r.data for r in asyncio.run(all_user_records(kinesis, "s"))] == [b"ok"]


def test_one_thread_many_records_keep_their_order_per_key() -> None:
    kinesis = make_stream()
    settings = kinesio.ProducerSettings(linger=0.01, ordered=True)
    with kinesio.Producer("s", kinesis=kinesis, settings=settings) as producer:
        futures = [producer.put(b"%d" % i, f"key-{i % 3}") for i in range(3000)]
        producer.flush()
        assert all(f.done() for f in futures)
    per_key: dict[str, list[int]] = {}
    for rows in asyncio.run(stored_user_records(kinesis, "s")).values():
        for _, _, u in sorted(rows, key=lambda t: (int(t[0]), t[1])):
            per_key.setdefault(u.partition_key, []).append(int(u.data))
    for key in range(3):
        assert per_key[f"key-{key}"] == list(range(key, 3000, 3))


def test_raise_policy_raises_in_the_caller_and_drop_fails_the_future() -> None:
    kinesis = make_stream(1)
    kinesis.inject(Fault("PutRecords", None, latency=0.5, count=1))
    settings = kinesio.ProducerSettings(max_buffered_records=5, overflow=kinesio.Raise())
    with kinesio.Producer("s", kinesis=kinesis, settings=settings) as producer:
        for i in range(5):
            producer.put(b"r", f"k{i}")
        with pytest.raises(kinesio.BacklogFullError):
            producer.put(b"r", "one-too-many")
    kinesis.inject(Fault("PutRecords", None, latency=0.5, count=1))
    settings = kinesio.ProducerSettings(max_buffered_records=5, overflow=kinesio.Drop())
    with kinesio.Producer("s", kinesis=kinesis, settings=settings) as producer:
        futures = [producer.put(b"d", f"k{i}") for i in range(8)]
        producer.flush()
    failed = [f for f in futures if f.exception() is not None]
    assert failed
    assert all(isinstance(f.exception(), kinesio.BacklogFullError) for f in failed)


def test_block_policy_blocks_the_caller_and_loses_nothing() -> None:
    kinesis = make_stream(1)
    kinesis.inject(Fault("PutRecords", None, latency=0.02))
    settings = kinesio.ProducerSettings(linger=0.005, max_buffered_records=10, aggregate=False)
    with kinesio.Producer("s", kinesis=kinesis, settings=settings) as producer:
        threads = [
            threading.Thread(
                target=lambda t=t: [producer.put(b"%d-%d" % (t, i), f"k{i}") for i in range(50)]
            )
            for t in range(3)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert len(asyncio.run(all_user_records(kinesis, "s"))) == 150
