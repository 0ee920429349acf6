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
import threading
from collections.abc import Callable

from _setup import add_stream_arguments, aws_for, put_records

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


def main() -> None:
    parser = argparse.ArgumentParser(description="A KCL-style kinesio.RecordProcessor.")
    add_stream_arguments(parser)
    parser.add_argument(
        "--application-name", default="kinesio-example", help="names the lease table too"
    )
    parser.add_argument("--count", type=int, default=100, help="stop after this many records")
    args = parser.parse_args()

    with aws_for(args) as aws:
        if args.local:  # a new stream: put something there to read
            put_records(args.stream, args.count, aws)
        consume(args.stream, args.application_name, args.count, aws)


if __name__ == "__main__":
    main()
