"""Consume a stream with the asyncio consumer, ``kinesio.AsyncConsumer``.

Reads the stream from its oldest records (TRIM_HORIZON), prints each record (deaggregated, with
its shard and sequence numbers) and stops once it has read ``--count`` records: it finishes the
batch in hand, checkpoints it in the lease table (DynamoDB, created on first use) and releases
its leases. Run it again with the same ``--application-name`` and it resumes after the
checkpoint; start it several times at once and the copies share the shards.

On the embedded emulator (no AWS account; needs ``pip install 'kinesio[local]'``), which also
puts ``--count`` records into the new stream first so that there is something to read::

    python examples/consume_async.py --local

On a stream of yours (needs Kinesis read and DynamoDB access)::

    python examples/consume_async.py --stream my-stream --count 100 [--region eu-west-1]

``--endpoint-url`` points it at another endpoint serving Kinesis and DynamoDB (LocalStack, ...).
"""

from __future__ import annotations

import argparse
import asyncio

from _setup import add_stream_arguments, aws_for

import kinesio


async def consume(stream: str, application: str, count: int, aws: kinesio.AWSConfig) -> None:
    settings = kinesio.ConsumerSettings(initial_position=kinesio.InitialPosition.TRIM_HORIZON)
    seen = 0
    async with kinesio.AsyncConsumer(
        stream, application_name=application, aws=aws, settings=settings
    ) as consumer:

        def handle(record: kinesio.Record) -> None:  # may be async too
            nonlocal seen
            seen += 1
            print(
                f"{record.shard_id} {record.sequence_number}:{record.sub_sequence_number} "
                f"{record.partition_key} {record.data.decode(errors='replace')}"
            )
            if seen == count:
                consumer.request_shutdown()  # finish this batch, checkpoint, release the leases

        await consumer.consume_with(handle, checkpoint_every=100)
    print(f"consumed {seen} records from {stream!r}")


async def put_records(stream: str, count: int, aws: kinesio.AWSConfig) -> None:
    """Give the consumer something to read (see produce_async.py)."""
    async with kinesio.AsyncProducer(stream, aws=aws) as producer:
        futures = [
            await producer.put(f"record {i}".encode(), partition_key=f"user-{i % 10}")
            for i in range(count)
        ]
        await asyncio.gather(*futures)
    print(f"put {count} records into {stream!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Consume a stream with kinesio.AsyncConsumer.")
    add_stream_arguments(parser)
    parser.add_argument(
        "--application-name", default="kinesio-example", help="names the lease table too"
    )
    parser.add_argument("--count", type=int, default=100, help="stop after this many records")
    args = parser.parse_args()

    with aws_for(args) as aws:
        if args.local:  # a new stream: put something there to read
            asyncio.run(put_records(args.stream, args.count, aws))
        asyncio.run(consume(args.stream, args.application_name, args.count, aws))


if __name__ == "__main__":
    main()
