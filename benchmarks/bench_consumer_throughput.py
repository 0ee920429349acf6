"""Consumer throughput per CPU core: kinesio, kcl-rs and async-kinesis on the same filled streams.

Run: .venv/bin/python benchmarks/bench_consumer_throughput.py        (about 4 min)

moto's server runs in a separate process on 127.0.0.1 (a free port; stopped at the end). The
parent fills two 4-shard streams with the same N 100-byte user records (random partition keys
drawn from 1000; each record starts with its zero-padded index): one through kinesio's
producer with KPL aggregation, one without (one Kinesis record per user record). Then each
consumer reads each stream from TRIM_HORIZON in its own child process, with a handler that
only appends the record's data to a list. The figures are that process's user + system CPU
(``getrusage(RUSAGE_SELF)``, every thread included) and wall time from constructing the
consumer (modules already imported) to the moment the N-th user record was handled — so they
include connecting, listing shards and taking leases, reported separately as "startup CPU"
(until the first record). The child then checks that it saw N distinct records: a consumer
that skips or repeats records is marked, and cannot win.

Consumers:
  - kinesio ``AsyncConsumer`` with its default lease store, a DynamoDB table on the same moto
    server (``--leases memory``: a ``MemoryLeaseStore``), ``TRIM_HORIZON``,
    ``Polling(idle_time=0.05)`` (other polling settings default: up to 10 000 records per
    GetRecords, 0.2 s between calls while behind), ``consume_with(handler,
    checkpoint_every=10**9)`` (one checkpoint at shutdown, after the clock stops).
  - kcl-rs ``Scheduler`` (PyPI ``kcl-rs``: the KCL 3.x ported to Rust behind a Python API; its
    lease, coordinator-state and worker-metrics tables in DynamoDB on the same moto server)
    with ``retrieval_mode="POLLING"``, ``max_records=10_000``,
    ``idle_time_between_reads_millis=50`` (kinesio's pace), ``TRIM_HORIZON``, and a record
    processor that appends each record's ``binary_data`` and never checkpoints. Its KCL runs
    on Rust threads of the same process, so ``getrusage`` counts them. It spends about a
    minute of wall time (little CPU) before its first record: KCL 3.x's leader election and
    lease assignment.
  - async-kinesis ``Consumer`` (PyPI ``async-kinesis``) with its ``MemoryCheckPointer``, its
    defaults otherwise (10 000 records per GetRecords, one GetRecords per shard per second),
    and a pass-through bytes deserializer instead of its default JSON: its
    ``KPLAggregator.parse`` (protobuf via aws_kinesis_agg; it checks neither the magic bytes
    nor the MD5) for the aggregated stream, ``SimpleAggregator`` for the other.

kinesio and async-kinesis both call through aiobotocore (kinesio decodes GetRecords answers
itself, see ``kinesio._records_json``; async-kinesis through botocore's parser); kcl-rs
through the Rust AWS SDK. Beyond that each library does its own per-record work (kinesio: MD5
check of each aggregate, hash-range check of each user record, a ``Record`` object per user
record, in-order delivery and checkpoint staging; async-kinesis: an ``asyncio.Queue`` put per
record). Records/s of wall time depend on
moto (it answers one request at a time here) and on the polling pace: CPU is the figure to
compare. ``--profile`` runs the kinesio cases under cProfile and prints the top functions.

async-kinesis and kcl-rs (no dependencies of its own) are installed on first use, without
dependencies, into ``.venv-bench/<name>-<version>`` (git-ignored; the same place
bench_producer_cpu.py uses) and put on the child's ``PYTHONPATH``; kinesio's ``.venv`` is
left unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib
import io
import json
import os
import platform
import pstats
import random
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _harness import ensure_installed, moto_server

ROOT = Path(__file__).resolve().parent.parent
ASYNC_KINESIS_VERSION = "3.0.1"
ASYNC_KINESIS_DIR = ROOT / ".venv-bench" / f"async-kinesis-{ASYNC_KINESIS_VERSION}"
KCL_RS_VERSION = "0.1.4"
KCL_RS_DIR = ROOT / ".venv-bench" / f"kcl-rs-{KCL_RS_VERSION}"
REGION = "us-east-1"
RECORD_SIZE = 100
KEYS = 1000
ID_DIGITS = 10
SHARDS = 4
TIMEOUT = 300.0  # seconds a consumer gets to deliver every record


# -- the consumers (child side) -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    client: str  # a key of RUNNERS
    aggregated: bool
    records: int
    stream: str = ""
    endpoint: str = ""
    profile: bool = False
    leases: str = "dynamodb"  # kinesio's lease store: "dynamodb" (on moto) or "memory"
    application: str = "bench"  # the lease table's name: a new one per run


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Wall and CPU time from ``start()`` to the first record and to ``stop()``."""

    def __init__(self) -> None:
        self.wall0 = self.cpu0 = 0.0
        self.first_wall = self.first_cpu = 0.0
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()

    def first(self) -> None:
        if not self.first_wall:
            self.first_wall = time.perf_counter() - self.wall0
            self.first_cpu = cpu_seconds() - self.cpu0

    def stop(self) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = cpu_seconds() - self.cpu0


