"""The one consumer worker program of the playground, the chaos harness and the integration
tests: ``python -m kinesio.cli._worker STREAM APP LOGFILE [options]``.

Runs an :class:`kinesio.AsyncConsumer` and appends every handled record and every lease write
to LOGFILE (:class:`kinesio.testing.chaos.WorkerLog`: one line each, flushed; records must be
``key:n`` payloads), so that its caller can check that nothing was lost, nothing reordered and
no checkpoint written without the lease. AWS endpoints and credentials come from the AWS_*
environment, or ``--kinesis-endpoint`` / ``--dynamodb-endpoint``. SIGTERM shuts it down
gracefully; it also stops when the process that started it goes away.

``--fault-rate`` injects throttles, InternalFailures, dropped connections and read timeouts
into its own GetRecords / GetShardIterator and lease-table calls (``BotocoreFaults``), and
``--storm-every`` throttling storms of all its GetRecords; ``--max-concurrency`` hands records
of different keys to an async handler at once (they finish out of order across keys).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import sys
from contextlib import AsyncExitStack

import kinesio
from kinesio._aws import AioKinesis, AWSConfig
from kinesio.leases import DynamoDBLeaseStore
from kinesio.local import LocalEndpoint
from kinesio.testing import CONNECTION_CLOSED, READ_TIMEOUT, BotocoreFaults, Fault
from kinesio.testing.chaos import WorkerLog

PTE = "ProvisionedThroughputExceededException"
#: How long a throttling storm of ``--storm-every`` lasts, seconds.
STORM_SECONDS = 2.0


def read_faults(rate: float, seed: int) -> BotocoreFaults:
    """GetRecords answers: throttled, InternalFailure, dropped connections and read timeouts."""
    return BotocoreFaults(
        Fault("GetRecords", PTE, probability=rate),
        Fault("GetRecords", "InternalFailure", probability=rate / 2),
        Fault("GetRecords", CONNECTION_CLOSED, probability=rate / 4),
        Fault("GetRecords", READ_TIMEOUT, probability=rate / 8, latency=0.2),
        Fault("GetShardIterator", "InternalFailure", probability=rate / 4),
        seed=seed,
    )


def lease_faults(rate: float, seed: int) -> BotocoreFaults:
    """Lease-table answers: InternalServerError and dropped connections."""
    return BotocoreFaults(
        Fault("*", "InternalServerError", probability=rate / 2),
        Fault("*", CONNECTION_CLOSED, probability=rate / 4),
        seed=seed,
        service="dynamodb",
    )


def _base(endpoint: str | None) -> AWSConfig | LocalEndpoint:
    """An emulator's endpoint (with its local credentials), else the AWS_* environment."""
    return LocalEndpoint(endpoint) if endpoint else AWSConfig()


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kinesio-worker", description=__doc__.splitlines()[0])
    p.add_argument("stream")
    p.add_argument("app", help="the application: its lease table has the same name")
    p.add_argument("log", help="the WorkerLog file to append to")
    p.add_argument("--name", help="worker id (default: hostname:pid:random)")
    p.add_argument("--failover", type=float, default=3.0, help="failover time, seconds")
    p.add_argument("--renew-interval", type=float, help="seconds (default: failover / 3)")
    p.add_argument("--take-interval", type=float, help="seconds (default: failover / 3)")
    p.add_argument("--shard-sync", type=float, default=2.0, help="shard sync interval, seconds")
    p.add_argument("--idle-time", type=float, default=0.2, help="polling idle time, seconds")
    p.add_argument("--checkpoint-every", type=int, default=100, help="records")
    p.add_argument("--checkpoint-interval", type=float, default=1.0, help="seconds")
    p.add_argument("--max-concurrency", type=int, default=1)
    p.add_argument("--fault-rate", type=float, default=0.0, help="base fault probability")
    p.add_argument("--storm-every", type=float, default=0.0, help="mean seconds between storms")
    p.add_argument("--kinesis-endpoint", help="Kinesis endpoint URL (default: the environment)")
    p.add_argument("--dynamodb-endpoint", help="DynamoDB endpoint URL (default: the environment)")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    settings = kinesio.ConsumerSettings(
        worker_id=args.name,
        failover_time=args.failover,
        renew_interval=args.renew_interval or args.failover / 3,
        take_interval=args.take_interval or args.failover / 3,
        shard_sync_interval=args.shard_sync,
        initial_position=kinesio.InitialPosition.TRIM_HORIZON,
        retrieval=kinesio.Polling(idle_time=args.idle_time, catch_up_interval=0.05),
        shutdown_timeout=10.0,
    )
    seed = os.getpid()
    faults = read_faults(args.fault_rate, seed)
    parent = os.getppid()
    async with AsyncExitStack() as stack:
        kinesis = await AioKinesis.create(faults.aws_config(_base(args.kinesis_endpoint)))
        stack.push_async_callback(kinesis.aclose)
        store = DynamoDBLeaseStore(
            args.app,
            aws=lease_faults(args.fault_rate, seed).aws_config(_base(args.dynamodb_endpoint)),
        )
        stack.push_async_callback(store.aclose)
        # opened before any task runs: a blocking open is fine here
        log_file = open(args.log, "a", buffering=1, encoding="utf-8")  # noqa: ASYNC230, SIM115
        out = stack.enter_context(log_file)
        log = WorkerLog(out, args.name or args.log)
        consumer = kinesio.AsyncConsumer(
            args.stream,
            application_name=args.app,
            settings=settings,
            lease_store=store,
            kinesis=kinesis,
            on_event=log.event,
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, consumer.request_shutdown)

        async def storms_and_orphans() -> None:
            rng = random.Random(seed)
            while True:
                await asyncio.sleep(1.0)
                if os.getppid() != parent:  # whoever started it is gone: do not outlive it
                    consumer.request_shutdown()
                    return
                if args.storm_every and rng.random() < 1.0 / args.storm_every:
                    storm = Fault("GetRecords", PTE)
                    faults.inject(storm)
                    try:
                        await asyncio.sleep(STORM_SECONDS)
                    finally:
                        faults.remove(storm)

        def handle(record: kinesio.Record) -> None:
            log.handled(record.shard_id, record.position, record.data)

        jitter = random.Random(seed)

        async def handle_concurrently(record: kinesio.Record) -> None:
            # finish out of order across keys, so a checkpoint past an unfinished record
            # would show up as a lost record after the next kill
            await asyncio.sleep(jitter.random() * 0.002)
            log.handled(record.shard_id, record.position, record.data)

        background = asyncio.create_task(storms_and_orphans())
        try:
            async with consumer:
                await consumer.consume_with(
                    handle if args.max_concurrency == 1 else handle_concurrently,
                    checkpoint_every=args.checkpoint_every,
                    checkpoint_interval=args.checkpoint_interval,
                    max_concurrency=args.max_concurrency,
                )
        finally:
            background.cancel()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("KINESIO_WORKER_DEBUG") else logging.INFO,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
