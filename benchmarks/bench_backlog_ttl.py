"""Backlog against TTL: does a backlog larger than the shards can send within the TTL lose records?

Run: .venv/bin/python benchmarks/bench_backlog_ttl.py        (about 30 s)

One AsyncProducer (aggregation off, default settings but ``record_ttl``) puts N 100-byte records
with random keys from 1000 as fast as ``put()`` returns into a 4-shard
``kinesio.testing.InMemoryKinesis`` stream with its limits on (1000 records/s per shard), then
flushes. The default backlog (100 000 records) admits far more than 4 shards send within a
short TTL, the way 200 000 records against the 30 s default did in bench_producer_cpu.py. The
table says how many records were delivered, how many failed and with which error (and the
record's last send error), the deepest shard queue seen, and how long put() was blocked in all.
Every record's future is awaited: nothing is counted twice or missed.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import time
from collections import Counter
from importlib.metadata import version
from typing import Any

from kinesio import AsyncProducer, KinesioError, ProducerSettings, PutResult
from kinesio.testing import InMemoryKinesis

KEYS = 1000
SHARDS = 4


def shard_depths(producer: AsyncProducer) -> list[int]:
    """Records queued per shard (also from the tree before the accumulator split, for A/B)."""
    acc: Any = getattr(producer, "_acc", None)
    queues: dict[str, Any] = acc.queues if acc is not None else vars(producer)["_queues"]
    return [len(q.queue) for q in queues.values()] or [0]


async def run(records: int, ttl: float) -> dict[str, object]:
    kinesis = InMemoryKinesis()  # limits on: 1000 records/s and 1 MiB/s per shard
    await kinesis.create_stream("ttl", SHARDS)
    rng = random.Random(7)
    pool = [f"pk-{i:04d}" for i in range(KEYS)]
    keys = [pool[rng.randrange(KEYS)] for _ in range(records)]
    data = rng.randbytes(100)
    settings = ProducerSettings(aggregate=False, record_ttl=ttl)
    futures: list[asyncio.Future[PutResult]] = []
    blocked = 0.0
    started = time.monotonic()
    async with AsyncProducer("ttl", kinesis=kinesis, settings=settings) as producer:
        # The deepest shard queue, sampled while the backlog fills and drains.
        deepest = 0

        async def sample() -> None:
            nonlocal deepest
            while True:
                deepest = max(deepest, *shard_depths(producer))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        for k in keys:
            t = time.monotonic()
            futures.append(await producer.put(data, k))
            waited = time.monotonic() - t
            if waited > 0.001:
                blocked += waited
        await producer.flush()
        sampler.cancel()
    outcomes: Counter[str] = Counter()
    for f in futures:
        exc = f.exception()
        if exc is None:
            outcomes["delivered"] += 1
        else:
            last = getattr(exc, "last_error", None)
            attempts = getattr(exc, "attempts", None)
            outcomes[f"{type(exc).__name__} (attempts {attempts}, last error {last})"] += 1
            assert isinstance(exc, KinesioError)
    return {
        "outcomes": outcomes,
        "deepest": deepest,
        "blocked": blocked,
        "wall": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--ttl", type=float, default=6.0, help="record_ttl, seconds")
    args = parser.parse_args()
    r = asyncio.run(run(args.records, args.ttl))
    print(
        f"Python {platform.python_version()}, kinesio {version('kinesio')}; {SHARDS} shards "
        f"(InMemoryKinesis, limits on), {args.records:,} unaggregated 100-byte records, "
        f"record_ttl {args.ttl:g} s"
    )
    print()
    print("| outcome | records |")
    print("|---|---:|")
    outcomes = r["outcomes"]
    assert isinstance(outcomes, Counter)
    for name, n in sorted(outcomes.items()):
        print(f"| {name} | {n:,} |")
    print()
    print(
        f"deepest shard queue {r['deepest']:,} records; put() blocked {r['blocked']:.1f} s in all; "
        f"wall {r['wall']:.1f} s"
    )


if __name__ == "__main__":
    main()
