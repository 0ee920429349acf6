"""The chaos harness: prove "nothing lost, order kept" while everything goes wrong.

Consumer group under fire (the default mode)::

    .venv/bin/python benchmarks/chaos.py consumer --size smoke                 # ~1 min
    .venv/bin/python benchmarks/chaos.py consumer --size full                  # >= 10 min
    .venv/bin/python benchmarks/chaos.py consumer --size smoke --backend moto  # ListShards fallback

A producer in this process writes records ``(key, n)`` — about 1000 partition keys, ``n``
counting up per key — with ``ordered=True`` and KPL aggregation. Worker processes
(``python -m kinesio.cli._worker``, the worker the playground and the tests run too: an
``AsyncConsumer`` sharing one DynamoDB lease table) log every record they
handle and every lease write they make (take, renewal, checkpoint, with the lease counter it
set), through ``kinesio.testing.chaos.WorkerLog``. Meanwhile a scheduler injects:

* ``kill -9`` of a random worker every K seconds, and a replacement worker;
* ``SIGSTOP`` of a worker for longer than the failover time, then ``SIGCONT`` (a zombie);
* a shard split and a merge of two adjacent shards while records flow (kinesis-mock returns
  ``ChildShards`` at shard end; moto does not, so the consumer falls back to ListShards);
* throttling storms and ``InternalFailure`` answers on PutRecords (the producer) and
  GetRecords (every worker), plus dropped connections, through ``BotocoreFaults``;
* connection resets: Kinesis traffic goes through a TCP proxy on 127.0.0.1 that, now and then,
  resets every open connection (RST).

A poller reads the lease table twice a second. At the end ``consumer_verdict`` prints one
table: lost (must be 0), order violations (0), duplicates (allowed only after a kill, a steal
or a producer re-send), checkpoint regressions (0), failovers and their times. Exit status 1 on
any violation.

Producer under fire::

    .venv/bin/python benchmarks/chaos.py producer --backend moto

Throttling storm + InternalFailure + connection resets + the producer closed mid-stream: every
record put is delivered (in per-key order) or failed through its future and the error hook.

Backends: ``kinesis-mock`` (Kinesis) + dynalite (lease table), both from tests/emulators
(``./dev test`` installs them), or ``moto`` (both, in this process). Every server binds
127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import platform
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kinesio import (
    AsyncProducer,
    DynamoDBLeaseStore,
    ProducerSettings,
    PutResult,
)
from kinesio._aws import AioKinesis
from kinesio._errors import KinesioError
from kinesio.local import LocalEndpoint, moto_server
from kinesio.testing import CONNECTION_CLOSED, BotocoreFaults, Fault
from kinesio.testing.chaos import (
    Disruption,
    LeaseSnapshot,
    LogTail,
    WorkerRecords,
    consumer_verdict,
    format_table,
    payload,
    producer_under_fire,
    read_worker_log,
)

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PTE = "ProvisionedThroughputExceededException"
STREAM = "chaos"
APP = "chaos-app"


@dataclass(frozen=True)
class Size:
    records: int
    duration: float  # seconds of producing
    shards: int
    workers: int
    keys: int
    failover: float  # seconds
    kill_every: float
    stop_at: tuple[float, ...]  # fractions of the duration
    reshard_every: float  # seconds between a split and the merge of its children
    reset_every: float
    storm_every: float
    drain_timeout: float


SIZES = {
    "smoke": Size(
        records=3000,
        duration=25.0,
        shards=4,
        workers=3,
        keys=1000,
        failover=2.0,
        kill_every=9.0,
        stop_at=(0.5,),
        reshard_every=8.0,
        reset_every=6.0,
        storm_every=7.0,
        drain_timeout=90.0,
    ),
    "full": Size(
        records=1_000_000,
        duration=600.0,
        shards=6,
        workers=4,
        keys=1000,
        failover=4.0,
        kill_every=45.0,
        stop_at=(0.2, 0.45, 0.7, 0.9),
        reshard_every=60.0,
        reset_every=25.0,
        storm_every=20.0,
        drain_timeout=300.0,
    ),
}


#: What the scheduler can inject (``--without`` leaves some out): kill -9, SIGSTOP, split +
#: merge, connection resets, throttling storms, random error answers (``--fault-rate``).
FAULTS = ("kill", "stop", "reshard", "reset", "storm", "errors")


def faults_wanted(args: argparse.Namespace) -> frozenset[str]:
    left_out = {f for f in args.without.split(",") if f}
    unknown = left_out - set(FAULTS)
    if unknown:
        raise SystemExit(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
    return frozenset(FAULTS) - left_out


# -- a TCP proxy that can reset every connection -----------------------------------------------


class ResettingProxy:
    """Forwards 127.0.0.1:<port> to ``target`` in a thread of its own; :meth:`reset` closes
    every open connection with a TCP RST (SO_LINGER 0), as a dropped network would."""

    def __init__(self, target_url: str) -> None:
        host_port = target_url.split("//", 1)[1]
        host, port = host_port.rsplit(":", 1)
        self._target = (host, int(port))
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> ResettingProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, HOST, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for client, upstream in list(self._conns):
                client.transport.abort()
                upstream.transport.abort()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._conns.add(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._conns.discard(pair)

    def reset(self) -> int:
        """Reset every open connection (thread-safe); returns how many."""

        async def reset() -> int:
            n = 0
            for client, upstream in list(self._conns):
                sock = client.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                client.transport.abort()
                upstream.transport.abort()
                n += 1
            return n

        return asyncio.run_coroutine_threadsafe(reset(), self._loop).result(10)


# -- emulators -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    kinesis: str  # the emulator itself
    dynamodb: str
    backend: str


@contextlib.contextmanager
def emulators(backend: str) -> Iterator[Endpoints]:
    if backend == "moto":
        with moto_server() as endpoint:
            yield Endpoints(endpoint.endpoint_url, endpoint.endpoint_url, backend)
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from _emulators import dynalite, kinesis_mock

    with kinesis_mock() as kinesis, dynalite() as dynamodb:
        yield Endpoints(kinesis, dynamodb, backend)


# -- the harness -------------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stderr: IO[bytes]
    stopped: bool = False
    last_handled: float = float("-inf")  # time.monotonic() of the last record read

    def __post_init__(self) -> None:
        self.tail = LogTail(self.log)


@dataclass
class Run:
    size: Size
    endpoints: Endpoints
    proxy: ResettingProxy
    tmp: Path
    fault_rate: float
    seed: int
    faults: frozenset[str]
    max_concurrency: int = 1
    workers: list[Worker] = field(default_factory=list)
    disruptions: list[Disruption] = field(default_factory=list)
    snapshots: list[LeaseSnapshot] = field(default_factory=list)
    acked: list[tuple[str, int]] = field(default_factory=list)
    failed: int = 0
    handled: set[tuple[str, int]] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)

    @property
    def kinesis_url(self) -> str:
        """Through the resetting proxy, unless connection resets are left out."""
        return self.proxy.url if "reset" in self.faults else self.endpoints.kinesis

    def note(self, kind: str, worker: str | None = None, detail: str = "") -> None:
        self.disruptions.append(Disruption(time.time(), kind, worker, detail))
        elapsed = time.monotonic() - self.started
        print(f"{elapsed:7.1f} s  {kind} {worker or ''} {detail}", flush=True)

    def start_worker(self) -> Worker:
        name = f"w{len(self.workers) + 1}"
        log = self.tmp / f"{name}.log"
        stderr = (self.tmp / f"{name}.err").open("wb")
        failover = self.size.failover
        cmd = [
            sys.executable, "-m", "kinesio.cli._worker", STREAM, APP, str(log),
            "--name", name,
            "--kinesis-endpoint", self.kinesis_url,
            "--dynamodb-endpoint", self.endpoints.dynamodb,
            "--failover", str(failover),
            "--renew-interval", str(failover / 4),
            "--take-interval", str(failover / 3),
            "--checkpoint-every", "200",
            "--fault-rate", str(self.fault_rate),
            "--storm-every", str(self.size.storm_every if "storm" in self.faults else 0.0),
            "--max-concurrency", str(self.max_concurrency),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        w = Worker(name, proc, log, stderr)
        self.workers.append(w)
        return w

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.proc.poll() is None and not w.stopped]

    def read_handled(self) -> None:
        """Add what the workers logged since the last call to ``handled``."""
        now = time.monotonic()
        for w in self.workers:
            fresh = w.tail.handled()
            if fresh:
                w.last_handled = now
            self.handled.update((key, n) for _, key, n in fresh)

    def victim(self, rng: random.Random) -> Worker:
        """A live worker, preferably one that handled records in the last 3 s (so it holds
        leases: killing or stopping it makes them fail over)."""
        busy = [w for w in self.live() if w.last_handled > time.monotonic() - 3.0]
        return rng.choice(busy or self.live())


STORM_SECONDS = 2.0


async def storm(faults: BotocoreFaults, *storm_faults: Fault, seconds: float) -> None:
    """Inject ``storm_faults`` for ``seconds``, then remove them."""
    for fault in storm_faults:
        faults.inject(fault)
    try:
        await asyncio.sleep(seconds)
    finally:
        for fault in storm_faults:
            faults.remove(fault)


async def produce(run: Run, producer: AsyncProducer, faults: BotocoreFaults) -> int:
    storms: set[asyncio.Task[None]] = set()
    size = run.size
    rng = random.Random(run.seed)
    counters = [0] * size.keys
    interval = size.duration / size.records
    start = time.monotonic()
    next_storm = start + size.storm_every
    n = 0

    def done(rid: tuple[str, int], fut: asyncio.Future[PutResult]) -> None:
        if fut.exception() is None:
            run.acked.append(rid)
        else:
            run.failed += 1

    while n < size.records:
        due = min(size.records, int((time.monotonic() - start) / interval) + 1)
        while n < due:
            k = rng.randrange(size.keys)
            key = f"k{k}"
            rid = (key, counters[k])
            counters[k] += 1
            fut = await producer.put(payload(key, rid[1], 60), partition_key=key)
            fut.add_done_callback(functools.partial(done, rid))
            n += 1
        if "storm" in run.faults and time.monotonic() >= next_storm:
            next_storm += size.storm_every
            run.note("throttling storm", detail=f"(PutRecords, {STORM_SECONDS:.0f} s)")
            storms.add(
                asyncio.create_task(
                    storm(
                        faults,
                        Fault("PutRecords", PTE, probability=0.7),
                        Fault("PutRecords", "InternalFailure", per_record=True, probability=0.3),
                        seconds=STORM_SECONDS,
                    )
                )
            )
        await asyncio.sleep(min(0.02, max(0.0, start + n * interval - time.monotonic())))
    await asyncio.gather(*storms)
    await producer.flush()
    return n


async def scheduler(run: Run, kinesis: AioKinesis, stop: asyncio.Event) -> None:
    size = run.size
    rng = random.Random(run.seed + 1)
    t0 = time.monotonic()
    next_kill = t0 + size.kill_every
    stops = [t0 + f * size.duration for f in size.stop_at]
    next_reset = t0 + size.reset_every
    next_split = t0 + size.reshard_every / 2
    merge_pair: tuple[str, str] | None = None
    next_merge = float("inf")
    while not stop.is_set():
        run.read_handled()
        now = time.monotonic()
        if "kill" in run.faults and now >= next_kill and len(run.live()) > 1:
            next_kill += size.kill_every
            victim = run.victim(rng)
            victim.proc.send_signal(signal.SIGKILL)
            run.note("kill -9", victim.name)
            run.note("replacement", run.start_worker().name)
        if "stop" in run.faults and stops and now >= stops[0] and len(run.live()) > 1:
            stops.pop(0)
            zombie = run.victim(rng)
            zombie.proc.send_signal(signal.SIGSTOP)
            zombie.stopped = True
            run.note("SIGSTOP", zombie.name, f"for {2.5 * size.failover:.0f} s")

            async def wake(w: Worker) -> None:
                await asyncio.sleep(2.5 * size.failover)
                w.proc.send_signal(signal.SIGCONT)
                w.stopped = False
                run.note("SIGCONT", w.name)

            asyncio.get_running_loop().create_task(wake(zombie))
        if "reset" in run.faults and now >= next_reset:
            next_reset += size.reset_every
            n = await asyncio.to_thread(run.proxy.reset)
            run.note("connection reset", detail=f"({n} connections)")
        if "reshard" in run.faults and now >= next_split:
            next_split += size.reshard_every
            try:
                shards = [s for s in await kinesis.list_shards(STREAM) if s.is_open]
                widest = max(shards, key=lambda s: s.ending_hash_key - s.starting_hash_key)
                middle = (widest.starting_hash_key + widest.ending_hash_key) // 2
                await kinesis.split_shard(STREAM, widest.shard_id, middle)
                run.note("split", detail=widest.shard_id)
                await kinesis.wait_for_active(STREAM)
                children = sorted(
                    (
                        s
                        for s in await kinesis.list_shards(STREAM)
                        if widest.shard_id in s.parent_shard_ids
                    ),
                    key=lambda s: s.starting_hash_key,
                )
                if len(children) == 2:
                    merge_pair = (children[0].shard_id, children[1].shard_id)
                    next_merge = time.monotonic() + size.reshard_every / 2
            except KinesioError as exc:
                run.note("split failed", detail=str(exc))
        if merge_pair is not None and now >= next_merge:
            try:
                await kinesis.merge_shards(STREAM, *merge_pair)
                run.note("merge", detail=" + ".join(merge_pair))
                await kinesis.wait_for_active(STREAM)
            except KinesioError as exc:
                run.note("merge failed", detail=str(exc))
            merge_pair, next_merge = None, float("inf")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await stop.wait()


async def poll_table(run: Run, store: DynamoDBLeaseStore, stop: asyncio.Event) -> None:
    while True:
        try:
            leases = await store.list_leases()
        except KinesioError:
            leases = []
        t = time.time()
        run.snapshots.extend(LeaseSnapshot(t, lease) for lease in leases)
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await stop.wait()


async def consumer_run(args: argparse.Namespace) -> int:
    size = SIZES[args.size]
    overrides = {
        k: getattr(args, k) for k in ("records", "duration", "workers", "keys") if getattr(args, k)
    }
    if overrides:
        from dataclasses import replace

        size = replace(size, **overrides)
    print(
        f"chaos: {size.records} records over {size.duration:.0f} s, {size.keys} keys, "
        f"{size.shards} shards, {size.workers} workers, failover {size.failover:.1f} s, "
        f"backend {args.backend}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        endpoints = stack.enter_context(emulators(args.backend))
        proxy = stack.enter_context(ResettingProxy(endpoints.kinesis))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kinesio-chaos-")))
        if args.keep:
            tmp = Path(args.keep)
            tmp.mkdir(parents=True, exist_ok=True)
        wanted = faults_wanted(args)
        rate = args.fault_rate if "errors" in wanted else 0.0
        run = Run(size, endpoints, proxy, tmp, rate, args.seed, wanted, args.max_concurrency)
        kinesis = await AioKinesis.create(LocalEndpoint(endpoints.kinesis).aws_config())
        store = DynamoDBLeaseStore(APP, aws=LocalEndpoint(endpoints.dynamodb).aws_config())
        producer_faults = BotocoreFaults(
            Fault("PutRecords", PTE, per_record=True, probability=rate),
            Fault("PutRecords", "InternalFailure", per_record=True, probability=rate / 4),
            Fault("PutRecords", "InternalFailure", probability=rate / 2),
            Fault("PutRecords", CONNECTION_CLOSED, probability=rate / 4),
            Fault("PutRecords", CONNECTION_CLOSED, response_lost=True, probability=rate / 8),
            seed=args.seed,
        )
        settings = ProducerSettings(
            ordered=True, linger=0.05, record_ttl=3600.0, retry_backoff=0.05, max_retry_backoff=1.0
        )
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            await kinesis.create_stream(STREAM, size.shards)
            await kinesis.wait_for_active(STREAM)
            await store.create_table_if_missing()
            for _ in range(size.workers):
                run.start_worker()
            tasks = [
                asyncio.create_task(scheduler(run, kinesis, stop)),
                asyncio.create_task(poll_table(run, store, stop)),
            ]
            producer = AsyncProducer(
                STREAM,
                aws=producer_faults.aws_config(LocalEndpoint(run.kinesis_url)),
                settings=settings,
            )
            async with producer:
                put = await produce(run, producer, producer_faults)
            stop.set()
            await asyncio.gather(*tasks)
            m = producer.metrics()
            print(
                f"{time.monotonic() - run.started:7.1f} s  producer done: {put} put, "
                f"{len(run.acked)} acknowledged, {run.failed} failed; {m.put_records_calls} "
                f"PutRecords, {m.throttled} throttled, {m.retries} retries; faults "
                f"{dict(producer_faults.injected)}",
                flush=True,
            )
            for w in run.workers:
                if w.stopped:
                    w.proc.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + size.drain_timeout
            acked = set(run.acked)
            while time.monotonic() < deadline:
                run.read_handled()
                if acked <= run.handled:
                    break
                await asyncio.sleep(1.0)
            print(
                f"{time.monotonic() - run.started:7.1f} s  consumers handled "
                f"{len(acked & run.handled)} of {len(acked)}; SIGTERM to the workers",
                flush=True,
            )
            stop = asyncio.Event()
            stop.set()
            for w in run.workers:
                if w.proc.poll() is None:
                    w.proc.send_signal(signal.SIGTERM)
            for w in run.workers:
                try:
                    await asyncio.to_thread(w.proc.wait, 30)
                except subprocess.TimeoutExpired:
                    print(f"{w.name} did not stop on SIGTERM; killed", flush=True)
            await poll_table(run, store, stop)
        finally:
            for task in tasks:
                task.cancel()
            for w in run.workers:
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait()
                w.stderr.close()
            await store.aclose()
            await kinesis.aclose()
        logs = [read_worker_log(w.log, w.name) for w in run.workers if w.log.exists()]
        verdict = consumer_verdict(
            run.acked,
            logs,
            producer_failed=run.failed,
            disruptions=run.disruptions,
            snapshots=run.snapshots,
            resends_possible=True,
        )
        exits = {w.name: w.proc.returncode for w in run.workers}
        elapsed = time.monotonic() - run.started
        print()
        title = (
            f"chaos consumer run: {args.backend}, {size.records} records, {size.keys} keys, "
            f"{size.shards} shards, {size.workers} workers (+ replacements), "
            f"{elapsed / 60:.1f} min"
        )
        print(format_table(title, verdict.rows()))
        print()
        for f in verdict.failovers:
            times = ", ".join(
                f"{s} {'never' if t is None else f'{t:.1f} s'}"
                for s, t in zip(f.shards, f.seconds, strict=True)
            )
            print(
                f"failover after {f.disruption.kind} {f.disruption.worker}: "
                f"{times or 'held no lease'}"
            )
        moves = duplicates_per_move(logs, run.disruptions)
        print(
            "records handled twice per moved lease, median (max) x leases: "
            + "; ".join(
                f"{kind} {statistics.median(v):g} ({max(v)}) x{len(v)}"
                for kind, v in sorted(moves.items())
            )
        )
        crashed = {n: c for n, c in exits.items() if c not in (0, -signal.SIGKILL)}
        if crashed:
            print(f"workers that exited badly: {crashed}")
            for w in run.workers:
                if w.name in crashed:
                    print(f"--- {w.name} stderr ---")
                    print((run.tmp / f"{w.name}.err").read_text(errors="replace")[-3000:])
        for problem in verdict.problems():
            print("  " + problem)
        print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus")
        ok = verdict.ok and not crashed and verdict.produced > 0
        print("VERDICT: OK" if ok else "VERDICT: FAILED", flush=True)
        return 0 if ok else 1


def duplicates_per_move(
    logs: list[WorkerRecords], disruptions: list[Disruption]
) -> dict[str, list[int]]:
    """For every lease that changed hands: how many records the new owner handled (until the
    lease moved again) that the previous owner had handled too. A move is a "crash" when the
    previous owner was killed or stopped while it held the lease, a "release" when it released
    it (SIGTERM, shard end), and a "planned move" otherwise (stolen from a live worker)."""
    takes: dict[str, list[tuple[float, str]]] = {}
    for log in logs:
        for w in log.writes:
            if w.kind == "take":
                takes.setdefault(w.shard, []).append((w.t, w.worker))
    handled: dict[tuple[str, str], list[tuple[float, tuple[str, int]]]] = {}
    released: dict[tuple[str, str], list[float]] = {}
    for log in logs:
        for h in log.handled:
            handled.setdefault((h.worker, h.shard), []).append((h.t, (h.key, h.n)))
        for left in log.left:
            if left.why == "released":
                released.setdefault((left.worker, left.shard), []).append(left.t)
    hits = [(d.t, d.worker) for d in disruptions if d.kind in ("kill -9", "SIGSTOP")]
    out: dict[str, list[int]] = {}
    for shard, moves in takes.items():
        moves.sort()
        for i in range(1, len(moves)):
            (held_at, old), (t, new) = moves[i - 1], moves[i]
            if old == new:
                continue
            end = moves[i + 1][0] if i + 1 < len(moves) else float("inf")
            before = {r for at, r in handled.get((old, shard), []) if held_at <= at < end}
            after = {r for at, r in handled.get((new, shard), []) if t <= at < end}
            if any(held_at <= at <= t and who == old for at, who in hits):
                kind = "crash"
            elif any(held_at <= at <= t for at in released.get((old, shard), [])):
                kind = "release"
            else:
                kind = "planned move"
            out.setdefault(kind, []).append(len(before & after))
    return out


# -- the producer under fire -------------------------------------------------------------------


async def producer_run(args: argparse.Namespace) -> int:
    records = args.records or 20_000
    resets: list[int] = []
    with contextlib.ExitStack() as stack:
        endpoints = stack.enter_context(emulators(args.backend))
        proxy = stack.enter_context(ResettingProxy(endpoints.kinesis))
        kinesis = await AioKinesis.create(LocalEndpoint(endpoints.kinesis).aws_config())
        try:
            await kinesis.create_stream(STREAM, 4)
            await kinesis.wait_for_active(STREAM)
            faults = BotocoreFaults(
                Fault("PutRecords", PTE, per_record=True, probability=0.1),
                Fault("PutRecords", "InternalFailure", per_record=True, probability=0.03),
                Fault("PutRecords", "InternalFailure", probability=0.05),
                Fault("PutRecords", CONNECTION_CLOSED, response_lost=True, probability=0.02),
                seed=args.seed,
            )
            settings = ProducerSettings(
                ordered=True, linger=0.02, retry_backoff=0.02, max_retry_backoff=0.5
            )

            async def start(on_error: Any) -> AsyncProducer:
                p = AsyncProducer(
                    STREAM,
                    aws=faults.aws_config(LocalEndpoint(proxy.url)),
                    settings=settings,
                    on_error=on_error,
                )
                await p.start()
                return p

            async def during(i: int) -> None:
                if i == records // 4:
                    faults.inject(Fault("PutRecords", PTE, count=30))  # a storm
                if i and i % (records // 5) == 0:
                    resets.append(await asyncio.to_thread(proxy.reset))
                if i % 100 == 0:
                    await asyncio.sleep(0.005)  # records flow while faults hit

            verdict = await producer_under_fire(
                start,
                records=records,
                keys=args.keys or 1000,
                ordered=True,
                close_after=records * 3 // 4,
                close_timeout=0.3,
                during=during,
                size=60,
                seed=args.seed,
            )
        finally:
            await kinesis.aclose()
    print(format_table(f"producer under fire: {args.backend}, {records} records", verdict.rows()))
    for problem in (verdict.vanished + verdict.order_violations)[:10]:
        print("  " + problem)
    print(
        f"faults injected: {dict(faults.injected)}; connection resets: {len(resets)} "
        f"({sum(resets)} connections); closed after {records * 3 // 4} puts"
    )
    print("VERDICT: OK" if verdict.ok else "VERDICT: FAILED", flush=True)
    return 0 if verdict.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("consumer", "producer"):
        p = sub.add_parser(mode)
        p.add_argument("--backend", choices=("kinesis-mock", "moto"), default="kinesis-mock")
        p.add_argument("--size", choices=tuple(SIZES), default="smoke")
        p.add_argument("--records", type=int, default=0, help="override the size's record count")
        p.add_argument("--duration", type=float, default=0.0, help="seconds of producing")
        p.add_argument("--workers", type=int, default=0)
        p.add_argument("--keys", type=int, default=0, help="partition keys (default 1000)")
        p.add_argument("--fault-rate", type=float, default=0.02, help="base fault probability")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument(
            "--without",
            default="",
            help=f"comma-separated faults to leave out, of: {', '.join(FAULTS)}",
        )
        p.add_argument("--keep", default="", help="directory to keep the worker logs in")
        p.add_argument(
            "--max-concurrency",
            type=int,
            default=1,
            help="consumer mode: each worker's consume_with(max_concurrency=...)",
        )
    args = parser.parse_args(argv)
    if args.mode == "producer":
        return asyncio.run(producer_run(args))
    return asyncio.run(consumer_run(args))


if __name__ == "__main__":
    sys.exit(main())
