"""Where the producer's CPU goes: CPU µs per user record on the in-memory Kinesis, and a profile.

Run: .venv/bin/python benchmarks/profile_producer.py [--records N] [--profile] [--top K]

Writes N 100-byte records (random partition keys from 1000 keys, as bench_producer_cpu.py)
through ``AsyncProducer`` (and, with ``--blocking``, the blocking ``Producer``) into
``kinesio.testing.InMemoryKinesis`` with its limits off, aggregated and not. Without an HTTP
sink the figure is the producer's own cost: ``time.process_time()`` of this process from the
first put to the end of ``flush()``, divided by N. With ``--profile`` each case also runs under
cProfile and prints its top functions by self time (cProfile's overhead inflates small functions;
the unprofiled figure, the best of ``--repeat`` runs, is the one to compare).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import random
import time

from kinesio import AsyncProducer, Producer, ProducerSettings
from kinesio.testing import InMemoryKinesis

STREAM = "profile"
KEYS = 1000
RECORD_SIZE = 100


def workload(n: int, seed: int = 42) -> tuple[list[bytes], list[str]]:
    rng = random.Random(seed)
    pad = rng.randbytes(RECORD_SIZE - 10)
    pool = [f"pk-{i:04d}" for i in range(KEYS)]
    return [b"%010d" % i + pad for i in range(n)], [pool[rng.randrange(KEYS)] for _ in range(n)]


async def _stream(shards: int) -> InMemoryKinesis:
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, shards)
    return kinesis


def _settings(aggregate: bool) -> ProducerSettings:
    # The in-memory sink has no shard limit; the producer's limiter still applies, so give it
    # room for the whole run: the figure is the per-record work, not the wait.
    return ProducerSettings(aggregate=aggregate, rate_limit=1000.0)


async def run_async(
    data: list[bytes], keys: list[str], aggregate: bool, shards: int, submit: bool = False
) -> float:
    kinesis = await _stream(shards)
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=_settings(aggregate)) as producer:
        put = producer.submit if submit else producer.put
        start = time.process_time()
        for d, k in zip(data, keys, strict=True):
            await put(d, k)
        await producer.flush()
        cpu = time.process_time() - start
        m = producer.metrics()
    if m.user_records_put != len(data):
        raise SystemExit(f"only {m.user_records_put} of {len(data)} records delivered")
    return cpu


def run_blocking(data: list[bytes], keys: list[str], aggregate: bool, shards: int) -> float:
    kinesis = asyncio.run(_stream(shards))
    with Producer(STREAM, kinesis=kinesis, settings=_settings(aggregate)) as producer:
        put = producer.put
        start = time.process_time()
        for d, k in zip(data, keys, strict=True):
            put(d, k)
        producer.flush()
        cpu = time.process_time() - start
        m = producer.metrics()
    if m.user_records_put != len(data):
        raise SystemExit(f"only {m.user_records_put} of {len(data)} records delivered")
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--blocking", action="store_true", help="also the blocking Producer")
    parser.add_argument("--submit", action="store_true", help="also AsyncProducer.submit")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--only", choices=("aggregated", "unaggregated"))
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best is shown")
    args = parser.parse_args()
    data, keys = workload(args.records)
    cases = [(True, "aggregated"), (False, "unaggregated")]
    print("| client | aggregation | records | CPU µs per record |")
    print("|---|---|---:|---:|")
    profiles: list[tuple[str, str]] = []
    for aggregate, label in cases:
        if args.only and args.only != label:
            continue
        runs = [
            asyncio.run(run_async(data, keys, aggregate, args.shards)) for _ in range(args.repeat)
        ]
        cpu = min(runs)
        print(f"| AsyncProducer | {label} | {args.records:,} | {cpu / args.records * 1e6:.2f} |")
        if args.submit:
            cpu = min(
                asyncio.run(run_async(data, keys, aggregate, args.shards, submit=True))
                for _ in range(args.repeat)
            )
            print(
                f"| AsyncProducer.submit | {label} | {args.records:,} "
                f"| {cpu / args.records * 1e6:.2f} |"
            )
        if args.blocking:
            cpu = min(run_blocking(data, keys, aggregate, args.shards) for _ in range(args.repeat))
            print(f"| Producer | {label} | {args.records:,} | {cpu / args.records * 1e6:.2f} |")
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            asyncio.run(run_async(data, keys, aggregate, args.shards, submit=args.submit))
            prof.disable()
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime")
            stats.print_stats(args.top)
            profiles.append((label, out.getvalue()))
    for label, text in profiles:
        who = "AsyncProducer.submit" if args.submit else "AsyncProducer"
        print(f"\n## cProfile, {who}, {label}, top {args.top} by self time\n")
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        print("\n".join(lines[start - 2 :]).rstrip())


if __name__ == "__main__":
    main()
