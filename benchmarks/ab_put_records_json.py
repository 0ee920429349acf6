"""A/B: the unaggregated producer with kinesio's PutRecords JSON path, and with botocore's.

Alternates the two over one moto server in its own process (a new 4-shard stream each
run): 30 000 100-byte records over 1000 keys through ``AsyncProducer.submit``; prints the
producer process's CPU seconds (``getrusage``, first record to the end of ``flush()``).

Run: ``.venv/bin/python benchmarks/ab_put_records_json.py [--pairs 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
from typing import Any

from _harness import moto_server
from bench_producer_cpu import create_stream, workload

import kinesio._aws._kinesis as aws_kinesis
from kinesio import AsyncProducer, ProducerSettings
from kinesio.local import LOCAL_ACCESS_KEY, LOCAL_REGION, LOCAL_SECRET_KEY

RECORDS = 30_000


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(stream: str, endpoint: str, data: list[bytes], keys: list[str]) -> float:
    settings = ProducerSettings(aggregate=False)
    async with AsyncProducer(
        stream, settings=settings, endpoint_url=endpoint, region_name=LOCAL_REGION
    ) as producer:
        start = cpu_seconds()
        for d, k in zip(data, keys, strict=True):
            await producer.submit(d, k)
        await producer.flush()
        return cpu_seconds() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=4)
    args = parser.parse_args()
    import boto3

    # the emulator's throwaway credentials (kinesio.local), for both clients
    os.environ.setdefault("AWS_ACCESS_KEY_ID", LOCAL_ACCESS_KEY)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", LOCAL_SECRET_KEY)

    data, keys = workload(RECORDS)
    fast = getattr(aws_kinesis, "install_put_records_json")  # noqa: B009

    def botocore_only(client: Any) -> None:
        return None

    results: dict[str, list[float]] = {"kinesio JSON": [], "botocore": []}
    with moto_server() as endpoint:  # in its own process: its CPU is not counted
        kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name=LOCAL_REGION)
        for i in range(2 * args.pairs):
            name = "kinesio JSON" if i % 2 == 0 else "botocore"
            # AioKinesis installs the JSON path when a producer connects; the B runs skip it
            setattr(aws_kinesis, "install_put_records_json", fast if i % 2 == 0 else botocore_only)  # noqa: B010
            create_stream(kinesis, f"ab-{i}", 4)
            cpu = asyncio.run(run(f"ab-{i}", endpoint, data, keys))
            results[name].append(cpu)
            print(f"{name:13} {cpu:.3f} CPU s")
    print("\n| PutRecords path | runs | median CPU s | CPU µs per record |")
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {len(values)} | {median:.3f} | {median / RECORDS * 1e6:.1f} |")


if __name__ == "__main__":
    main()
