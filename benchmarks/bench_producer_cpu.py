"""Producer client CPU per million user records: kinesio, async-kinesis and a boto3 loop.

Run: .venv/bin/python benchmarks/bench_producer_cpu.py        (about 90 s)

Each client writes N 100-byte user records (random partition keys drawn from 1000 keys) to its
own 4-shard stream on moto's server, which runs in a separate process on 127.0.0.1 (a free
port) and is stopped at the end. That server takes requests one at a time and finds a shard's
last sequence number in O(1) (see ``_harness.serve_moto``): without the first, moto loses
records under concurrent PutRecords; without the second, it slows down as its shards fill.

Each client runs in its own child process; the figure is that process's user + system CPU
(``getrusage(RUSAGE_SELF)``, every thread included) from the first put, after connecting, to
the moment every record is acknowledged. Records are generated before the clock starts. The
parent then reads every shard back, unpacks KPL aggregates with ``kinesio.aggregation.decode``
and counts the distinct user records delivered, so that a client cannot win by dropping
records.

Clients (each with its defaults, unless noted):
  - kinesio ``AsyncProducer`` with ``aggregate=True`` / ``False``; kinesio ``Producer`` (the
    blocking facade) the same way.
  - async-kinesis ``Producer`` (PyPI ``async-kinesis``) with its ``KPLAggregator`` (KPL format,
    via aws_kinesis_agg; ``max_size=51_200`` to match the KPL and kinesio) or its
    ``SimpleAggregator`` (one record per Kinesis record); both with a pass-through bytes
    serializer instead of its default JSON. Its KPL aggregator refuses per-record partition
    keys: every user record gets the key "a" and each aggregate a random outer key.
  - aiokpl ``Producer`` (PyPI ``aiokpl``) with ``aggregation_enabled`` on / off: real partition
    keys, shard prediction, per-shard limits and a per-record ``Outcome``. Its ``flush()`` does
    not wait for the sends, so the run awaits every record's outcome before the clock stops.
  - boto3 ``put_records`` in a loop, 500 records per call, resending failed entries.

async-kinesis and aiokpl are installed on first use, without their dependencies (aiobotocore,
aws_kinesis_agg, anyio and sortedcontainers come from kinesio's dev install, so every async
client runs the same aiobotocore), into ``.venv-bench/<name>-<version>`` (git-ignored), and put
on the child's ``PYTHONPATH``; kinesio's ``.venv`` is left unchanged.

No HTTP keep-alive: moto's werkzeug server closes the connection after every answer, so every
client opens a TCP connection per call (see ``_harness.serve_moto``).

moto stores some 10 000 to 15 000 records/s here, and both async clients apply their own rate
limits, so records/s is not a measure of the client: CPU seconds are the figure to compare.
Runs without aggregation write ``--unaggregated-records`` (30 000) records to stay short.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _harness import ensure_installed, moto_server

ROOT = Path(__file__).resolve().parent.parent
ASYNC_KINESIS_VERSION = "3.0.1"
ASYNC_KINESIS_DIR = ROOT / ".venv-bench" / f"async-kinesis-{ASYNC_KINESIS_VERSION}"
AIOKPL_VERSION = "0.2.0"
AIOKPL_DIR = ROOT / ".venv-bench" / f"aiokpl-{AIOKPL_VERSION}"
REGION = "us-east-1"
RECORD_SIZE = 100
KEYS = 1000
ID_DIGITS = 10
KPL_AGGREGATE_SIZE = 51_200


# -- the workload (child side) ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    client: str  # "kinesio", "kinesio-submit", "kinesio-sync", "async-kinesis", "aiokpl", "boto3"
    aggregate: bool
    records: int
    stream: str = ""
    endpoint: str = ""


def workload(n: int, seed: int = 42) -> tuple[list[bytes], list[str]]:
    """``n`` 100-byte records, each starting with its zero-padded index, and their keys."""
    rng = random.Random(seed)
    pad = rng.randbytes(RECORD_SIZE - ID_DIGITS)
    data = [b"%010d" % i + pad for i in range(n)]
    pool = [f"pk-{i:04d}" for i in range(KEYS)]
    keys = [pool[rng.randrange(KEYS)] for _ in range(n)]
    return data, keys


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Wall and CPU time between ``start()`` and ``stop()``."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        self.wall, self.cpu = -time.perf_counter(), -cpu_seconds()

    def stop(self) -> None:
        self.wall += time.perf_counter()
        self.cpu += cpu_seconds()


async def run_kinesio(case: Case, data: list[bytes], keys: list[str], meter: Meter) -> str:
    from kinesio import AsyncProducer, ProducerSettings

    settings = ProducerSettings(aggregate=case.aggregate)
    async with AsyncProducer(
        case.stream, settings=settings, endpoint_url=case.endpoint, region_name=REGION
    ) as producer:
        # submit(): the same records without a future each (no per-record result wanted).
        put = producer.submit if case.client == "kinesio-submit" else producer.put
        meter.start()
        for d, k in zip(data, keys, strict=True):
            await put(d, k)
        await producer.flush()
        meter.stop()
        m = producer.metrics()
    return (
        f"put {m.user_records_put}, failed {m.user_records_failed}, throttled {m.throttled}, "
        f"{m.put_records_calls} PutRecords calls of {m.kinesis_records_put} Kinesis records"
    )


def run_kinesio_sync(case: Case, data: list[bytes], keys: list[str], meter: Meter) -> str:
    from kinesio import Producer, ProducerSettings

    settings = ProducerSettings(aggregate=case.aggregate)
    with Producer(
        case.stream, settings=settings, endpoint_url=case.endpoint, region_name=REGION
    ) as producer:
        put = producer.put
        meter.start()
        for d, k in zip(data, keys, strict=True):
            put(d, k)
        producer.flush()
        meter.stop()
        m = producer.metrics()
    return (
        f"put {m.user_records_put}, failed {m.user_records_failed}, throttled {m.throttled}, "
        f"{m.put_records_calls} PutRecords calls of {m.kinesis_records_put} Kinesis records"
    )


async def run_aiokpl(case: Case, data: list[bytes], keys: list[str], meter: Meter) -> str:
    aiokpl = importlib.import_module("aiokpl")
    config = aiokpl.Config(
        region=REGION,
        aggregation_enabled=case.aggregate,
        endpoint_url=case.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    async with aiokpl.Producer(config) as producer:
        put = producer.put_record
        meter.start()
        outcomes = [
            await put(stream=case.stream, partition_key=k, data=d)
            for d, k in zip(data, keys, strict=True)
        ]
        await producer.flush()
        # Its flush() schedules the sends without waiting for them: wait for every outcome.
        results = [await o.wait() for o in outcomes]
        meter.stop()
    ok = sum(1 for r in results if r.success)
    return f"{ok} succeeded, {len(results) - ok} failed"


def _identity(_self: object, item: bytes) -> bytes:
    return item


async def run_async_kinesis(case: Case, data: list[bytes], keys: list[str], meter: Meter) -> str:
    kinesis = importlib.import_module("kinesis")
    aggregators = importlib.import_module("kinesis.aggregators")
    processors = importlib.import_module("kinesis.processors")
    methods = {"serialize": _identity, "deserialize": _identity}
    if case.aggregate:
        kpl = type("KPLBytesProcessor", (processors.Processor, aggregators.KPLAggregator), methods)
        processor = kpl(max_size=KPL_AGGREGATE_SIZE)
    else:
        raw = type("BytesProcessor", (processors.Processor, aggregators.SimpleAggregator), methods)
        processor = raw()
    async with kinesis.Producer(
        case.stream, endpoint_url=case.endpoint, region_name=REGION, processor=processor
    ) as producer:
        put = producer.put
        meter.start()
        if case.aggregate:
            for d in data:  # its KPL aggregator refuses per-record partition keys
                await put(d)
        else:
            for d, k in zip(data, keys, strict=True):
                await put(d, k)
        await producer.flush()
        meter.stop()
    return f"throughput-exceeded answers {producer.throughput_exceeded_count}"


def run_boto3(case: Case, data: list[bytes], keys: list[str], meter: Meter) -> str:
    import boto3

    client = boto3.client("kinesis", endpoint_url=case.endpoint, region_name=REGION)
    client.describe_stream_summary(StreamName=case.stream)  # connect before the clock starts
    calls = resent = 0
    meter.start()
    for i in range(0, len(data), 500):
        batch = [
            {"Data": d, "PartitionKey": k}
            for d, k in zip(data[i : i + 500], keys[i : i + 500], strict=True)
        ]
        while batch:
            answer = client.put_records(StreamName=case.stream, Records=batch)
            calls += 1
            if not answer["FailedRecordCount"]:
                break
            batch = [r for r, a in zip(batch, answer["Records"], strict=True) if "ErrorCode" in a]
            resent += len(batch)
    meter.stop()
    client.close()
    return f"{calls} calls, {resent} resent"


def child(case: Case) -> None:
    data, keys = workload(case.records)
    meter = Meter()
    if case.client in ("kinesio", "kinesio-submit"):
        note = asyncio.run(run_kinesio(case, data, keys, meter))
    elif case.client == "kinesio-sync":
        note = run_kinesio_sync(case, data, keys, meter)
    elif case.client == "async-kinesis":
        note = asyncio.run(run_async_kinesis(case, data, keys, meter))
    elif case.client == "aiokpl":
        note = asyncio.run(run_aiokpl(case, data, keys, meter))
    elif case.client == "boto3":
        note = run_boto3(case, data, keys, meter)
    else:
        raise SystemExit(f"unknown client {case.client!r}")
    print(json.dumps({"wall": meter.wall, "cpu": meter.cpu, "note": note}))


# -- the emulator and the runs (parent side) ----------------------------------------------------


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
            p for p in (str(ASYNC_KINESIS_DIR), str(AIOKPL_DIR), env.get("PYTHONPATH", "")) if p
        ),
    )
    return env


@dataclass
class Outcome:
    case: Case
    wall: float = 0.0
    cpu: float = 0.0
    note: str = ""
    kinesis_records: int = 0
    user_records: int = 0
    delivered: int = 0  # distinct user records of this run found in the stream
    error: str = ""


def create_stream(kinesis: Any, name: str, shards: int) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
    )


def read_back(kinesis: Any, stream: str, n: int, outcome: Outcome) -> None:
    from kinesio import aggregation

    seen: set[int] = set()
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            answer = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records = answer["Records"]
            if not records:
                break
            iterator = answer.get("NextShardIterator")
            for r in records:
                outcome.kinesis_records += 1
                data: bytes = r["Data"]
                users = (
                    [u.data for u in aggregation.decode(data)]
                    if aggregation.is_aggregate(data)
                    else [data]
                )
                for u in users:
                    outcome.user_records += 1
                    with contextlib.suppress(ValueError):
                        seen.add(int(u[:ID_DIGITS]))
    outcome.delivered = len(seen & set(range(n)))


def run_case(case: Case, kinesis: Any, env: dict[str, str], shards: int) -> Outcome:
    stream = f"bench-{case.client}-{'agg' if case.aggregate else 'raw'}-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, shards)
    spec = Case(case.client, case.aggregate, case.records, stream, kinesis.meta.endpoint_url)
    outcome = Outcome(case)
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(asdict(spec))],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            outcome.error = proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"
        else:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            outcome.wall, outcome.cpu, outcome.note = result["wall"], result["cpu"], result["note"]
        read_back(kinesis, stream, case.records, outcome)
    except subprocess.TimeoutExpired:
        outcome.error = "timed out"
    finally:
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
    return outcome


LABELS: dict[str, str] = {
    "kinesio": "kinesio AsyncProducer",
    "kinesio-submit": "kinesio AsyncProducer.submit",
    "kinesio-sync": "kinesio Producer (blocking)",
    "async-kinesis": f"async-kinesis {ASYNC_KINESIS_VERSION}",
    "aiokpl": f"aiokpl {AIOKPL_VERSION}",
    "boto3": "boto3 put_records loop",
}


def aggregation_label(case: Case) -> str:
    if case.client == "boto3":
        return "none"
    if not case.aggregate:
        return "off"
    if case.client == "async-kinesis":
        return "KPL (one key)"
    return "KPL"


def print_table(outcomes: list[Outcome]) -> None:
    print(
        "| client | aggregation | records | wall s | CPU s | CPU s per 1M records | records/s "
        "| Kinesis records | delivered |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for o in outcomes:
        c = o.case
        if o.error:
            print(f"| {LABELS[c.client]} | {aggregation_label(c)} | {c.records:,} | – | – | – | – "
                  f"| – | failed: {o.error} |")  # fmt: skip
            continue
        dupes = o.user_records - o.delivered
        delivered = f"{o.delivered:,}/{c.records:,}" + (
            f" (+{dupes:,} duplicates)" if dupes else ""
        )
        print(
            f"| {LABELS[c.client]} | {aggregation_label(c)} | {c.records:,} | {o.wall:.1f} "
            f"| {o.cpu:.2f} | {o.cpu / c.records * 1e6:.1f} | {c.records / o.wall:,.0f} "
            f"| {o.kinesis_records:,} | {delivered} |"
        )
    print()
    print(
        "records: user records written by the run (runs without aggregation write fewer, "
        "--unaggregated-records, to keep moto's part short); CPU s per 1M records extrapolates "
        "linearly. Kinesis records: records read back from the stream (an aggregate counts "
        "once). delivered: distinct user records of the run found in the stream."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="per aggregated run")
    parser.add_argument(
        "--unaggregated-records", type=int, default=30_000, help="per run without aggregation"
    )
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument(
        "--clients",
        default="kinesio,kinesio-submit,kinesio-sync,async-kinesis,aiokpl,boto3",
        help="comma-separated subset of: " + ", ".join(LABELS),
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Case(**json.loads(args.child)))
        return

    raw_n = args.unaggregated_records
    cases: list[Case] = []
    for client in args.clients.split(","):
        if client not in LABELS:
            parser.error(f"unknown client {client!r}")
        if client == "boto3":
            cases.append(Case(client, False, raw_n))
        else:
            cases += [Case(client, True, args.records), Case(client, False, raw_n)]
    if any(c.client == "async-kinesis" for c in cases):
        ensure_installed(
            f"async-kinesis=={ASYNC_KINESIS_VERSION}", ASYNC_KINESIS_DIR, "kinesis/producer.py"
        )
    if any(c.client == "aiokpl" for c in cases):
        ensure_installed(f"aiokpl=={AIOKPL_VERSION}", AIOKPL_DIR, "aiokpl/producer.py")

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
        for case in cases:
            outcome = run_case(case, kinesis, env, args.shards)
            print(
                f"  {LABELS[case.client]}, aggregation {aggregation_label(case)}: "
                f"{outcome.cpu:.2f} CPU s, {outcome.wall:.1f} s; {outcome.note}{outcome.error}",
                file=sys.stderr,
                flush=True,
            )
            outcomes.append(outcome)

    print(
        f"Python {platform.python_version()}, kinesio {version('kinesio')}, async-kinesis "
        f"{ASYNC_KINESIS_VERSION}, aiokpl {AIOKPL_VERSION}, aiobotocore {version('aiobotocore')}, "
        f"boto3 {version('boto3')}, "
        f"moto {version('moto')}, {platform.machine()}; {args.shards} shards, {RECORD_SIZE}-byte "
        f"records, {KEYS} partition keys; whole run {time.monotonic() - started:.0f} s"
    )
    print()
    print_table(outcomes)


if __name__ == "__main__":
    main()
