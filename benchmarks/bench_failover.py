"""Failover time: how long the shards of a worker killed with SIGKILL stay without a reader.

Run: .venv/bin/python benchmarks/bench_failover.py        (about 12 min)

moto's server runs in a separate process on 127.0.0.1 (a free port; stopped at the end) and
holds the stream and the DynamoDB lease table. A producer thread in this process writes one
record to every shard every 0.1 s (1 s with 200 shards; ``ExplicitHashKey`` = the shard's
starting hash key, data = shard id and a per-shard counter). The worker processes (this file
with ``--worker``: an ``AsyncConsumer`` with the DynamoDB lease store, ``consume_with`` with
its default checkpointing, default ``Polling()``) log the wall time of every record they
handle.

Each round waits until the live workers hold their fair share each (unchanged for longer than
a renew interval), then kills one of them with SIGKILL (nothing released) and measures, for
each shard it held, the time from the kill until the lease was taken ("took lease" in the
taker's log) and until the new owner handled its first record of that shard (resuming at the
last checkpoint counts: the shard is being read again). Records of a moved shard handled after
the kill by a worker that did not hold its lease are counted in the notes. Before the next
round a fresh worker joins and the workers share the shards again.

Settings: the defaults (``failover_time`` 10 s, renew every 3.3 s, watch every 1 s, steal
every 20 s) on 6 shards with 3 workers and on 200 shards with 4 workers (there with
``max_leases_to_steal`` 50, only so that the fleet balances within a round; taking a dead
worker's leases does not depend on it), and a tuned one (``failover_time`` 3 s,
``take_interval`` 1 s, renew and watch every 1 s).
Expected: a survivor judges a lease expired once its counter has not moved for the failover
time *on the survivor's clock*, counted from when its watch scan first saw the last value
(at most a watch interval after the last renewal, which came up to a renew interval before
the kill), and takes it at that deadline: between the failover time minus a renew interval
and the failover time plus a watch interval, plus the first read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

from _harness import moto_server

REGION = "us-east-1"


# -- the worker (child side) --------------------------------------------------------------------


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("AWS_"):
            del env[name]
    # moto accepts any credentials; these reach no real account.
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    env.update(AWS_DEFAULT_REGION=REGION)
    return env


def worker(args: argparse.Namespace) -> None:
    import logging

    import kinesio

    logging.basicConfig(level=logging.INFO, format="%(created).3f %(name)s %(message)s")
    settings = kinesio.ConsumerSettings(
        failover_time=args.failover_time,
        take_interval=args.take_interval,
        max_leases_to_steal=args.max_steal,
        initial_position=kinesio.InitialPosition.TRIM_HORIZON,
        worker_id=args.name,
        retrieval=kinesio.Polling(idle_time=args.idle_time),
        graceful_handoff=not args.no_handoff,
    )
    out = open(args.log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process

    def handle(record: kinesio.Record) -> None:
        out.write(f"{time.time():.3f} {record.shard_id} {record.data.decode()}\n")

    async def run() -> None:
        store = kinesio.DynamoDBLeaseStore(
            args.app, aws=kinesio.AWSConfig(endpoint_url=args.lease_endpoint)
        )
        consumer = kinesio.AsyncConsumer(
            args.stream,
            application_name=args.app,
            settings=settings,
            endpoint_url=args.endpoint,
            lease_store=store,
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, consumer.request_shutdown)
        async with consumer:
            await consumer.consume_with(handle)

    asyncio.run(run())


# -- the emulator (a separate process) ----------------------------------------------------------


# -- one setting (parent side) ------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    label: str
    failover_time: float
    take_interval: float | None
    rounds: int
    shards: int = 6
    workers: int = 3
    produce_interval: float = 0.1
    max_steal: int = 1
    idle_time: float = 1.0  # Polling()'s default
    dynalite: bool = False  # the lease table on dynalite rather than on moto

    @property
    def effective_take(self) -> float:
        return self.take_interval or 2 * self.failover_time

    @property
    def renew_interval(self) -> float:
        return self.failover_time / 3

    @property
    def effective_watch(self) -> float:
        return min(1.0, self.failover_time / 3)


@dataclass
class Result:
    setting: Setting
    resumed: list[float] = field(default_factory=list)  # seconds, per moved shard
    taken: list[float] = field(default_factory=list)  # seconds from the kill to "took lease"
    balance: list[float] = field(default_factory=list)  # seconds to 2/2/2 before each kill
    stray: int = 0  # records of a moved shard handled after the kill by a non-owner
    # records handled again by the next owner, per moved lease, by how the lease moved
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Producer(threading.Thread):
    """One record per shard every ``interval`` seconds, each aimed at its shard."""

    def __init__(self, kinesis: Any, stream: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.kinesis, self.stream, self.interval = kinesis, stream, interval
        self.stop = threading.Event()
        shards = kinesis.list_shards(StreamName=stream)["Shards"]
        self.targets = [(s["ShardId"], s["HashKeyRange"]["StartingHashKey"]) for s in shards]
        self.misrouted = 0

    def run(self) -> None:
        n = 0
        while not self.stop.wait(self.interval):
            for i in range(0, len(self.targets), 500):
                targets = self.targets[i : i + 500]
                entries = [
                    {"Data": f"{sid}:{n}".encode(), "PartitionKey": sid, "ExplicitHashKey": key}
                    for sid, key in targets
                ]
                with contextlib.suppress(Exception):  # a slow emulator answer: skip a beat
                    answer = self.kinesis.put_records(StreamName=self.stream, Records=entries)
                    for (sid, _), r in zip(targets, answer["Records"], strict=True):
                        if r.get("ShardId") != sid:
                            self.misrouted += 1
            n += 1


class Group:
    """The worker processes of one setting, their logs, and the lease table."""

    def __init__(
        self,
        endpoint: str,
        lease_endpoint: str,
        stream: str,
        app: str,
        setting: Setting,
        tmp: Path,
        ddb: Any,
    ) -> None:
        self.endpoint, self.stream, self.app, self.setting = endpoint, stream, app, setting
        self.lease_endpoint = lease_endpoint
        self.handoff = True
        self.tmp, self.ddb = tmp, ddb
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.files: list[IO[bytes]] = []
        self.count = 0

    def start(self, env: dict[str, str]) -> str:
        self.count += 1
        name = f"w{self.count}"
        err = open(self.tmp / f"{name}.err", "wb")  # noqa: SIM115 - closed in stop_all
        self.files.append(err)
        s = self.setting
        cmd = [sys.executable, __file__, "--worker", "--name", name, "--stream", self.stream]
        cmd += ["--app", self.app, "--endpoint", self.endpoint, "--log", str(self.log(name))]
        cmd += ["--failover-time", str(s.failover_time), "--max-steal", str(s.max_steal)]
        cmd += ["--lease-endpoint", self.lease_endpoint, "--idle-time", str(s.idle_time)]
        if not self.handoff:
            cmd += ["--no-handoff"]
        if s.take_interval is not None:
            cmd += ["--take-interval", str(s.take_interval)]
        self.procs[name] = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        return name

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def owners(self) -> dict[str, str | None]:
        items = self.ddb.scan(TableName=self.app, ConsistentRead=True)["Items"]
        return {i["leaseKey"]["S"]: i.get("leaseOwner", {}).get("S") for i in items}

    def wait_balanced(self, timeout: float, stable: float) -> dict[str, str | None]:
        """Until each live worker owns its fair share of leases, unchanged for ``stable``
        seconds (longer than a renew interval, so that a worker whose lease was just stolen
        has noticed and stopped reading that shard)."""
        deadline = time.monotonic() + timeout
        since: float | None = None
        previous: dict[str, str | None] = {}
        while time.monotonic() < deadline:
            owners = self.owners()
            per = {n: sum(1 for o in owners.values() if o == n) for n in self.alive()}
            shards, share = self.setting.shards, self.setting.shards // self.setting.workers
            balanced = len(owners) == shards and all(v == share for v in per.values())
            if not balanced or owners != previous:
                since = time.monotonic() if balanced else None
            elif since is not None and time.monotonic() - since >= stable:
                return owners
            previous = owners
            time.sleep(0.5)
        raise TimeoutError(f"workers not balanced after {timeout:.0f} s: {self.owners()}")

    def handled(self, name: str, after: float) -> dict[str, list[float]]:
        """Wall times (after ``after``) at which worker ``name`` handled records, per shard."""
        out: dict[str, list[float]] = {}
        if not self.log(name).exists():
            return out
        for line in self.log(name).read_text().splitlines():
            parts = line.split(" ")
            if len(parts) == 3 and float(parts[0]) > after:
                out.setdefault(parts[1], []).append(float(parts[0]))
        return out

    def taken(self, after: float) -> dict[str, tuple[float, str]]:
        """When and by whom each lease was first taken after ``after`` (worker logs)."""
        pattern = re.compile(r"^(\d+\.\d+) kinesio\.leases (took|stole) lease (\S+) ")
        best: dict[str, tuple[float, str]] = {}
        for name in self.procs:
            for line in (self.tmp / f"{name}.err").read_text(errors="replace").splitlines():
                m = pattern.match(line)
                if m and float(m.group(1)) > after:
                    t, shard = float(m.group(1)), m.group(3)
                    if shard not in best or t < best[shard][0]:
                        best[shard] = (t, name)
        return best

    def duplicates_per_move(self) -> dict[str, list[int]]:
        """For every lease that changed hands during the run: how many of the records the new
        owner handled (until the lease moved again) the previous owner had handled already.
        Kinds: "steal" (stolen from a live worker), "release" (taken after the previous owner
        released it on SIGTERM), "kill" (taken after it expired)."""
        pattern = re.compile(r"^(\d+\.\d+) kinesio\.leases (took|stole) lease (\S+) \(from (\S+);")
        events: dict[str, list[tuple[float, str, str, str]]] = {}
        for name in self.procs:
            for line in (self.tmp / f"{name}.err").read_text(errors="replace").splitlines():
                if m := pattern.match(line):
                    t, verb, shard, source = float(m[1]), m[2], m[3], m[4]
                    events.setdefault(shard, []).append((t, name, verb, source))
        handled: dict[tuple[str, str], list[tuple[float, str]]] = {}
        for name in self.procs:
            if not self.log(name).exists():
                continue
            for line in self.log(name).read_text().splitlines():
                parts = line.split(" ")
                if len(parts) == 3:
                    handled.setdefault((name, parts[1]), []).append((float(parts[0]), parts[2]))
        out: dict[str, list[int]] = {}
        for shard, moves in events.items():
            moves.sort()
            for i in range(1, len(moves)):
                t, new, verb, source = moves[i]
                old = moves[i - 1][1]
                if old == new:
                    continue
                end = moves[i + 1][0] if i + 1 < len(moves) else float("inf")
                before = {d for at, d in handled.get((old, shard), []) if at <= t}
                after = {d for at, d in handled.get((new, shard), []) if t <= at < end}
                kind = "steal" if verb == "stole" else "release" if source == "None" else "kill"
                out.setdefault(kind, []).append(len(before & after))
        return out

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self.files:
            f.close()


def run_setting(
    setting: Setting,
    endpoint: str,
    lease_endpoint: str,
    env: dict[str, str],
    tmp: Path,
    handoff: bool,
) -> Result:
    import boto3

    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION, **creds)
    ddb = boto3.client("dynamodb", endpoint_url=lease_endpoint, region_name=REGION, **creds)
    stream = f"failover-{uuid.uuid4().hex[:8]}"
    app = f"app-{stream}"
    kinesis.create_stream(StreamName=stream, ShardCount=setting.shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
    )
    ddb.create_table(  # the KCL's lease table, created here so the workers do not race to
        TableName=app,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.get_waiter("table_exists").wait(TableName=app, WaiterConfig={"Delay": 0.2})
    producer = Producer(kinesis, stream, setting.produce_interval)
    producer.start()
    work = tmp / re.sub(r"\W+", "-", setting.label)
    work.mkdir()
    group = Group(endpoint, lease_endpoint, stream, app, setting, work, ddb)
    group.handoff = handoff
    result = Result(setting)
    # enough for the defaults: a steal per worker per take interval, from a 6/0/0 start
    balance_timeout = 10 * setting.effective_take + 30
    try:
        for _ in range(setting.workers):
            group.start(env)
        for rnd in range(setting.rounds):
            if rnd:
                group.start(env)  # the third worker again
            t = time.monotonic()
            owners = group.wait_balanced(balance_timeout, setting.renew_interval + 1.0)
            result.balance.append(time.monotonic() - t)
            victim = min(group.alive(), key=lambda n: int(n[1:]))  # the oldest live worker
            shards = sorted(k for k, o in owners.items() if o == victim)
            group.procs[victim].kill()  # SIGKILL: no release, no final checkpoint
            killed = time.time()
            group.procs[victim].wait()
            deadline = time.monotonic() + 3 * setting.effective_take + 3 * setting.failover_time
            pending = set(shards)
            moved: list[float] = []
            while pending and time.monotonic() < deadline:
                time.sleep(0.5)
                takes = group.taken(killed)
                handled = {
                    name: group.handled(name, killed) for name in {t[1] for t in takes.values()}
                }
                for shard in sorted(pending):
                    took = takes.get(shard)
                    if took is None:
                        continue
                    # the new owner's first record of the shard once it holds the lease
                    after = [t for t in handled[took[1]].get(shard, []) if t >= took[0]]
                    if after:
                        pending.discard(shard)
                        result.taken.append(took[0] - killed)
                        moved.append(after[0] - killed)
            result.resumed += moved
            takes = group.taken(killed)
            for name in group.procs:
                if name == victim:
                    continue
                handled_by = group.handled(name, killed)
                for shard in shards:
                    if (took := takes.get(shard)) is not None:
                        result.stray += sum(1 for t in handled_by.get(shard, []) if t < took[0])
            for shard in sorted(pending):
                result.errors.append(f"{shard} not read again within the deadline")
            print(
                f"  {setting.label}, round {rnd + 1}: killed {victim} holding {len(shards)} "
                f"shards; read again after {', '.join(f'{m:.1f}' for m in sorted(moved))} s",
                file=sys.stderr,
                flush=True,
            )
        # a planned move: SIGTERM (the worker checkpoints and releases its leases)
        leaving = min(group.alive(), key=lambda n: int(n[1:]))
        group.procs[leaving].send_signal(signal.SIGTERM)
        group.procs[leaving].wait(timeout=60)
        time.sleep(setting.effective_watch + 5.0)  # taken and read by the others
        result.duplicates = group.duplicates_per_move()
    finally:
        group.stop_all()
        producer.stop.set()
        producer.join()
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        ddb.delete_table(TableName=app)
    if producer.misrouted:
        result.errors.append(f"{producer.misrouted} producer records landed on another shard")
    return result


def summary(values: list[float]) -> str:
    if not values:
        return "– | – | –"
    return f"{min(values):.1f} | {statistics.median(values):.1f} | {max(values):.1f}"


def duplicates(values: list[int]) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):g} ({max(values)}) ×{len(values)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--default-rounds", type=int, default=4)
    parser.add_argument("--wide-rounds", type=int, default=2, help="200 shards, 4 workers")
    parser.add_argument("--tuned-rounds", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--name", "--stream", "--app", "--endpoint", "--log"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--failover-time", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--take-interval", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--max-steal", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--idle-time", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--lease-endpoint", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-handoff", action="store_true", help="workers without graceful_handoff (the before)"
    )
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    settings = [
        Setting("default, 6 shards, 3 workers", 10.0, None, args.default_rounds),
        Setting(
            "default, 200 shards, 4 workers",
            10.0,
            None,
            args.wide_rounds,
            shards=200,
            workers=4,
            produce_interval=1.0,
            max_steal=50,
            idle_time=3.0,
            dynalite=True,
        ),
        Setting("tuned (failover 3 s, take every 1 s), 6 shards", 3.0, 1.0, args.tuned_rounds),
    ]
    env = child_env()
    handoff = not args.no_handoff
    started = time.monotonic()
    results: list[Result] = []
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from _emulators import dynalite

    with (
        tempfile.TemporaryDirectory() as tmp,
        moto_server(env) as endpoint,
        dynalite() as dynalite_endpoint,
    ):
        for setting in settings:
            if setting.rounds > 0:
                lease_endpoint = dynalite_endpoint if setting.dynalite else endpoint
                results.append(
                    run_setting(setting, endpoint, lease_endpoint, env, Path(tmp), handoff)
                )

    print(
        f"Python {platform.python_version()}, kinesio {version('kinesio')}, "
        f"moto {version('moto')}, {platform.machine()}; total {time.monotonic() - started:.0f} s; "
        f"load average at the end {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)"
    )
    print()
    print(
        "| setting | kills | shards moved | lease taken after, s (min / median / max) "
        "| read again after, s: min | median | max | balanced before each kill, s "
        "| records handled twice per moved lease: kill / steal / SIGTERM | notes |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---|---|---|")
    for r in results:
        s = r.setting
        taken = summary(r.taken).replace(" | ", " / ")
        errors = r.errors + ([f"{r.stray} records handled by a non-owner"] if r.stray else [])
        notes = "; ".join(errors) or "–"
        dups = " / ".join(duplicates(r.duplicates.get(k, [])) for k in ("kill", "steal", "release"))
        print(
            f"| {s.label} | {s.rounds} | {len(r.resumed)} | {taken} | {summary(r.resumed)} "
            f"| {', '.join(f'{b:.0f}' for b in r.balance)} | {dups} | {notes} |"
        )
    print()
    print(
        f"graceful_handoff={'on' if handoff else 'off'}. Records handled twice: median (max) "
        "over the moved leases, and how many leases moved that way."
    )


if __name__ == "__main__":
    main()
