"""The playground's dashboard: its state (produced, handled, leases, events) and the live tables."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from kinesio._models import SHARD_END, Lease
from kinesio.cli._common import console
from kinesio.producer import AsyncProducer
from kinesio.testing.chaos import (
    Disruption,
    LogTail,
)

STREAM = "playground"
APP = "playground-app"


@dataclass
class Worker:
    name: str
    log: Path
    proc: subprocess.Popen[bytes]
    stderr: IO[bytes]
    killed: bool = False

    def __post_init__(self) -> None:
        self.tail = LogTail(self.log)


@dataclass
class State:
    """Everything the dashboard shows."""

    started: float = field(default_factory=time.monotonic)
    produced: dict[tuple[str, int], str] = field(default_factory=dict)  # record -> its shard
    produced_per_shard: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    consumed: Counter[tuple[str, int]] = field(default_factory=Counter)
    consumed_per_shard: Counter[str] = field(default_factory=Counter)
    leases: list[Lease] = field(default_factory=list)
    ever_leased: set[str] = field(default_factory=set)
    events: list[str] = field(default_factory=list)
    disruptions: list[Disruption] = field(default_factory=list)
    echo: bool = False  # print events as they happen (no live dashboard)

    def note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:5.1f} s  {text}")
        if self.echo:
            console.print(escape(self.events[-1]))


def read_logs(state: State, workers: list[Worker]) -> None:
    for w in workers:
        for shard, key, n in w.tail.handled():
            state.consumed[(key, n)] += 1
            state.consumed_per_shard[shard] += 1


def shard_state(lease: Lease, by_key: dict[str, Lease]) -> str:
    if lease.checkpoint.sequence_number == SHARD_END:
        return "[dim]finished[/]"
    for parent in lease.parent_shard_ids:
        p = by_key.get(parent)
        if p is not None and p.checkpoint.sequence_number != SHARD_END:
            return "[yellow]blocked on parent[/]"
    if lease.lease_owner is None:
        return "[red]unowned[/]"
    return "[green]processing[/]"


def render(state: State, workers: list[Worker], producer: AsyncProducer) -> Group:
    by_key = {lease.lease_key: lease for lease in state.leases}
    pid_to_worker = {str(w.proc.pid): w.name for w in workers}

    def owner_name(owner: str | None) -> str:
        if owner is None:
            return "-"
        parts = owner.split(":")
        return pid_to_worker.get(parts[1], owner) if len(parts) >= 2 else owner

    shards = Table(
        title=f"kinesio playground — stream {STREAM!r}, application {APP!r} — "
        f"{time.monotonic() - state.started:5.1f} s"
    )
    for col in ("shard", "state", "owner", "counter", "checkpoint", "produced", "consumed"):
        shards.add_column(
            col, justify="right" if col in ("counter", "produced", "consumed") else "left"
        )
    for key in sorted(set(by_key) | set(state.produced_per_shard)):
        lease = by_key.get(key)
        checkpoint = "-"
        if lease is not None:
            cp = lease.checkpoint.sequence_number
            checkpoint = cp if cp.isalpha() or len(cp) < 14 else f"…{cp[-10:]}"
            if lease.checkpoint.sub_sequence_number:
                checkpoint += f"/{lease.checkpoint.sub_sequence_number}"
        shards.add_row(
            key,
            shard_state(lease, by_key)
            if lease
            else "[dim]finished (lease deleted)[/]"
            if key in state.ever_leased
            else "[dim]no lease yet[/]",
            owner_name(lease.lease_owner) if lease else "-",
            str(lease.lease_counter) if lease else "-",
            checkpoint,
            str(state.produced_per_shard.get(key, 0)),
            str(state.consumed_per_shard.get(key, 0)),
        )
    held = Counter(owner_name(lease.lease_owner) for lease in state.leases if lease.lease_owner)
    worker_table = Table(title="workers")
    for col in ("worker", "pid", "status", "leases held"):
        worker_table.add_column(col)
    for w in workers:
        status = (
            "[red]killed (kill -9)[/]"
            if w.killed
            else ("running" if w.proc.poll() is None else f"exited {w.proc.returncode}")
        )
        worker_table.add_row(w.name, str(w.proc.pid), status, str(held.get(w.name, 0)))
    m = producer.metrics()
    lines = [
        f"producer: {len(state.produced)} acknowledged, {state.failed} failed, "
        f"{m.user_records_per_second:.0f} records/s, {m.kinesis_records_put} Kinesis records in "
        f"{m.put_records_calls} PutRecords, throttled {m.throttled}, retries {m.retries}, "
        f"latency p50 {m.latency_percentile(50):.0f} ms / p99 {m.latency_percentile(99):.0f} ms",
        f"consumers: {len(state.consumed)} distinct records handled, "
        f"{sum(state.consumed.values()) - len(state.consumed)} duplicates",
        *state.events[-6:],
    ]
    return Group(shards, worker_table, *lines)
