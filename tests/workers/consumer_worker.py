"""A consumer worker process for integration tests: logs every record it handles.

Usage: python consumer_worker.py STREAM APP LOGFILE [--failover S] [--checkpoint-every N]
Endpoint and credentials come from the AWS_* environment, as for any kinesio program.
Each handled record is appended to LOGFILE as ``shard_id sequence sub data`` and flushed.
SIGTERM / SIGINT shut it down gracefully (final checkpoint, leases released).
"""

from __future__ import annotations

import argparse
import logging
import sys

import kinesio


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stream")
    parser.add_argument("app")
    parser.add_argument("log")
    parser.add_argument("--failover", type=float, default=2.0)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = kinesio.ConsumerSettings(
        failover_time=args.failover,
        take_interval=args.failover / 4,
        shard_sync_interval=1.0,
        initial_position=kinesio.InitialPosition.TRIM_HORIZON,
        retrieval=kinesio.Polling(idle_time=0.1, catch_up_interval=0.05),
    )
    out = open(args.log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process

    def handle(record: kinesio.Record) -> None:
        out.write(
            f"{record.shard_id} {record.sequence_number} {record.sub_sequence_number} "
            f"{record.data.decode()}\n"
        )

    consumer = kinesio.Consumer(args.stream, application_name=args.app, settings=settings)
    consumer.consume_with(handle, checkpoint_every=args.checkpoint_every, checkpoint_interval=1.0)
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
