"""Shard utilisation: how much of the shard write limits one kinesio AsyncProducer achieves.

Run: .venv/bin/python benchmarks/bench_shard_utilisation.py        (about 2 min)

One AsyncProducer (default settings apart from ``rate_limit`` and ``aggregate``) writes into a
1-shard and a 4-shard stream of ``kinesio.testing.InMemoryKinesis`` with its limits on: per
shard 1000 records/s and 1 MiB/s (token buckets holding one second's worth; entries over the
limit come back with ProvisionedThroughputExceededException, as from Kinesis). Everything runs
in this process, on real time, with no network. A writer task puts records as fast as
``put()`` accepts them (the backlog stays full; ``Block()`` makes put() wait), with 100-byte
and 10 KiB records and random partition keys drawn from 1000 keys.

Counts are taken over a window that starts after ``--warmup`` seconds (both the producer's
and the fake's buckets start full, which flatters the first second) and lasts ``--duration``
seconds:
  - user records/s and user data bytes/s per shard (what the application wrote);
  - Kinesis records/s and bytes/s per shard as the service counts them (aggregates, data plus
    partition key), and their share of the 1000 records/s and 1 MiB/s limits;
  - throttled: Kinesis records refused by the fake (share of those sent); retries: user records
    sent again; failed: user records that failed for good (expired) before the close;
  - PutRecords calls, and Kinesis records (accepted + throttled) per call;
  - CPU: this process's CPU time over the window (the fake's included) as a share of one core;
  - latency p50/p99 (ms, put() to result) over the whole run. With the backlog always full it
    is the time a record waits in the backlog (about backlog size / throughput), so it grows
    through the run: compare it between settings, not with an unsaturated producer.
At the end the producer is closed with ``timeout=0``: what it still holds is abandoned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import platform
import random
import resource
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from kinesio import AsyncProducer, ProducerClosedError, ProducerMetrics, ProducerSettings
from kinesio.testing import InMemoryKinesis

MiB = 1024 * 1024
SHARD_RECORDS_PER_SECOND = 1000
SHARD_BYTES_PER_SECOND = MiB
KEYS = 1000


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Snapshot:
    at: float
    cpu: float
    metrics: ProducerMetrics
    records_in: int
    bytes_in: int
    throttled: int

    @classmethod
    def take(cls, producer: AsyncProducer, kinesis: InMemoryKinesis, stream: str) -> Snapshot:
        stats = kinesis.stats(stream).values()
        return cls(
            at=time.monotonic(),
            cpu=cpu_seconds(),
            metrics=producer.metrics(),
            records_in=sum(s.records_in for s in stats),
            bytes_in=sum(s.bytes_in for s in stats),
            throttled=sum(s.throttled_records for s in stats),
        )


@dataclass
class Row:
    shards: int
    record_size: int
    rate_limit: float
    aggregate: bool = True
    seconds: float = 0.0
    cpu: float = 0.0
    user_records: int = 0
    user_bytes: int = 0
    kinesis_records: int = 0
    kinesis_bytes: int = 0
    throttled: int = 0
    retries: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    failed: int = 0
    calls: int = 0
    notes: list[str] = field(default_factory=list)

    def per_shard_second(self, count: int) -> float:
        return count / self.seconds / self.shards


def _ignore_abandoned(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if not isinstance(context.get("exception"), ProducerClosedError):
        loop.default_exception_handler(context)


async def run(
    shards: int,
    record_size: int,
    rate_limit: float,
    aggregate: bool,
    warmup: float,
    duration: float,
) -> Row:
    # The records abandoned at the end fail with ProducerClosedError in futures nobody awaits:
    # keep asyncio from reporting each of them.
    asyncio.get_running_loop().set_exception_handler(_ignore_abandoned)
    kinesis = InMemoryKinesis()  # limits on
    stream = "utilisation"
    await kinesis.create_stream(stream, shards)
    rng = random.Random(42)
    data = rng.randbytes(record_size)
    pool = [f"pk-{i:04d}" for i in range(KEYS)]
    keys = [pool[rng.randrange(KEYS)] for _ in range(100_003)]
    settings = ProducerSettings(rate_limit=rate_limit, aggregate=aggregate)
    producer = AsyncProducer(stream, settings=settings, kinesis=kinesis)
    await producer.start()

    async def write() -> None:
        put = producer.put
        i = 0
        n = len(keys)
        while True:
            await put(data, keys[i % n])
            i += 1

    writer = asyncio.create_task(write())
    await asyncio.sleep(warmup)
    first = Snapshot.take(producer, kinesis, stream)
    await asyncio.sleep(duration)
    last = Snapshot.take(producer, kinesis, stream)
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    await producer.aclose(timeout=0)

    a, b = first.metrics, last.metrics
    return Row(
        shards=shards,
        record_size=record_size,
        rate_limit=rate_limit,
        aggregate=aggregate,
        seconds=last.at - first.at,
        cpu=last.cpu - first.cpu,
        user_records=b.user_records_put - a.user_records_put,
        user_bytes=b.user_bytes_put - a.user_bytes_put,
        kinesis_records=last.records_in - first.records_in,
        kinesis_bytes=last.bytes_in - first.bytes_in,
        throttled=last.throttled - first.throttled,
        retries=b.retries - a.retries,
        p50_ms=b.latency_percentile(50),
        p99_ms=b.latency_percentile(99),
        failed=b.user_records_failed,
        calls=b.put_records_calls - a.put_records_calls,
    )


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def print_table(rows: list[Row]) -> None:
    print(
        "| shards | record | aggregation | rate_limit | user rec/s /shard | user MB/s /shard "
        "| Kinesis rec/s /shard (of 1000) | Kinesis bytes/s /shard (of 1 MiB) "
        "| throttled (of sent) | retries | failed | PutRecords calls | Kinesis records per call "
        "| p50 / p99 latency ms | CPU |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        krps = r.per_shard_second(r.kinesis_records)
        kbps = r.per_shard_second(r.kinesis_bytes)
        sent = r.kinesis_records + r.throttled
        throttled = f"{r.throttled:,} ({r.throttled / sent:.0%})" if sent else "0"
        default = ProducerSettings().rate_limit
        label = f"{r.rate_limit:g}" + (
            " (default)" if r.rate_limit == default else " (KPL)" if r.rate_limit == 1.5 else ""
        )
        print(
            f"| {r.shards} | {size_label(r.record_size)} | {'on' if r.aggregate else 'off'} "
            f"| {label} "
            f"| {r.per_shard_second(r.user_records):,.0f} "
            f"| {r.per_shard_second(r.user_bytes) / 1e6:.2f} "
            f"| {krps:,.0f} ({krps / SHARD_RECORDS_PER_SECOND:.0%}) "
            f"| {kbps / MiB:.2f} MiB ({kbps / SHARD_BYTES_PER_SECOND:.0%}) "
            f"| {throttled} | {r.retries:,} | {r.failed:,} | {r.calls:,} "
            f"| {(r.kinesis_records + r.throttled) / r.calls if r.calls else 0:,.0f} "
            f"| {r.p50_ms:,.0f} / {r.p99_ms:,.0f} "
            f"| {r.cpu / r.seconds:.0%} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--shards", default="1,4", help="comma-separated shard counts")
    parser.add_argument("--sizes", default="100,10240", help="comma-separated record sizes")
    parser.add_argument("--rate-limits", default="1.5,1.0", help="comma-separated rate_limit")
    parser.add_argument("--aggregation", default="on,off", help="comma-separated: on, off")
    args = parser.parse_args()
    # Closing with timeout=0 abandons the backlog on purpose; its warning is expected.
    logging.getLogger("kinesio.producer").setLevel(logging.ERROR)

    rows: list[Row] = []
    for shards in (int(s) for s in args.shards.split(",")):
        for size in (int(s) for s in args.sizes.split(",")):
            for rate_limit in (float(r) for r in args.rate_limits.split(",")):
                for aggregate in (a == "on" for a in args.aggregation.split(",")):
                    row = asyncio.run(
                        run(shards, size, rate_limit, aggregate, args.warmup, args.duration)
                    )
                    rows.append(row)
    print(
        f"Python {platform.python_version()}, kinesio {version('kinesio')}, "
        f"{platform.machine()}; InMemoryKinesis with limits on; {args.warmup:g} s warm-up, "
        f"{args.duration:g} s measured per run; settings default but aggregation and rate_limit"
    )
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