async def run_kinesio(case: Case, meter: Meter, seen: list[bytes]) -> str:
    from kinesio import AsyncConsumer, ConsumerSettings, InitialPosition, Polling, Record
    from kinesio.leases import MemoryLeaseStore

    n = case.records
    done = asyncio.Event()
    append = seen.append

    def handle(record: Record) -> None:
        append(record.data)
        count = len(seen)
        if count == 1:
            meter.first()
        if count >= n:
            meter.stop()
            done.set()

    settings = ConsumerSettings(
        initial_position=InitialPosition.TRIM_HORIZON, retrieval=Polling(idle_time=0.05)
    )
    meter.start()
    consumer = AsyncConsumer(
        case.stream,
        application_name=case.application,
        settings=settings,
        lease_store=MemoryLeaseStore() if case.leases == "memory" else None,
        endpoint_url=case.endpoint,
        region_name=REGION,
    )
    async with consumer:
        task = asyncio.create_task(
            consumer.consume_with(handle, checkpoint_every=10**9, checkpoint_interval=3600.0)
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TIMEOUT):
                await done.wait()
        if not done.is_set():
            meter.stop()
        consumer.request_shutdown()
        await task
    return f"{len(consumer.streams)} shards leased"


def _identity(_self: object, item: bytes) -> bytes:
    return item


async def run_async_kinesis(case: Case, meter: Meter, seen: list[bytes]) -> str:
    kinesis = importlib.import_module("kinesis")
    aggregators = importlib.import_module("kinesis.aggregators")
    processors = importlib.import_module("kinesis.processors")
    checkpointers = importlib.import_module("kinesis.checkpointers")
    methods = {"serialize": _identity, "deserialize": _identity}
    base = aggregators.KPLAggregator if case.aggregated else aggregators.SimpleAggregator
    processor = type("BytesProcessor", (processors.Processor, base), methods)()
    n = case.records
    append = seen.append
    deadline = time.monotonic() + TIMEOUT
    meter.start()
    consumer = kinesis.Consumer(
        case.stream,
        endpoint_url=case.endpoint,
        region_name=REGION,
        processor=processor,
        checkpointer=checkpointers.MemoryCheckPointer(name="bench"),
        iterator_type="TRIM_HORIZON",
    )
    async with consumer:
        # Its iterator ends after ``idle_timeout`` (2 s) without records: iterate again.
        while len(seen) < n and time.monotonic() < deadline:
            async for item in consumer:
                append(item)
                if len(seen) == 1:
                    meter.first()
                if len(seen) >= n:
                    break
        meter.stop()
    return ""


async def run_kcl_rs(case: Case, meter: Meter, seen: list[bytes]) -> str:
    """kcl-rs's Scheduler (the KCL in Rust on its own threads) polling at kinesio's pace."""
    kcl_rs = importlib.import_module("kcl_rs")
    n = case.records
    done = threading.Event()
    append = seen.append
    shards: set[str] = set()

    base: Any = kcl_rs.RecordProcessorBase

    class Processor(base):  # type: ignore[misc]
        def initialize(self, initialize_input: Any) -> None:
            shards.add(str(initialize_input.shard_id))

        def process_records(self, process_records_input: Any) -> None:
            for record in process_records_input.records:
                append(record.binary_data)
            if seen:
                meter.first()
            if len(seen) >= n and not done.is_set():
                meter.stop()
                done.set()

        def lease_lost(self, lease_lost_input: Any) -> None:
            pass

        def shard_ended(self, shard_ended_input: Any) -> None:
            shard_ended_input.checkpointer.checkpoint()

        def shutdown_requested(self, shutdown_requested_input: Any) -> None:
            pass

    meter.start()
    scheduler = kcl_rs.Scheduler(
        stream_name=case.stream,
        application_name=case.application,
        record_processor_factory=Processor,
        region=REGION,
        endpoint_url=case.endpoint,
        initial_position="TRIM_HORIZON",
        access_key_id="testing",
        secret_access_key="testing",
        retrieval_mode="POLLING",
        max_records=10_000,
        idle_time_between_reads_millis=50,
    )
    scheduler.start()
    try:
        if not await asyncio.to_thread(done.wait, TIMEOUT):
            meter.stop()
    finally:
        await asyncio.to_thread(scheduler.shutdown)
    return f"{len(shards)} shards leased"


