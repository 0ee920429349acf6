"""Slow handlers: records/s with concurrency inside a shard (``consume_with(max_concurrency=N)``).

Run: .venv/bin/python benchmarks/bench_handler_concurrency.py        (about 1 min)

A 4-shard stream of ``kinesio.testing.InMemoryKinesis`` (limits enforced: the reads are those of
the real service) holds aggregated 100-byte records over 200 partition keys; one
``AsyncConsumer`` with a ``MemoryLeaseStore`` reads it with an async handler that awaits
``--delay`` seconds (20 ms: an HTTP call or a database write) per record. For each
``max_concurrency`` the table gives records/s from the first record handled to the last, the
speed-up over a concurrency of 1 (kinesio's default, and what every other Python Kinesis
consumer does: one record of a shard at a time), the process's CPU per record (user + system,
``getrusage``), and checks that every record was handled once, in order per partition key, and
that the final checkpoints reach each shard's last record.

No peer library runs a shard's records concurrently, so the baseline is the same consumer at
``max_concurrency=1``. Wall time is the measure here: on a loaded machine the high-concurrency
rows are lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import resource
import time
from collections import defaultdict
from dataclasses import dataclass

from kinesio import (
    AsyncConsumer,
    AsyncProducer,
    ConsumerSettings,
    InitialPosition,
    Polling,
    ProducerSettings,
    Record,
)
from kinesio.leases import MemoryLeaseStore
from kinesio.testing import InMemoryKinesis

STREAM = "slow-handlers"
SHARDS = 4
KEYS = 200


@dataclass
class Row:
    concurrency: int
    records: int
    seconds: float
    cpu_us_per_record: float
    ok: bool


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def fill(records: int) -> InMemoryKinesis:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream(STREAM, SHARDS)
    settings = ProducerSettings(aggregate=True, linger=0.01)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings) as producer:
        for i in range(records):
            payload = f"{i % KEYS}:{i}:".encode().ljust(100, b"x")
            await producer.put(payload, partition_key=f"key-{i % KEYS}")
    return kinesis


async def measure(concurrency: int, records: int, delay: float) -> Row:
    kinesis = await fill(records)
    store = MemoryLeaseStore()
    handled: list[Record] = []
    first = 0.0
    done = asyncio.Event()

    async def handle(record: Record) -> None:
        nonlocal first
        if not first:
            first = time.perf_counter()
        await asyncio.sleep(delay)
        handled.append(record)
        if len(handled) == records:
            done.set()

    settings = ConsumerSettings(
        initial_position=InitialPosition.TRIM_HORIZON,
        retrieval=Polling(idle_time=0.2),
    )
    consumer = AsyncConsumer(
        STREAM, application_name="bench", settings=settings, kinesis=kinesis, lease_store=store
    )
    await consumer.start()
    cpu0 = cpu()
    task = asyncio.create_task(consumer.consume_with(handle, max_concurrency=concurrency))
    await asyncio.wait_for(done.wait(), timeout=600)
    seconds = time.perf_counter() - first
    cpu_used = cpu() - cpu0
    await consumer.aclose()
    await task
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in handled:
        per_key[r.partition_key].append(int(r.data.split(b":")[1]))
    last: dict[str, Record] = {}
    for r in handled:
        if r.shard_id not in last or r.position > last[r.shard_id].position:
            last[r.shard_id] = r
    checkpoints = {lease.lease_key: lease.checkpoint for lease in await store.list_leases()}
    ok = (
        sorted(n for ns in per_key.values() for n in ns) == list(range(records))
        and all(ns == sorted(ns) for ns in per_key.values())
        and checkpoints == {shard: r.position for shard, r in last.items()}
    )
    return Row(concurrency, records, seconds, cpu_used / records * 1e6, ok)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.02, help="handler time, seconds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="about how long each row should run"
    )
    args = parser.parse_args()
    rows: list[Row] = []
    for concurrency in args.concurrency:
        # enough records for about --seconds at the expected rate (keys per shard bound it)
        expected = SHARDS * min(concurrency, KEYS // SHARDS) / args.delay
        records = max(200, int(expected * args.seconds))
        rows.append(await measure(concurrency, records, args.delay))
    base = rows[0].records / rows[0].seconds
    print(
        f"python {platform.python_version()}, {SHARDS} shards, {KEYS} keys, "
        f"handler awaits {args.delay * 1000:.0f} ms per record"
    )
    print(
        "| max_concurrency | records | records/s | speed-up | CPU µs/record "
        "| all once, per-key order, checkpoints |"
    )
    print("|---:|---:|---:|---:|---:|---|")
    for row in rows:
        rate = row.records / row.seconds
        print(
            f"| {row.concurrency} | {row.records} | {rate:,.0f} | {rate / base:.1f}× | "
            f"{row.cpu_us_per_record:.0f} | {'yes' if row.ok else 'NO'} |"
        )
    if not all(row.ok for row in rows):
        raise SystemExit("a run lost, reordered or mis-checkpointed records")


if __name__ == "__main__":
    asyncio.run(main())
