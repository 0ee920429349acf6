"""What listening to the producer's events costs: CPU per user record with no ``on_event``,
with a plain callback, with ``PrometheusMetrics`` and with ``CloudWatchMetrics``.

Run: .venv/bin/python benchmarks/bench_producer_events.py        (about 1 min)

One ``AsyncProducer`` writes 100-byte records with 1000 partition keys to a 4-shard stream of
``kinesio.testing.InMemoryKinesis`` with service limits off (the fake answers in-process: no
HTTP, no botocore), with and without KPL aggregation. CPU is the process's user + system time
(``getrusage``) from the first put() until flush() returns; each case is run ``--repeat``
times, taking turns with the other cases, and the best run is reported (the least disturbed
by other work on the machine). The CloudWatch sink only aggregates here: it is never flushed.
With a listener the producer builds one ``PutRecordsSent`` event per PutRecords request, from
a per-shard tally kept for every user record of the request.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import resource
from collections.abc import Callable
from importlib.metadata import version

from prometheus_client import CollectorRegistry

from kinesio import AsyncProducer, CloudWatchMetrics, ProducerSettings
from kinesio.events import DiagnosticEvent, EventHook
from kinesio.metrics.prometheus import PrometheusMetrics
from kinesio.testing import InMemoryKinesis

STREAM = "events"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def listeners() -> dict[str, Callable[[], EventHook | None]]:
    def counting() -> EventHook:
        seen = [0]

        def hook(event: DiagnosticEvent) -> None:
            seen[0] += 1

        return hook

    return {
        "no on_event": lambda: None,
        "plain callback": counting,
        "PrometheusMetrics": lambda: PrometheusMetrics(CollectorRegistry()),
        "CloudWatchMetrics (aggregating)": lambda: CloudWatchMetrics(namespace="bench"),
    }


async def run(records: int, aggregate: bool, hook: EventHook | None) -> tuple[float, int]:
    """CPU seconds for ``records`` puts and their results; PutRecords calls made."""
    kinesis = InMemoryKinesis(enforce_limits=False)
    await kinesis.create_stream(STREAM, 4)
    settings = ProducerSettings(aggregate=aggregate, linger=0.005)
    data = b"x" * 100
    async with AsyncProducer(STREAM, kinesis=kinesis, settings=settings, on_event=hook) as p:
        start = cpu_seconds()
        for i in range(records):
            await p.put(data, f"k{i % 1000}")
        await p.flush()
        used = cpu_seconds() - start
    return used, kinesis.calls["PutRecords"]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=5)
    o = parser.parse_args()
    cases = [(agg, name, make) for agg in (True, False) for name, make in listeners().items()]
    best: dict[tuple[bool, str], float] = {}
    calls: dict[tuple[bool, str], int] = {}
    for _ in range(o.repeat):
        for aggregate, name, make in cases:
            used, n = asyncio.run(run(o.records, aggregate, make()))
            key = (aggregate, name)
            best[key] = min(best.get(key, used), used)
            calls[key] = n
    print(
        f"Python {platform.python_version()}, kinesio {version('kinesio')}, "
        f"prometheus-client {version('prometheus-client')}, {platform.machine()}; "
        f"{o.records} records of 100 bytes, 1000 keys, 4 shards on InMemoryKinesis "
        f"(limits off); best of {o.repeat}"
    )
    print()
    print("| aggregation | listener | PutRecords calls | µs CPU per record | vs no on_event |")
    print("|---|---|---:|---:|---:|")
    for aggregate, name, _ in cases:
        key = (aggregate, name)
        per_record = best[key] / o.records * 1e6
        base = best[(aggregate, "no on_event")] / o.records * 1e6
        print(
            f"| {'KPL' if aggregate else 'off'} | {name} | {calls[key]} | {per_record:.1f} "
            f"| {per_record - base:+.1f} |"
        )


if __name__ == "__main__":
    main()
