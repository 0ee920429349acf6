"""A KCL-style record processor, ``kinesio.RecordProcessor``, for code coming from amazon_kclpy.

``kinesio.Consumer(...).run(Processor)`` creates one processor per leased shard and calls its
``initialize``, ``process_records`` (a batch, with a checkpointer), then ``shard_ended``,
``lease_lost`` or ``shutdown_requested`` — the methods of the KCL's ShardRecordProcessor.
Methods may be sync (run in a worker thread, with a blocking checkpointer, as here) or async
(with ``AsyncConsumer.run`` and ``await input.checkpointer.checkpoint()``). This one
checkpoints after every batch and stops the consumer once ``--count`` records were processed.

On the embedded emulator (no AWS account; needs ``pip install 'kinesio[local]'``), which also
puts ``--count`` records into the new stream first so that there is something to read::

    python examples/record_processor.py --local

On a stream of yours (needs Kinesis read and DynamoDB access)::

    python examples/record_processor.py --stream my-stream --count 100 [--region eu-west-1]

``--endpoint-url`` points it at another endpoint serving Kinesis and DynamoDB (LocalStack, ...).
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import kinesio

Checkpointer = kinesio.BlockingCheckpointer
_output = threading.Lock()


def say(line: str) -> None:
    """print() from several threads at once can interleave lines: one at a time."""
    with _output:
        print(line)


class Processor:
    """One per shard; ``kinesio.Consumer.run`` calls its methods one at a time."""

    def __init__(self, on_processed: Callable[[int], None]) -> None:
        self.on_processed = on_processed
        self.shard_id = ""

    def initialize(self, input: kinesio.InitializationInput) -> None:
        self.shard_id = input.shard_id
        say(f"{self.shard_id}: start after {input.extended_sequence_number.sequence_number}")

    def process_records(self, input: kinesio.ProcessRecordsInput[Checkpointer]) -> None:
        for record in input.records:  # your processing here
            say(f"{self.shard_id} {record.partition_key} {record.data.decode(errors='replace')}")
        input.checkpointer.checkpoint()  # everything handed over so far
        say(f"{self.shard_id}: processed {len(input.records)} records, checkpointed")
        self.on_processed(len(input.records))

    def lease_lost(self, input: kinesio.LeaseLostInput) -> None:
        say(f"{self.shard_id}: lease lost (another worker has it); no checkpoint")

    def shard_ended(self, input: kinesio.ShardEndedInput[Checkpointer]) -> None:
        say(f"{self.shard_id}: shard ended (resharded); its children come next")

    def shutdown_requested(self, input: kinesio.ShutdownRequestedInput[Checkpointer]) -> None:
        input.checkpointer.checkpoint()
        say(f"{self.shard_id}: shutting down, checkpointed")


def consume(stream: str, application: str, count: int, aws: kinesio.AWSConfig) -> None:
    settings = kinesio.ConsumerSettings(initial_position=kinesio.InitialPosition.TRIM_HORIZON)
    consumer = kinesio.Consumer(stream, application_name=application, aws=aws, settings=settings)
    processed = 0
    lock = threading.Lock()  # shards are processed in parallel threads

    def on_processed(n: int) -> None:
        nonlocal processed
        with lock:
            processed += n
            if processed >= count:
                consumer.request_shutdown()  # each processor gets shutdown_requested

    consumer.run(lambda: Processor(on_processed))
    say(f"consumed {processed} records from {stream!r}")


def put_records(stream: str, count: int, aws: kinesio.AWSConfig) -> None:
    """Give the consumer something to read (see produce_blocking.py)."""
    with kinesio.Producer(stream, aws=aws) as producer:
        futures = [
            producer.put(f"record {i}".encode(), partition_key=f"user-{i % 10}")
            for i in range(count)
        ]
        for future in futures:
            future.result()
    print(f"put {count} records into {stream!r}")


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
    parser = argparse.ArgumentParser(description="A KCL-style kinesio.RecordProcessor.")
    parser.add_argument("--stream", default=os.environ.get("KINESIS_STREAM", "kinesio-example"))
    parser.add_argument(
        "--application-name", default="kinesio-example", help="names the lease table too"
    )
    parser.add_argument("--count", type=int, default=100, help="stop after this many records")
    parser.add_argument("--region", help="AWS region (default: as boto3 finds it)")
    parser.add_argument("--endpoint-url", help="Kinesis and DynamoDB endpoint (default: AWS's)")
    parser.add_argument("--local", action="store_true", help="run on the embedded emulator")
    parser.add_argument("--shards", type=int, default=2, help="with --local: the stream's shards")
    args = parser.parse_args()

    if args.local:
        with local_stream(args.stream, args.shards) as aws:
            put_records(args.stream, args.count, aws)
            consume(args.stream, args.application_name, args.count, aws)
    else:
        aws = kinesio.AWSConfig(region_name=args.region, endpoint_url=args.endpoint_url)
        consume(args.stream, args.application_name, args.count, aws)


if __name__ == "__main__":
    main()
