"""Mixed fleets of Java KCL and kinesio workers: the long interop scenarios, per KCL mode.

Run: .venv/bin/python benchmarks/interop_kcl.py [--modes kcl-2.5.8,kcl-3.1.3-compat,kcl-3.1.3]
(about 4 minutes per mode; needs java, the emulators of ``./dev test`` and the KCL jars,
which ``python tests/interop/_kcl.py`` fetches).

kinesis-mock and dynalite run on 127.0.0.1 (free ports; stopped at the end). One application
on a 4-shard stream, failover time 4 s on every worker (Java takes every 8 s, kinesio every
2 s). A feed thread puts a record every 50 ms (16 partition keys, data ``f:<n>:<key>``) for
the whole run. Java workers are MultiLangDaemons (``tests/interop/_kcl.py``); kinesio workers
are processes of ``tests/interop/kinesio_worker.py``; all log every record they handle with
its wall time. The steps, each timed from its action until the lease table shows the
outcome:

 1. Java worker J1 alone takes the 4 leases kinesio created.
 2. kinesio K1 joins: it steals from the live Java worker until they hold 2 each.
 3. kill -9 J1: K1 takes over the dead Java worker's leases at its checkpoints.
 4. Java J2 joins: Java steals from the live kinesio worker until 2 each.
 5. kill -9 K1: J2 takes over the dead kinesio worker's leases.
 6. kinesio K2 joins (2 each), then SIGTERM K2: Java takes the leases kinesio released.
 7. kinesio K3 joins (2 each), then SIGTERM J2: kinesio takes the Java worker's leases.
 8. a shard is split and two others merged; Java J3 joins: the mixed fleet reads the
    children after their parents.
Graceful shutdowns are timed from the SIGTERM. Then the feed stops, the fleet drains, and
the records are checked: lost (must be 0), handled more than once (allowed: at least once),
keys whose records were first handled out of order (must be 0), child shards read before a
parent was finished (must be 0).
A step that does not reach its outcome within its time-out is reported as such and the run
goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _emulators import dynalite, kinesis_mock  # noqa: E402
from interop._kcl import Endpoints, Handled, JavaWorker, read_handled  # noqa: E402
from interop._scenario import MODES, Mixed, Mode, wait_for  # noqa: E402

KINESIO_WORKER = ROOT / "tests" / "interop" / "kinesio_worker.py"
KEYS = 16


@dataclass
class Feed:
    """Puts a record every ``interval`` seconds until stopped; remembers what it put."""

    mixed: Mixed
    interval: float = 0.05
    puts: list[tuple[int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            key = f"k{n % KEYS}"
            self.mixed.kinesis.put_record(
                StreamName=self.mixed.stream, Data=f"f:{n}:{key}".encode(), PartitionKey=key
            )
            self.puts.append((n, key))
            n += 1
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class KinesioProcess:
    def __init__(self, mixed: Mixed, worker_id: str) -> None:
        self.worker_id = worker_id
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL_KINESIS": mixed.endpoints.kinesis,
            "AWS_ENDPOINT_URL_DYNAMODB": mixed.endpoints.dynamodb,
            "AWS_DEFAULT_REGION": mixed.endpoints.region,
        }
        args = [sys.executable, str(KINESIO_WORKER), mixed.stream, mixed.app, worker_id]
        args.append(str(mixed.workdir / "records"))
        with (mixed.workdir / f"{worker_id}.out").open("ab") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Run:
    def __init__(self, mixed: Mixed) -> None:
        self.mixed = mixed
        self.rows: list[tuple[str, str]] = []
        self.kinesio: dict[str, KinesioProcess] = {}

    def owners(self) -> Counter[str | None]:
        return Counter(self.mixed.owners().values())

    async def step(self, name: str, want: dict[str, int], timeout: float) -> None:
        """Record how long until the open shards' leases are owned as ``want`` says."""
        want_counter: Counter[str | None] = Counter(want)

        def reached() -> bool:
            open_ids = {s["ShardId"] for s in self.mixed.shards() if _is_open(s)}
            owned = Counter(o for k, o in self.mixed.owners().items() if k in open_ids)
            return owned == want_counter

        try:
            took = await wait_for(name, reached, timeout, interval=0.25)
            self.rows.append((name, f"{took:.1f} s"))
        except AssertionError:
            self.rows.append((name, f"not within {timeout:.0f} s (owners {dict(self.owners())})"))
        print(f"  {self.rows[-1][0]}: {self.rows[-1][1]}", flush=True)

    def start_kinesio(self, worker_id: str) -> KinesioProcess:
        worker = self.kinesio[worker_id] = KinesioProcess(self.mixed, worker_id)
        return worker

    def start_java(self, worker_id: str) -> JavaWorker:
        return self.mixed.start_java(worker_id)


def _is_open(shard: dict[str, Any]) -> bool:
    return "EndingSequenceNumber" not in shard["SequenceNumberRange"]