def child(case: Case) -> None:
    import aiobotocore.session  # noqa: F401 - imported before the clock starts

    import kinesio  # noqa: F401

    if case.client in IMPORTS:
        importlib.import_module(IMPORTS[case.client])
    meter = Meter()
    seen: list[bytes] = []
    runner = RUNNERS[case.client]
    profiler = cProfile.Profile() if case.profile else None
    if profiler is not None:
        profiler.enable()
    note = asyncio.run(runner(case, meter, seen))
    if profiler is not None:
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(45)
        print(text.getvalue(), file=sys.stderr)
    ids: set[int] = set()
    for data in seen:
        with contextlib.suppress(ValueError):
            ids.add(int(data[:ID_DIGITS]))
    distinct = len(ids & set(range(case.records)))
    result = {
        "wall": meter.wall,
        "cpu": meter.cpu,
        "first_wall": meter.first_wall,
        "first_cpu": meter.first_cpu,
        "handled": len(seen),
        "distinct": distinct,
        "note": note,
    }
    print(json.dumps(result))


RUNNERS: dict[str, Callable[[Case, Meter, list[bytes]], Coroutine[Any, Any, str]]] = {
    "kinesio": run_kinesio,
    "async-kinesis": run_async_kinesis,
    "kcl-rs": run_kcl_rs,
}
IMPORTS = {"async-kinesis": "kinesis", "kcl-rs": "kcl_rs"}


# -- the emulator, the streams and the runs (parent side) ---------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("AWS_"):
            del env[name]
    # moto accepts any credentials; these reach no real account.
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        PYTHONPATH=os.pathsep.join(
            p for p in (str(ASYNC_KINESIS_DIR), str(KCL_RS_DIR), env.get("PYTHONPATH", "")) if p
        ),
    )
    return env


def workload(n: int, seed: int = 42) -> tuple[list[bytes], list[str]]:
    """``n`` 100-byte records, each starting with its zero-padded index, and their keys."""
    rng = random.Random(seed)
    pad = rng.randbytes(RECORD_SIZE - ID_DIGITS)
    data = [b"%010d" % i + pad for i in range(n)]
    pool = [f"pk-{i:04d}" for i in range(KEYS)]
    keys = [pool[rng.randrange(KEYS)] for _ in range(n)]
    return data, keys


async def fill(endpoint: str, stream: str, n: int, aggregate: bool) -> tuple[int, int]:
    """Write the workload with kinesio's producer; (user records, Kinesis records) stored."""
    from kinesio import AsyncProducer, ProducerSettings
    from kinesio.local import LocalEndpoint

    data, keys = workload(n)
    # The emulator has no write limits to respect; the producer's own 150 % would only slow
    # the unaggregated fill down.
    settings = ProducerSettings(aggregate=aggregate, rate_limit=100.0)
    aws = LocalEndpoint(endpoint, REGION).aws_config()  # moto's test credentials
    async with AsyncProducer(stream, settings=settings, aws=aws) as producer:
        for d, k in zip(data, keys, strict=True):
            await producer.put(d, k)
        await producer.flush()
        m = producer.metrics()
    if m.user_records_put != n or m.user_records_failed:
        raise RuntimeError(f"filling {stream}: {m.user_records_put} put, {m.user_records_failed}")
    return m.user_records_put, m.kinesis_records_put


@dataclass
class Outcome:
    case: Case
    kinesis_records: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    first_wall: float = 0.0
    first_cpu: float = 0.0
    handled: int = 0
    distinct: int = 0
    note: str = ""
    error: str = ""


def run_case(case: Case, env: dict[str, str], kinesis_records: int) -> Outcome:
    outcome = Outcome(case, kinesis_records)
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(asdict(case))],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT + 120,
        )
    except subprocess.TimeoutExpired:
        outcome.error = "timed out"
        return outcome
    if case.profile:
        print(proc.stderr, file=sys.stderr)
    if proc.returncode != 0:
        outcome.error = proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"
        return outcome
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    outcome.wall, outcome.cpu = r["wall"], r["cpu"]
    outcome.first_wall, outcome.first_cpu = r["first_wall"], r["first_cpu"]
    outcome.handled, outcome.distinct, outcome.note = r["handled"], r["distinct"], r["note"]
    return outcome


LABELS: dict[str, str] = {
    "kinesio": "kinesio AsyncConsumer",
    "async-kinesis": f"async-kinesis {ASYNC_KINESIS_VERSION} Consumer",
    "kcl-rs": f"kcl-rs {KCL_RS_VERSION} Scheduler",
}


