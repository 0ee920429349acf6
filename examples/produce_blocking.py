"""Produce records with the blocking producer, ``kinesio.Producer``.

The same work as ``produce_async.py`` without asyncio: ``put()`` returns a
``concurrent.futures.Future`` at once (the producer is thread-safe; share one between threads),
and ``result()`` waits until Kinesis has the record. Leaving the ``with`` block delivers
everything still buffered.

On the embedded emulator (no AWS account; needs ``pip install 'kinesio[local]'``)::

    python examples/produce_blocking.py --local

On a stream of yours (credentials and region as for the AWS CLI and boto3)::

    python examples/produce_blocking.py --stream my-stream --count 100 [--region eu-west-1]

``--endpoint-url`` points it at another Kinesis (LocalStack, kinesis-mock, ...).
"""

from __future__ import annotations

import argparse
from collections import Counter

from _setup import add_stream_arguments, aws_for

import kinesio


def produce(stream: str, count: int, aws: kinesio.AWSConfig) -> None:
    settings = kinesio.ProducerSettings(linger=0.05)
    with kinesio.Producer(stream, aws=aws, settings=settings) as producer:
        futures = [
            producer.put(f"record {i}".encode(), partition_key=f"user-{i % 10}")
            for i in range(count)
        ]
        results = [f.result() for f in futures]  # raises if a record failed for good
        m = producer.metrics()
        print(
            f"{m.user_records_put} user records sent as {m.kinesis_records_put} Kinesis records "
            f"(KPL aggregation) in {m.put_records_calls} PutRecords calls"
        )
    for shard_id, n in sorted(Counter(r.shard_id for r in results).items()):
        print(f"{shard_id}: {n} records")
    print(f"produced {len(results)} records to {stream!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Produce records with kinesio.Producer.")
    add_stream_arguments(parser)
    parser.add_argument("--count", type=int, default=100, help="records to put (default 100)")
    args = parser.parse_args()

    with aws_for(args) as aws:
        produce(args.stream, args.count, aws)


if __name__ == "__main__":
    main()
