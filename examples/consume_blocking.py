"""Consume a stream with the blocking consumer, ``kinesio.Consumer``.

The same work as ``consume_async.py`` without asyncio: ``consume_with(handle)`` blocks, calling
``handle(record)`` in a worker thread a batch at a time, until ``request_shutdown()`` (safe from
any thread) or SIGTERM / Ctrl-C. It stops once it has read ``--count`` records: it finishes the
batch in hand, checkpoints it in the lease table (DynamoDB, created on first use) and releases
its leases.

On the embedded emulator (no AWS account; needs ``pip install 'kinesio[local]'``), which also
puts ``--count`` records into the new stream first so that there is something to read::

    python examples/consume_blocking.py --local

On a stream of yours (needs Kinesis read and DynamoDB access)::

    python examples/consume_blocking.py --stream my-stream --count 100 [--region eu-west-1]

``--endpoint-url`` points it at another endpoint serving Kinesis and DynamoDB (LocalStack, ...).
"""

from __future__ import annotations

import argparse
import threading

from _setup import add_stream_arguments, aws_for, put_records

import kinesio


def consume(stream: str, application: str, count: int, aws: kinesio.AWSConfig) -> None:
    settings = kinesio.ConsumerSettings(initial_position=kinesio.InitialPosition.TRIM_HORIZON)
    consumer = kinesio.Consumer(stream, application_name=application, aws=aws, settings=settings)
    seen = 0
    lock = threading.Lock()  # shards are handled in parallel threads

    def handle(record: kinesio.Record) -> None:  # each shard's records in order
        nonlocal seen
        with lock:
            seen += 1
            print(
                f"{record.shard_id} {record.sequence_number}:{record.sub_sequence_number} "
                f"{record.partition_key} {record.data.decode(errors='replace')}"
            )
            if seen == count:
                consumer.request_shutdown()  # finish this batch, checkpoint, release the leases

    consumer.consume_with(handle, checkpoint_every=100)
    print(f"consumed {seen} records from {stream!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Consume a stream with kinesio.Consumer.")
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
