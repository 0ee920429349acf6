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
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def local_stream(stream: str, shards: int) -> Iterator[kinesio.AWSConfig]:
    """Start the embedded emulator (moto, on 127.0.0.1) and create the stream in it."""
    import boto3  # installed with kinesio[local], as moto needs it

    from kinesio.local import LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY, moto_server

    with moto_server() as endpoint:
        boto3.client(
            "kinesis",
            endpoint_url=endpoint.endpoint_url,
            region_name=endpoint.region_name,
            aws_access_key_id=LOCAL_ACCESS_KEY,
            aws_secret_access_key=LOCAL_SECRET_KEY,
        ).create_stream(StreamName=stream, ShardCount=shards)
        print(f"embedded emulator at {endpoint.endpoint_url}, stream {stream!r} created")
        yield endpoint.aws_config()


def main() -> None:
    parser = argparse.ArgumentParser(description="Produce records with kinesio.Producer.")
    parser.add_argument("--stream", default=os.environ.get("KINESIS_STREAM", "kinesio-example"))
    parser.add_argument("--count", type=int, default=100, help="records to put (default 100)")
    parser.add_argument("--region", help="AWS region (default: as boto3 finds it)")
    parser.add_argument("--endpoint-url", help="Kinesis endpoint (default: AWS's)")
    parser.add_argument("--local", action="store_true", help="run on the embedded emulator")
    parser.add_argument("--shards", type=int, default=2, help="with --local: the stream's shards")
    args = parser.parse_args()

    if args.local:
        with local_stream(args.stream, args.shards) as aws:
            produce(args.stream, args.count, aws)
    else:
        produce(
            args.stream,
            args.count,
            kinesio.AWSConfig(region_name=args.region, endpoint_url=args.endpoint_url),
        )


if __name__ == "__main__":
    main()
