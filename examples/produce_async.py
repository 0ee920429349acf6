"""Produce records with the asyncio producer, ``kinesio.AsyncProducer``.

Puts ``--count`` records (``record 0``, ``record 1``, ...) under ten partition keys, waits
until Kinesis has every one, and prints how many landed on each shard. The producer batches
and KPL-aggregates them per shard on the way.

On the embedded emulator (no AWS account; needs ``pip install 'kinesio[local]'``)::

    python examples/produce_async.py --local

On a stream of yours (credentials and region as for the AWS CLI and boto3)::

    python examples/produce_async.py --stream my-stream --count 100 [--region eu-west-1]

``--endpoint-url`` points it at another Kinesis (LocalStack, kinesis-mock, ...).
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter

from _setup import add_stream_arguments, aws_for

import kinesio


async def produce(stream: str, count: int, aws: kinesio.AWSConfig) -> None:
    settings = kinesio.ProducerSettings(linger=0.05)
    async with kinesio.AsyncProducer(stream, aws=aws, settings=settings) as producer:
        # put() returns once the record is accepted; its future resolves when Kinesis has it
        futures = [
            await producer.put(f"record {i}".encode(), partition_key=f"user-{i % 10}")
            for i in range(count)
        ]
        results = await asyncio.gather(*futures)  # raises if a record failed for good
        m = producer.metrics()
        print(
            f"{m.user_records_put} user records sent as {m.kinesis_records_put} Kinesis records "
            f"(KPL aggregation) in {m.put_records_calls} PutRecords calls"
        )
    for shard_id, n in sorted(Counter(r.shard_id for r in results).items()):
        print(f"{shard_id}: {n} records")
    print(f"produced {len(results)} records to {stream!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Produce records with kinesio.AsyncProducer.")
    add_stream_arguments(parser)
    parser.add_argument("--count", type=int, default=100, help="records to put (default 100)")
    args = parser.parse_args()

    with aws_for(args) as aws:
        asyncio.run(produce(args.stream, args.count, aws))


if __name__ == "__main__":
    main()
