"""A playground consumer worker: ``python -m kinesio.cli._worker STREAM APP LOGFILE``.

Runs a :class:`kinesio.Consumer` and appends every handled record and every lease write to
LOGFILE (:class:`kinesio.testing.chaos.WorkerLog`: one line each, flushed), so the playground
can check that nothing was lost, nothing reordered and no checkpoint written without the lease.
AWS endpoint and credentials come from the AWS_* environment. SIGTERM shuts it down gracefully.
"""

from __future__ import annotations

import argparse
import logging
import sys

import kinesio
from kinesio.testing.chaos import WorkerLog


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kinesio-playground-worker")
    parser.add_argument("stream")
    parser.add_argument("app")
    parser.add_argument("log")
    parser.add_argument("--failover", type=float, default=3.0, help="failover time, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    settings = kinesio.ConsumerSettings(
        failover_time=args.failover,
        take_interval=args.failover / 3,
        shard_sync_interval=2.0,
        initial_position=kinesio.InitialPosition.TRIM_HORIZON,
        retrieval=kinesio.Polling(idle_time=0.2, catch_up_interval=0.05),
    )
    with open(args.log, "a", buffering=1, encoding="utf-8") as out:
        log = WorkerLog(out, args.log)

        def handle(record: kinesio.Record) -> None:
            log.handled(record.shard_id, record.position, record.data)

        consumer = kinesio.Consumer(
            args.stream, application_name=args.app, settings=settings, on_event=log.event
        )
        consumer.consume_with(handle, checkpoint_every=100, checkpoint_interval=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
