"""Put -> handler latency: polling at its default idle time, and enhanced fan-out.

Run: .venv/bin/python benchmarks/bench_latency.py        (about 2 min)

kinesis-mock (npm ``kinesis-local``, installed by ``./dev test`` into tests/emulators) runs in
its own process on 127.0.0.1 and a free port, and is stopped at the end. For each retrieval
mode a new one-shard stream is created and one ``AsyncConsumer`` (a ``MemoryLeaseStore``,
``TRIM_HORIZON``, otherwise default settings: ``Polling()`` waits ``idle_time`` = 1.0 s after
a read that found it caught up; ``FanOut`` subscribes with SubscribeToShard) runs
``consume_with`` in this process. Once its lease is held and the shard read once, records are
put one at a time with PutRecord through a separate aiobotocore client, a random 0.2-0.6 s
apart (so a put lands anywhere in the polling cycle). Each record carries its index; its
latency is from just before its PutRecord call to the moment the handler receives it (both
``time.perf_counter()`` in this process, so the put call's own time counts). "read -> handler"
is the client's own share: from the ``RecordsFetched`` event of the read that brought the
record (emitted as the answer or subscription event arrives) to the handler. Every record must
arrive exactly once; the run fails loudly otherwise.

kinesis-mock pushes fan-out events once a second (a raw SubscribeToShard shows events at
1.04, 2.04, 3.04 s... whatever was put), so its fan-out row measures that cadence; the
``fanout-memory`` mode runs the same consumer on ``kinesio.testing.InMemoryKinesis``, whose
subscriptions push as soon as a record is stored, in this process and without HTTP.

Goals (issue 11): polling p50 <= idle_time / 2 + 100 ms; fan-out p50 <= 100 ms. Wall time is
the measure here, so a loaded machine shows in the tail: the output quotes the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from kinesio import AsyncConsumer, ConsumerSettings, FanOut, InitialPosition, Polling, Record
from kinesio._aws import create_client
from kinesio._models import PutRecordsEntry
from kinesio.events import DiagnosticEvent, RecordsFetched
from kinesio.leases import MemoryLeaseStore
from kinesio.local import LocalEndpoint, kinesis_mock
from kinesio.testing import InMemoryKinesis

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "tests" / "emulators" / "node_modules"
TIMEOUT = 30.0  # seconds for the last record to arrive after its put
MODES = ("polling", "fanout", "fanout-memory")


@dataclass
class Result:
    mode: str
    idle_time: float | None
    latencies: list[float]
    after_fetch: list[float]
    expected: int
    duplicates: int


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def create_stream(client: Any, name: str) -> None:
    await client.create_stream(StreamName=name, ShardCount=1)
    for _ in range(300):
        d = await client.describe_stream_summary(StreamName=name)
        if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"stream {name} did not become ACTIVE")


async def measure(endpoint: LocalEndpoint | None, mode: str, records: int, seed: int) -> Result:
    """One mode; ``endpoint`` None: on InMemoryKinesis (in-process, no HTTP)."""
    retrieval: Polling | FanOut = Polling()
    if mode.startswith("fanout"):
        retrieval = FanOut(consumer_name="bench-latency")
    settings = ConsumerSettings(initial_position=InitialPosition.TRIM_HORIZON, retrieval=retrieval)
    stream = f"latency-{mode}-{uuid.uuid4().hex[:8]}"
    sent: dict[int, float] = {}
    latencies: list[float] = []
    after_fetch: list[float] = []
    fetched_at = 0.0
    seen: set[int] = set()
    duplicates = 0
    all_in = asyncio.Event()
    first_read = asyncio.Event()

    def handle(record: Record) -> None:
        nonlocal duplicates
        now = time.perf_counter()
        index = int(record.data)
        if index in seen:
            duplicates += 1
            return
        seen.add(index)
        latencies.append(now - sent[index])
        after_fetch.append(now - fetched_at)
        if len(seen) == records:
            all_in.set()

    def on_event(event: DiagnosticEvent) -> None:
        nonlocal fetched_at
        if isinstance(event, RecordsFetched):
            first_read.set()
            if event.records:
                fetched_at = time.perf_counter()

    async with AsyncExitStack() as stack:
        put: Callable[[bytes], Awaitable[object]]
        where: dict[str, Any]
        if endpoint is None:
            fake = InMemoryKinesis()
            await fake.create_stream(stream, 1)
            await fake.wait_for_active(stream)

            def put(data: bytes) -> Awaitable[object]:
                return fake.put_records(stream, [PutRecordsEntry(data, "k")])

            where = {"kinesis": fake}
        else:
            aws = endpoint.aws_config()
            client = await create_client("kinesis", aws, stack)
            await create_stream(client, stream)

            def put(data: bytes) -> Awaitable[object]:
                return client.put_record(StreamName=stream, Data=data, PartitionKey="k")  # type: ignore[no-any-return]

            where = {"aws": aws}
        consumer = AsyncConsumer(
            stream,
            application_name=f"latency-{mode}",
            settings=settings,
            lease_store=MemoryLeaseStore(),
            on_event=on_event,
            **where,
        )
        async with consumer:
            task = asyncio.create_task(consumer.consume_with(handle))
            async with asyncio.timeout(120):
                await first_read.wait()
            rng = random.Random(seed)
            for index in range(records):
                await asyncio.sleep(rng.uniform(0.2, 0.6))
                sent[index] = time.perf_counter()
                await put(b"%d" % index)
            try:
                async with asyncio.timeout(TIMEOUT):
                    await all_in.wait()
            except TimeoutError:
                pass
            consumer.request_shutdown()
            await task
    idle = retrieval.idle_time if isinstance(retrieval, Polling) else None
    return Result(mode, idle, latencies, after_fetch, records, duplicates)


def row(r: Result) -> str:
    ms = [1000 * x for x in r.latencies]
    if len(ms) != r.expected or r.duplicates:
        return (
            f"| {r.mode} | – | – | – | – | – | – | – | FAILED: {len(ms)}/{r.expected} arrived, "
            f"{r.duplicates} duplicates |"
        )
    if r.idle_time is not None:
        goal_ms = 1000 * r.idle_time / 2 + 100
        mode = f"polling (idle_time {r.idle_time:g} s), kinesis-mock"
    else:
        goal_ms = 100.0
        mode = "fan-out, InMemoryKinesis" if r.mode == "fanout-memory" else "fan-out, kinesis-mock"
    p50 = quantile(ms, 0.5)
    verdict = "met" if p50 <= goal_ms else "MISSED"
    ours = [1000 * x for x in r.after_fetch]
    return (
        f"| {mode} | {len(ms)} | {statistics.mean(ms):.0f} | {p50:.0f} "
        f"| {quantile(ms, 0.9):.0f} | {quantile(ms, 0.99):.0f} | {max(ms):.0f} "
        f"| {quantile(ours, 0.5):.1f} / {quantile(ours, 0.99):.1f} "
        f"| p50 ≤ {goal_ms:.0f} ms: {verdict} |"
    )


async def run(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    with kinesis_mock(NODE_MODULES) as endpoint:
        for i, mode in enumerate(args.modes.split(",")):
            where = None if mode == "fanout-memory" else endpoint
            results.append(await measure(where, mode, args.records, seed=42 + i))
            print(f"  {mode}: {len(results[-1].latencies)} records", file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=100, help="records per mode")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}")
    started = time.monotonic()
    results = asyncio.run(run(args))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Python {platform.python_version()}, kinesio {version('kinesio')}, aiobotocore "
        f"{version('aiobotocore')}, kinesis-mock (npm kinesis-local); {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load}; total {time.monotonic() - started:.0f} s"
    )
    print()
    print(
        "| retrieval | records | mean ms | p50 ms | p90 ms | p99 ms | max ms "
        "| read → handler p50 / p99 ms | goal |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(row(r))
    if any(len(r.latencies) != r.expected or r.duplicates for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
