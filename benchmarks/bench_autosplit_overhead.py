"""Auto-split's cost on the send path: producer CPU per record with ``auto_split`` off and on.

Run: .venv/bin/python benchmarks/bench_autosplit_overhead.py        (about 1 min)

One AsyncProducer writes 100-byte records with random partition keys (1000 keys) into a
4-shard ``kinesio.testing.InMemoryKinesis`` with its limits off (no throttling, no waiting: the
run measures CPU, not Kinesis), in this process. ``auto_split=AutoSplit()`` (defaults: one-minute
windows, so no window closes and no split happens during a run) adds only the per-request
counting of each Kinesis record (counts and the hash-key histogram). CPU is this process's
user + system time from the first put until flush() returns (the fake's share included, the
same in both columns). Off and on alternate, ``--rounds`` times each; the table shows the
median and the spread (min–max) of CPU µs per user record.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import resource
import statistics
from importlib.metadata import version

from kinesio import AsyncProducer, AutoSplit, ProducerSettings
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
    print("| aggregation | records | off µs/record | on µs/record | on − off |")
    print("|---|---:|---:|---:|---:|")
    for aggregate, records in ((True, args.records), (False, args.unaggregated_records)):
        off: list[float] = []
        on: list[float] = []
        await one_run(records // 10, aggregate=aggregate, auto_split=False)  # warm up
        for _ in range(args.rounds):
            off.append(await one_run(records, aggregate=aggregate, auto_split=False))
            on.append(await one_run(records, aggregate=aggregate, auto_split=True))
        m_off, m_on = statistics.median(off), statistics.median(on)
        print(
            f"| {'KPL' if aggregate else 'off'} | {records:,} "
            f"| {m_off:.2f} ({min(off):.2f}–{max(off):.2f}) "
            f"| {m_on:.2f} ({min(on):.2f}–{max(on):.2f}) | {m_on - m_off:+.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
