"""Idle cost of one consumer holding many leases: CPU %, memory, and lease acquisition time.

Run: .venv/bin/python benchmarks/bench_idle_shards.py        (about 2.5 min)

One process, one ``AsyncConsumer`` with default settings (``Polling()``: one GetRecords per
shard per second when caught up; default failover, renew and take intervals) on an idle
1000-shard stream of ``kinesio.testing.InMemoryKinesis`` (service limits enforced: 5 GetRecords
calls/s per shard, so the run checks that no call was throttled) with a ``MemoryLeaseStore``.
``consume_with`` runs a no-op handler that is never called: nothing is written.

Reported:
  - time from ``start()`` until the worker owns every lease, and until every shard has been
    read once (its first GetRecords);
  - after a warm-up, the process's user + system CPU (``getrusage``) over a steady-state
    window, as % of one core, with the GetRecords and ListShards calls made meanwhile;
  - resident memory (``VmRSS``) before the consumer started (the fake stream alone) and at the
    end, and the peak (``ru_maxrss``).

The fake answers in-process, so the CPU is kinesio's own work plus the fake's (no HTTP, no
botocore parsing and signing): against the real service every one of those calls also pays
aiobotocore's cost. ``--profile`` runs the steady-state window under cProfile and prints the
top functions (profiling slows everything: CPU % of a profiled run is not comparable).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import platform
import pstats
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version

from kinesio import AsyncConsumer, ConsumerSettings, InitialPosition, Record
from kinesio.leases import MemoryLeaseStore
from kinesio.testing import InMemoryKinesis

STREAM = "idle"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def noop(_record: Record) -> None:
    pass


@dataclass
class Outcome:
    shards: int
    rss_before: float = 0.0
    rss_after: float = 0.0
    rss_peak: float = 0.0
    acquire_s: float = 0.0
    first_read_s: float = 0.0
    acquire_cpu: float = 0.0
    window_s: float = 0.0
    window_cpu: float = 0.0
    get_records: int = 0
    list_shards: int = 0
    throttled: int = 0
    profile: str = ""


def top(profiler: cProfile.Profile, n: int) -> str:
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(n)
    stats.sort_stats("cumulative").print_stats(n)
    return text.getvalue()


async def wait_for(interval: float, check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():  # noqa: ASYNC110 - the consumer signals none of these states
        await asyncio.sleep(interval)


async def run(shards: int, warmup: float, window: float, profile: bool) -> Outcome:
    kinesis = InMemoryKinesis()  # enforce_limits=True: the service's read limits apply
    await kinesis.create_stream(STREAM, shards)
    await kinesis.wait_for_active(STREAM)
    store = MemoryLeaseStore()
    out = Outcome(shards, rss_before=rss_mib())
    settings = ConsumerSettings(initial_position=InitialPosition.TRIM_HORIZON)
    consumer = AsyncConsumer(
        STREAM, application_name="idle-bench", settings=settings, lease_store=store, kinesis=kinesis
    )
    started, cpu0 = time.perf_counter(), cpu_seconds()
    await consumer.start()
    task = asyncio.create_task(consumer.consume_with(noop))

    # consumer.streams gains a shard as its lease is taken: a cheap look (reading the lease
    # table every few milliseconds would itself cost CPU), confirmed once in the table below.
    async def all_owned() -> bool:
        return len(consumer.streams) >= shards

    async def all_read() -> bool:
        return kinesis.calls["GetRecords"] >= shards and all(
            s.get_records_calls > 0 for s in kinesis.stats(STREAM).values()
        )

    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    await wait_for(0.02, all_owned)
    out.acquire_s, out.acquire_cpu = time.perf_counter() - started, cpu_seconds() - cpu0
    if profiler is not None:
        profiler.disable()
        out.profile += "== from start() until every lease is owned ==\n" + top(profiler, 20)
    leases = await store.list_leases()
    owners = {lease.lease_owner for lease in leases}
    assert len(leases) == shards, len(leases)
    assert owners == {consumer.worker_id}, owners
    await wait_for(0.02, all_read)
    out.first_read_s = time.perf_counter() - started

    await asyncio.sleep(warmup)
    calls0 = dict(kinesis.calls)
    profiler = cProfile.Profile() if profile else None
    t0, c0 = time.perf_counter(), cpu_seconds()
    if profiler is not None:
        profiler.enable()
    await asyncio.sleep(window)
    if profiler is not None:
        profiler.disable()
    out.window_s, out.window_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    out.get_records = kinesis.calls["GetRecords"] - calls0.get("GetRecords", 0)
    out.list_shards = kinesis.calls["ListShards"] - calls0.get("ListShards", 0)
    out.throttled = sum(s.throttled_get_records for s in kinesis.stats(STREAM).values())
    out.rss_after, out.rss_peak = rss_mib(), peak_rss_mib()
    if profiler is not None:
        out.profile += "== steady state ==\n" + top(profiler, 40)

    consumer.request_shutdown()
    await task
    await consumer.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument(
        "--warmup",
        type=float,
        default=70.0,
        help="seconds after all shards were read (ListShards back-off reaches 30 s at ~65 s)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window")
    parser.add_argument("--profile", action="store_true", help="cProfile the window")
    args = parser.parse_args()

    started = time.monotonic()
    o = asyncio.run(run(args.shards, args.warmup, args.seconds, args.profile))
    print(
        f"Python {platform.python_version()}, kinesio {version('kinesio')}, "
        f"{platform.machine()}; {o.shards} shards on InMemoryKinesis (limits enforced), "
        f"MemoryLeaseStore, ConsumerSettings() defaults (Polling idle_time 1.0 s); "
        f"warm-up {args.warmup:.0f} s, window {o.window_s:.1f} s; "
        f"total {time.monotonic() - started:.0f} s"
    )
    print()
    print("| measure | value |")
    print("|---|---:|")
    rows = [
        ("leases owned: all of them, after start()", f"{o.acquire_s:.2f} s"),
        ("CPU until then", f"{o.acquire_cpu:.2f} s"),
        ("every shard read once (first GetRecords), after start()", f"{o.first_read_s:.2f} s"),
        ("steady-state CPU, % of one core", f"{100 * o.window_cpu / o.window_s:.1f} %"),
        ("GetRecords calls/s", f"{o.get_records / o.window_s:,.0f}"),
        (
            "CPU per GetRecords call (all idle work included)",
            f"{1e6 * o.window_cpu / max(o.get_records, 1):.0f} µs",
        ),
        ("ListShards calls/s", f"{o.list_shards / o.window_s:.1f}"),
        ("GetRecords calls throttled (whole run)", f"{o.throttled}"),
        ("RSS before the consumer (fake stream only)", f"{o.rss_before:.0f} MiB"),
        ("RSS in steady state", f"{o.rss_after:.0f} MiB"),
        ("RSS added by the consumer", f"{o.rss_after - o.rss_before:.0f} MiB"),
        ("peak RSS (ru_maxrss)", f"{o.rss_peak:.0f} MiB"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    if o.profile:
        print()
        print(o.profile)


if __name__ == "__main__":
    main()
