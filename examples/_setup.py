"""What every example shares and none of them is about: the command-line options for where
the stream is, and ``--local``, which starts the embedded emulator and creates the stream.

Not an example itself: copy an example's other functions into your code, not this file.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager

import kinesio


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    """``--stream`` (or ``$KINESIS_STREAM``), ``--region``, ``--endpoint-url``, ``--local``,
    ``--shards``."""
    parser.add_argument("--stream", default=os.environ.get("KINESIS_STREAM", "kinesio-example"))
    parser.add_argument("--region", help="AWS region (default: as boto3 finds it)")
    parser.add_argument(
        "--endpoint-url", help="Kinesis (and, to consume, DynamoDB) endpoint (default: AWS's)"
    )
    parser.add_argument("--local", action="store_true", help="run on the embedded emulator")
    parser.add_argument("--shards", type=int, default=2, help="with --local: the stream's shards")


@contextmanager
def aws_for(args: argparse.Namespace) -> Iterator[kinesio.AWSConfig]:
    """The AWS access the options name; with ``--local``, the embedded emulator (moto, on
    127.0.0.1) holding a new stream, stopped when the block ends."""
    if not args.local:
        yield kinesio.AWSConfig(region_name=args.region, endpoint_url=args.endpoint_url)
        return
    import boto3  # installed with kinesio[local], as moto needs it

    from kinesio.local import LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY, moto_server

    with moto_server() as endpoint:
        boto3.client(
            "kinesis",
            endpoint_url=endpoint.endpoint_url,
            region_name=endpoint.region_name,
            aws_access_key_id=LOCAL_ACCESS_KEY,
            aws_secret_access_key=LOCAL_SECRET_KEY,
        ).create_stream(StreamName=args.stream, ShardCount=args.shards)
        print(f"embedded emulator at {endpoint.endpoint_url}, stream {args.stream!r} created")
        yield endpoint.aws_config()


def put_records(stream: str, count: int, aws: kinesio.AWSConfig) -> None:
    """Give a consumer example something to read on the new local stream (see
    produce_blocking.py)."""
    with kinesio.Producer(stream, aws=aws) as producer:
        futures = [
            producer.put(f"record {i}".encode(), partition_key=f"user-{i % 10}")
            for i in range(count)
        ]
        for future in futures:
            future.result()
    print(f"put {count} records into {stream!r}")