def print_table(outcomes: list[Outcome]) -> None:
    print(
        "| consumer | input | user records | Kinesis records | wall s | CPU s | startup CPU s "
        "| user records / CPU s | CPU µs / record | after startup: records / CPU s | delivered |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for o in outcomes:
        c = o.case
        label, kind = LABELS[c.client], ("KPL-aggregated" if c.aggregated else "plain")
        if o.error:
            print(f"| {label} | {kind} | {c.records:,} | {o.kinesis_records:,} | – | – | – | – "
                  f"| – | – | failed: {o.error} |")  # fmt: skip
            continue
        ok = o.distinct == c.records and o.handled == c.records
        delivered = f"{o.distinct:,}/{c.records:,} distinct" + (
            "" if ok else f", {o.handled:,} handled: INCOMPLETE"
        )
        rate = f"{c.records / o.cpu:,.0f}" if ok else "–"
        steady = f"{(c.records - 1) / (o.cpu - o.first_cpu):,.0f}" if ok else "–"
        print(
            f"| {label} | {kind} | {c.records:,} | {o.kinesis_records:,} | {o.wall:.1f} "
            f"| {o.cpu:.2f} | {o.first_cpu:.2f} | {rate} | {1e6 * o.cpu / c.records:.1f} "
            f"| {steady} | {delivered} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000, help="aggregated stream")
    parser.add_argument("--plain-records", type=int, default=200_000, help="unaggregated stream")
    parser.add_argument("--clients", default=",".join(RUNNERS), help="comma-separated subset")
    parser.add_argument("--profile", action="store_true", help="cProfile the kinesio runs")
    parser.add_argument(
        "--leases",
        choices=("dynamodb", "memory"),
        default="dynamodb",
        help="kinesio's lease store (kcl-rs always uses a DynamoDB table on moto)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Case(**json.loads(args.child)))
        return

    clients = args.clients.split(",")
    for client in clients:
        if client not in LABELS:
            parser.error(f"unknown client {client!r}")
    if "async-kinesis" in clients:
        requirement = f"async-kinesis=={ASYNC_KINESIS_VERSION}"
        ensure_installed(requirement, ASYNC_KINESIS_DIR, "kinesis/consumer.py")
    if "kcl-rs" in clients:
        ensure_installed(f"kcl-rs=={KCL_RS_VERSION}", KCL_RS_DIR, "kcl_rs/__init__.py")

    import boto3

    env = child_env()
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with moto_server(env) as endpoint:
        kinesis = boto3.client(
            "kinesis",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        streams: dict[bool, tuple[str, int, int]] = {}
        for aggregated, n in ((True, args.records), (False, args.plain_records)):
            name = f"bench-consume-{'agg' if aggregated else 'plain'}-{uuid.uuid4().hex[:8]}"
            kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
            kinesis.get_waiter("stream_exists").wait(
                StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
            )
            t = time.monotonic()
            users, stored = asyncio.run(fill(endpoint, name, n, aggregated))
            print(
                f"  filled {name}: {users:,} user records in {stored:,} Kinesis records, "
                f"{time.monotonic() - t:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            streams[aggregated] = (name, users, stored)
        for aggregated in (True, False):
            name, users, stored = streams[aggregated]
            for client in clients:
                case = Case(
                    client,
                    aggregated,
                    users,
                    name,
                    endpoint,
                    profile=args.profile and client == "kinesio",
                    leases=args.leases,
                    application=f"bench-{uuid.uuid4().hex[:8]}",
                )
                outcome = run_case(case, env, stored)
                print(
                    f"  {LABELS[client]}, {'aggregated' if aggregated else 'plain'}: "
                    f"{outcome.cpu:.2f} CPU s, {outcome.wall:.1f} s, {outcome.distinct:,} "
                    f"distinct of {outcome.handled:,} handled {outcome.note}{outcome.error}",
                    file=sys.stderr,
                    flush=True,
                )
                outcomes.append(outcome)

    versions: list[Callable[[], str]] = [
        lambda: f"kinesio {version('kinesio')}",
        lambda: f"async-kinesis {ASYNC_KINESIS_VERSION}",
        lambda: f"kcl-rs {KCL_RS_VERSION}",
        lambda: f"aiobotocore {version('aiobotocore')}",
        lambda: f"moto {version('moto')}",
    ]
    print(
        f"Python {platform.python_version()}, "
        + ", ".join(v() for v in versions)
        + f", {platform.machine()}; {SHARDS} shards, {RECORD_SIZE}-byte records, "
        f"{KEYS} partition keys; total {time.monotonic() - started:.0f} s"
    )
    print()
    print_table(outcomes)


if __name__ == "__main__":
    main()
