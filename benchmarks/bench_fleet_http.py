"""A consumer fleet over HTTP: 1000 shards on moto's server, leases on dynalite.

Run: .venv/bin/python benchmarks/bench_fleet_http.py        (about 8 min)

moto's server (``kinesio.local.moto_server``; ``--kinesis kinesis-mock`` for npm
``kinesis-local``) and dynalite (npm ``dynalite``, installed by ``./dev test`` into
tests/emulators) run as separate processes on 127.0.0.1 and free ports and are stopped at the
end. One 1000-shard stream is filled with ``--records`` 100-byte records
(random partition keys, so every shard gets some; each record carries its index). Workers
are separate processes running ``AsyncConsumer.consume_with`` with default settings
(``Polling()``: idle_time 1.0 s; failover 10 s, renew every 3.3 s, take every 20 s) except
``TRIM_HORIZON``, over aiobotocore and HTTP like in production; every second each prints the
leases it holds, the records it handled, its CPU (``getrusage``: user + system, all threads)
and RSS.

1. **Idle shards, one worker**: one worker takes all 1000 leases, reads the fill, then the
   shards stay idle; after ``--warmup`` seconds its CPU and RSS are measured over
   ``--window`` seconds (goal: < 50 % of one core, < 500 MB).
2. **Fleet**: four workers start together on a new lease table; reported are the time until
   every worker holds 250 leases (balanced), each worker's CPU (whole run and the last
   ``--window`` seconds), RSS, the leases it holds at the end, the shards whose lease it lost
   (taken by another worker, or expired on its own clock) and the shards it opened in all,
   and whether every record was read (records read twice are counted: a lease that moves
   from a live worker replays from its last checkpoint).
   The phase ends when balanced and every record was read, or after ``--fleet-seconds``.

Both emulators share this machine's cores with the workers, and neither answers 1000
GetRecords/s here (measured with 100 concurrent calls on a 1000-shard stream: moto ~300/s,
kinesis-mock ~80/s): the GetRecords rate shows how far they kept up, and the CPU per call
what 1000 calls/s would cost. CPU is each worker's own. Wall times (time until balanced)
depend on the machine's load, quoted in the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "tests" / "emulators" / "node_modules"
REGION = "us-east-1"
SHARDS = 1000
WORKERS = 4
RECORD_SIZE = 100


# -- a worker (child process) -------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def worker(stream: str, application: str, ids_file: str) -> None:
    from kinesio import AsyncConsumer, ConsumerSettings, InitialPosition, Record
    from kinesio.events import DiagnosticEvent, RecordsFetched

    seen: list[int] = []
    reads = 0

    def handle(record: Record) -> None:
        seen.append(int(record.data[:10]))

    def on_event(event: DiagnosticEvent) -> None:
        nonlocal reads
        if isinstance(event, RecordsFetched):
            reads += 1

    settings = ConsumerSettings(initial_position=InitialPosition.TRIM_HORIZON)
    consumer = AsyncConsumer(
        stream, application_name=application, settings=settings, on_event=on_event
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, consumer.request_shutdown)
    started, cpu0 = time.perf_counter(), cpu_seconds()

    async def report() -> None:
        while True:
            # consumer.streams keeps every shard stream this worker ever opened
            held = lost = 0
            for s in list(consumer.streams.values()):
                if s.lost:
                    lost += 1
                elif not s.done.is_set():
                    held += 1
            status = {
                "t": time.perf_counter() - started,
                "leases": held,
                "lost": lost,
                "opened": len(consumer.streams),
                "records": len(seen),
                "cpu": cpu_seconds() - cpu0,
                "rss": rss_mib(),
                "reads": reads,
            }
            print(json.dumps(status), flush=True)
            await asyncio.sleep(1.0)

    reporter = asyncio.create_task(report())
    async with consumer:
        await consumer.consume_with(handle)
    reporter.cancel()
    await asyncio.to_thread(Path(ids_file).write_text, "\n".join(map(str, seen)))


# -- the parent ---------------------------------------------------------------------------------


@dataclass
class Worker:
    proc: subprocess.Popen[str]
    ids_file: Path
    last: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    def poll_lines(self) -> None:
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        while line := self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                status = json.loads(line)
                self.last = status
                self.history.append(status)

    def window(self, seconds: float) -> tuple[float, float]:
        """(CPU % of one core, GetRecords calls/s) over the last ``seconds`` reported."""
        if len(self.history) < 2:
            return float("nan"), float("nan")
        end = self.history[-1]
        start = next(h for h in self.history if h["t"] >= end["t"] - seconds)
        span = end["t"] - start["t"]
        if span <= 0:
            return float("nan"), float("nan")
        return 100 * (end["cpu"] - start["cpu"]) / span, (end["reads"] - start["reads"]) / span


def env_for(kinesis_url: str, dynamodb_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # the emulators accept any credentials; these reach no real account
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL_KINESIS=kinesis_url,
        AWS_ENDPOINT_URL_DYNAMODB=dynamodb_url,
    )
    return env


def start_worker(stream: str, application: str, env: dict[str, str], tmp: Path) -> Worker:
    ids_file = tmp / f"ids-{uuid.uuid4().hex[:8]}.txt"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", stream, application, str(ids_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return Worker(proc, ids_file)


def stop(workers: list[Worker]) -> list[list[int]]:
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    out: list[list[int]] = []
    for w in workers:
        try:
            w.proc.wait(60)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
        w.poll_lines()
        text = w.ids_file.read_text() if w.ids_file.exists() else ""
        out.append([int(x) for x in text.split()] if text else [])
    return out


def serve_moto() -> None:
    """moto's server with kinesio's fidelity fixes (``kinesio.local.moto_server``), in this
    process until SIGTERM; prints its URL."""
    from kinesio.local import moto_server

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with moto_server() as endpoint:
        print(endpoint.endpoint_url, flush=True)
        while True:
            time.sleep(3600)


@contextlib.contextmanager
def moto_process() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--moto-server"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"moto's server did not start (said {url!r})")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def emulators(kinesis_backend: str) -> Iterator[tuple[str, str]]:
    """(Kinesis URL, DynamoDB URL): moto's server or kinesis-mock, and dynalite."""
    from kinesio import local

    os.environ["SHARD_LIMIT"] = str(SHARDS * 2)  # kinesis-mock's per-account shard limit
    node = local.find_node()
    dynalite = local.find_node_package("dynalite", NODE_MODULES)
    port = local.free_port()
    with contextlib.ExitStack() as stack:
        if kinesis_backend == "moto":
            kinesis = stack.enter_context(moto_process())
        else:
            kinesis = stack.enter_context(local.kinesis_mock(NODE_MODULES)).endpoint_url
        dynamodb = stack.enter_context(
            local.run_server(
                [node, str(dynalite / "cli.js"), "--host", "127.0.0.1", "--port", str(port)],
                cwd=NODE_MODULES.parent,
                port=port,
                timeout=30.0,
            )
        )
        yield kinesis, dynamodb