async def scenario(mode: Mode, endpoints: Endpoints, workdir: Path) -> list[tuple[str, str]]:
    mixed = Mixed(mode, endpoints, workdir, f"long-{mode.name.replace('.', '')}-{os.getpid()}")
    run = Run(mixed)
    feed = Feed(mixed)
    try:
        await mixed.create(shards=4)
        feed.start()
        j1 = run.start_java("java-1")
        await run.step("1. Java alone takes the leases kinesio created", {"java-1": 4}, 120)
        run.start_kinesio("kinesio-1")
        await run.step(
            "2. kinesio steals from a live Java worker", {"java-1": 2, "kinesio-1": 2}, 60
        )
        j1.kill()
        await run.step("3. kinesio takes over a dead (kill -9) Java worker", {"kinesio-1": 4}, 60)
        j2 = run.start_java("java-2")
        await run.step(
            "4. Java steals from a live kinesio worker", {"java-2": 2, "kinesio-1": 2}, 90
        )
        run.kinesio["kinesio-1"].kill()
        # KCL 3's leader counts a killed worker for 60 s after its last WorkerMetricStats item
        await run.step("5. Java takes over a dead (kill -9) kinesio worker", {"java-2": 4}, 150)
        run.start_kinesio("kinesio-2")
        await run.step("6a. kinesio joins a Java worker", {"java-2": 2, "kinesio-2": 2}, 60)
        run.kinesio["kinesio-2"].terminate()
        await run.step("6b. Java takes leases kinesio released (SIGTERM)", {"java-2": 4}, 60)
        run.start_kinesio("kinesio-3")
        await run.step("7a. kinesio joins a Java worker", {"java-2": 2, "kinesio-3": 2}, 60)
        j2.terminate()
        await run.step(
            "7b. kinesio takes a gracefully stopped Java worker's leases", {"kinesio-3": 4}, 60
        )
        await reshard(mixed)
        run.start_java("java-3")
        await run.step("8. after a split and a merge: mixed fleet shares the 4 open shards",
                       {"java-3": 2, "kinesio-3": 2}, 120)  # fmt: skip
        feed.stop()
        await drain(mixed, feed, timeout=60)
        run.rows += verdict(mixed, feed)
    finally:
        feed.stop()
        for worker in run.kinesio.values():
            worker.stop()
        for java in mixed.java.values():
            java.stop(timeout=20)
        await mixed.aclose()
    return run.rows


async def reshard(mixed: Mixed) -> None:
    shards = [s for s in mixed.shards() if _is_open(s)]
    shards.sort(key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    first = shards[0]
    low, high = (int(first["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    mixed.kinesis.split_shard(
        StreamName=mixed.stream,
        ShardToSplit=first["ShardId"],
        NewStartingHashKey=str((low + high) // 2 + 1),
    )
    await _active(mixed)
    mixed.kinesis.merge_shards(
        StreamName=mixed.stream,
        ShardToMerge=shards[2]["ShardId"],
        AdjacentShardToMerge=shards[3]["ShardId"],
    )
    await _active(mixed)


async def _active(mixed: Mixed) -> None:
    def active() -> bool:
        summary = mixed.kinesis.describe_stream_summary(StreamName=mixed.stream)
        return bool(summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE")

    await wait_for("the stream ACTIVE", active, 60, interval=0.2)


def first_handled(handled: list[Handled]) -> dict[str, Handled]:
    first: dict[str, Handled] = {}
    for h in sorted(handled, key=lambda h: h.t):
        first.setdefault(h.data, h)
    return first


async def drain(mixed: Mixed, feed: Feed, timeout: float) -> None:
    wanted = {f"f:{n}:{key}" for n, key in feed.puts}

    def drained() -> bool:
        return wanted <= {h.data for h in read_handled(mixed.workdir / "records")}

    with contextlib.suppress(AssertionError):  # the verdict counts what is missing
        await wait_for("every record handled", drained, timeout)


def verdict(mixed: Mixed, feed: Feed) -> list[tuple[str, str]]:
    handled = read_handled(mixed.workdir / "records")
    first = first_handled(handled)
    counts = Counter(h.data for h in handled)
    puts = [f"f:{n}:{key}" for n, key in feed.puts]
    lost = [d for d in puts if d not in first]
    twice = sum(1 for d in puts if counts[d] > 1)
    by_key: dict[str, list[str]] = defaultdict(list)
    for n, key in feed.puts:
        by_key[key].append(f"f:{n}:{key}")
    out_of_order = 0
    for datas in by_key.values():
        times = [first[d].t for d in datas if d in first]
        out_of_order += sum(1 for a, b in itertools.pairwise(times) if b < a)
    parents_first = 0
    shards = mixed.shards()
    for shard in shards:
        parents = [shard.get(k) for k in ("ParentShardId", "AdjacentParentShardId")]
        child_times = [h.t for h in handled if h.shard == shard["ShardId"]]
        for parent in filter(None, parents):
            parent_times = [h.t for h in first.values() if h.shard == parent]
            if child_times and parent_times and min(child_times) < max(parent_times):
                parents_first += 1
    return [
        ("records put / handled (distinct)", f"{len(puts)} / {len(set(puts) & first.keys())}"),
        ("lost (must be 0)", str(len(lost))),
        ("handled more than once (at least once allows it)", str(twice)),
        ("keys with records first handled out of order (must be 0)", str(out_of_order)),
        ("children read before a parent was done (must be 0)", str(parents_first)),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default=",".join(m.name for m in MODES))
    args = parser.parse_args()
    modes = [m for m in MODES if m.name in args.modes.split(",")]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load: {os.getloadavg()}", flush=True)
    results: dict[str, list[tuple[str, str]]] = {}
    with dynalite() as dynamodb, kinesis_mock() as kinesis:
        endpoints = Endpoints(kinesis=kinesis, dynamodb=dynamodb)
        for mode in modes:
            print(f"{mode.name}:", flush=True)
            with tempfile.TemporaryDirectory(prefix=f"interop-{mode.name}-") as tmp:
                results[mode.name] = await scenario(mode, endpoints, Path(tmp))
    print(f"load at the end: {os.getloadavg()}\n")
    names = list(results)
    print("| step | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for i, (step, _) in enumerate(results[names[0]]):
        print(f"| {step} | " + " | ".join(results[n][i][1] for n in names) + " |")


if __name__ == "__main__":
    asyncio.run(main())
