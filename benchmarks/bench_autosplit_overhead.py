"""Auto-split's cost on the send path: producer CPU per record with ``auto_split`` off and on.

Run: .venv/bin/python benchmarks/bench_autosplit_overhead.py        (about 1 min)

One AsyncProducer writes 100-byte records with random partition keys (1000 keys) into a
4-shard ``kinesio.testing.InMemoryKinesis`` with its limits off (no throttling, no waiting: the
run measures CPU, not Kinesis), in this process. ``auto_split=AutoSplit()`` (defaults: one-minute
windows, so no window closes and no split happens during a run) adds only the per-request
counting of each Kinesis record (counts and the hash-key histogram). CPU is this process's
user + system time from the first put until flush() returns (the fake's share included, the
same in both columns). Off and on alternate, ``--rounds`` times each; the table shows the
fastest run (the least disturbed by other processes) and the median of CPU µs per user record.
On a shared machine the spread of whole runs is wider than the difference, so a second table
times the added work alone: the producer's per-answer counting (``_count_for_autosplit``, one
``WindowCounts.add`` per Kinesis record of a PutRecords answer) on a 500-entry answer, best of
five timeit repeats, per Kinesis record.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import resource
import statistics
import time
import timeit
import types
from importlib.metadata import version

from kinesio import AsyncProducer, AutoSplit, ProducerSettings
from kinesio._models import (
    MAX_HASH_KEY,
    PutRecordsEntry,
    PutRecordsResultEntry,
    Shard,
)
from kinesio.producer._autosplit import WindowCounts
from kinesio.producer._limiter import ShardLimiter
from kinesio.producer._pending import _Pending, _ShardQueue
from kinesio.producer._requests import _Entry
from kinesio.testing import InMemoryKinesis

KEYS = 1000


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_run(records: int, *, aggregate: bool, auto_split: bool) -> float:
    """CPU µs per user record of one producer run."""
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream("bench", 4)
    settings = ProducerSettings(
        aggregate=aggregate,
        rate_limit=1000.0,  # the fake does not limit: neither does the producer
        auto_split=AutoSplit() if auto_split else None,
    )
    rng = random.Random(1)
    keys = [f"key-{i}" for i in range(KEYS)]
    data = bytes(100)
    async with AsyncProducer("bench", kinesis=kinesis, settings=settings) as producer:
        start = cpu_seconds()
        for _ in range(records):
            await producer.put(data, rng.choice(keys))
        await producer.flush()
        cpu = cpu_seconds() - start
    if producer.metrics().user_records_put != records:
        raise SystemExit("not every record was delivered")
    return cpu / records * 1e6


def counting_cost(entries: int = 500) -> float:
    """µs per Kinesis record of ``Sender._count_for_autosplit`` on one answer."""
    shard = Shard("shardId-000000000000", 0, MAX_HASH_KEY // 4)
    queue = _ShardQueue(shard.shard_id, ShardLimiter(1000, 1 << 20, 0.0, adaptive=False))
    loop = asyncio.new_event_loop()
    rng = random.Random(2)
    batch = []
    for i in range(entries):
        key = rng.randrange(shard.ending_hash_key)
        pending = _Pending(bytes(100), f"key-{i}", None, key, 106, loop.create_future(), 0.0)
        batch.append(_Entry(queue, [pending], PutRecordsEntry(bytes(100), f"key-{i}")))
    results = [PutRecordsResultEntry(shard.shard_id, "1") for _ in batch]
    producer = AsyncProducer("bench")
    producer._sender.autosplit = types.SimpleNamespace(  # type: ignore[assignment]
        counts=WindowCounts(64, {shard.shard_id: shard}.get)
    )
    best = min(
        timeit.repeat(
            lambda: producer._sender._count_for_autosplit(batch, results),
            number=200,
            repeat=5,
            timer=time.process_time,
        )
    )
    loop.close()
    return best / (200 * entries) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="per aggregated run")
    parser.add_argument("--unaggregated-records", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, kinesio {version('kinesio')}, "
        f"{platform.machine()}; 4 shards, 100-byte records, {KEYS} keys, "
        f"{args.rounds} rounds"
    )
    print()
    print("| aggregation | records | off µs/record: best (median) | on: best (median) | on − off |")
    print("|---|---:|---:|---:|---:|")
    for aggregate, records in ((True, args.records), (False, args.unaggregated_records)):
        off: list[float] = []
        on: list[float] = []
        await one_run(records // 10, aggregate=aggregate, auto_split=False)  # warm up
        for _ in range(args.rounds):
            off.append(await one_run(records, aggregate=aggregate, auto_split=False))
            on.append(await one_run(records, aggregate=aggregate, auto_split=True))
        print(
            f"| {'KPL' if aggregate else 'off'} | {records:,} "
            f"| {min(off):.2f} ({statistics.median(off):.2f}) "
            f"| {min(on):.2f} ({statistics.median(on):.2f}) | {min(on) - min(off):+.2f} |"
        )
    per_call = counting_cost()
    print()
    print("| per-answer counting | µs per Kinesis record | µs per user record, 100-byte records |")
    print("|---|---:|---:|")
    print(f"| without aggregation | {per_call:.3f} | {per_call:.3f} |")
    print(
        f"| KPL (~400 user records per 51 200-byte aggregate) | {per_call:.3f} "
        f"| {per_call / 400:.4f} |"
    )


if __name__ == "__main__":
    asyncio.run(main())