async def fill(kinesis_url: str, stream: str, records: int) -> None:
    from kinesio import AsyncProducer, ProducerSettings
    from kinesio.local import LocalEndpoint

    aws = LocalEndpoint(kinesis_url, REGION).aws_config()
    rng = random.Random(7)
    pad = rng.randbytes(RECORD_SIZE - 10)
    settings = ProducerSettings(aggregate=False)
    async with AsyncProducer(stream, settings=settings, aws=aws) as producer:
        for i in range(records):
            await producer.put(b"%010d" % i + pad, f"pk-{rng.randrange(10**9)}")
        await producer.flush()
        m = producer.metrics()
    if m.user_records_put != records:
        raise RuntimeError(f"filling {stream}: {m.user_records_put} of {records} put")


def create_stream(kinesis_url: str, stream: str) -> None:
    import boto3

    client: Any = boto3.client(
        "kinesis",
        endpoint_url=kinesis_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_stream(StreamName=stream, ShardCount=SHARDS)
    deadline = time.monotonic() + 120
    while True:
        summary = client.describe_stream_summary(StreamName=stream)
        if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{stream} not ACTIVE after 120 s")
        time.sleep(0.5)


def delivered(lists: list[list[int]], records: int) -> str:
    every = [i for ids in lists for i in ids]
    distinct = set(every)
    missing = records - len(distinct & set(range(records)))
    text = f"{len(distinct):,}/{records:,} distinct, {len(every) - len(distinct):,} read twice"
    return text + (f", {missing:,} MISSING" if missing else "")


def idle_phase(
    args: argparse.Namespace, stream: str, env: dict[str, str], tmp: Path
) -> list[tuple[str, str]]:
    w = start_worker(stream, f"idle-{uuid.uuid4().hex[:6]}", env, tmp)
    owned_at = read_at = float("nan")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and w.proc.poll() is None:
        time.sleep(0.5)
        w.poll_lines()
        t = w.last.get("t", 0.0)
        if owned_at != owned_at and w.last.get("leases", 0) >= SHARDS:
            owned_at = t
        if read_at != read_at and w.last.get("records", 0) >= args.records:
            read_at = t
        if owned_at == owned_at and read_at == read_at:
            break
    time.sleep(args.warmup + args.window)
    w.poll_lines()
    cpu, reads = w.window(args.window)
    last = dict(w.last)
    ids = stop([w])
    return [
        ("all 1000 leases held, after start", f"{owned_at:.1f} s"),
        (f"all {args.records:,} records handled, after start", f"{read_at:.1f} s"),
        (f"idle CPU (last {args.window:.0f} s), % of one core", f"{cpu:.1f} %"),
        ("idle GetRecords calls/s (1000 expected at idle_time 1 s)", f"{reads:,.0f}"),
        ("CPU per idle GetRecords call (all idle work included)", f"{1e4 * cpu / reads:,.0f} µs"),
        ("… so at 1000 calls/s, % of one core", f"{cpu * 1000 / reads:.0f} %"),
        ("RSS", f"{last.get('rss', float('nan')):.0f} MiB"),
        ("CPU, whole run", f"{last.get('cpu', float('nan')):.1f} s"),
        ("records", delivered(ids, args.records)),
    ]


def fleet_phase(
    args: argparse.Namespace, stream: str, env: dict[str, str], tmp: Path
) -> tuple[str, list[str], str]:
    application = f"fleet-{uuid.uuid4().hex[:6]}"
    workers = [start_worker(stream, application, env, tmp) for _ in range(WORKERS)]
    started = time.monotonic()
    balanced_at = float("nan")
    share = SHARDS // WORKERS
    while time.monotonic() - started < args.fleet_seconds:
        time.sleep(1.0)
        for w in workers:
            w.poll_lines()
        leases = [int(w.last.get("leases", 0)) for w in workers]
        records = sum(int(w.last.get("records", 0)) for w in workers)
        if balanced_at != balanced_at and all(n == share for n in leases):
            balanced_at = time.monotonic() - started
        if balanced_at == balanced_at and records >= args.records:
            time.sleep(args.window)  # a steady-state window for the CPU figure
            break
    elapsed = time.monotonic() - started
    for w in workers:
        w.poll_lines()
    rows = []
    for i, w in enumerate(workers):
        cpu, reads = w.window(args.window)
        held, handled = int(w.last.get("leases", 0)), int(w.last.get("records", 0))
        rows.append(
            f"| worker {i + 1} | {held} | {int(w.last.get('lost', 0))} "
            f"| {int(w.last.get('opened', 0))} | {handled:,} "
            f"| {w.last.get('cpu', float('nan')):.1f} | {cpu:.1f} % | {reads:,.0f} "
            f"| {w.last.get('rss', float('nan')):.0f} MiB |"
        )
    ids = stop(workers)
    summary = (
        f"balanced (every worker {share} leases): "
        + (f"{balanced_at:.1f} s after start" if balanced_at == balanced_at else "NOT reached")
        + f"; phase ran {elapsed:.0f} s"
    )
    return summary, rows, delivered(ids, args.records)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--warmup", type=float, default=40.0, help="idle phase, seconds")
    parser.add_argument("--window", type=float, default=30.0, help="CPU window, seconds")
    parser.add_argument("--fleet-seconds", type=float, default=240.0, help="fleet phase cap")
    parser.add_argument("--phases", default="idle,fleet")
    parser.add_argument(
        "--kinesis",
        choices=("moto", "kinesis-mock"),
        default="moto",
        help="the Kinesis emulator (kinesis-mock answers ~50-80 GetRecords/s at 1000 shards here)",
    )
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--moto-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(*args.worker))
        return
    if args.moto_server:
        serve_moto()
        return
    import tempfile

    started = time.monotonic()
    phases = args.phases.split(",")
    with (
        emulators(args.kinesis) as (kinesis_url, dynamodb_url),
        tempfile.TemporaryDirectory() as tmp,
    ):
        stream = f"fleet-{uuid.uuid4().hex[:8]}"
        create_stream(kinesis_url, stream)
        asyncio.run(fill(kinesis_url, stream, args.records))
        print(f"  {stream}: {SHARDS} shards, {args.records:,} records", file=sys.stderr)
        env = env_for(kinesis_url, dynamodb_url)
        idle = idle_phase(args, stream, env, Path(tmp)) if "idle" in phases else []
        fleet = fleet_phase(args, stream, env, Path(tmp)) if "fleet" in phases else None
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Python {platform.python_version()}, kinesio {version('kinesio')}, aiobotocore "
        f"{version('aiobotocore')}, Kinesis on {args.kinesis}, leases on dynalite; "
        f"{platform.machine()}, {os.cpu_count()} cores, load average {load}; "
        f"total {time.monotonic() - started:.0f} s"
    )
    if idle:
        print()
        print("Idle: one worker, 1000 shards")
        print()
        print("| measure | value |")
        print("|---|---:|")
        for name, value in idle:
            print(f"| {name} | {value} |")
    if fleet is not None:
        summary, rows, records = fleet
        print()
        print(f"Fleet: {WORKERS} workers, {SHARDS} shards; {summary}; records: {records}")
        print()
        print(
            "| worker | leases held | shards whose lease it lost | shards it opened "
            f"| records handled | CPU s (run) | CPU (last {args.window:.0f} s) "
            "| GetRecords/s | RSS |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            print(row)


if __name__ == "__main__":
    main()
