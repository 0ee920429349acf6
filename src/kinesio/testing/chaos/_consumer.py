"""The consumer group's verdict: lost, order violations, duplicates (explained or not),
checkpoint regressions and failovers, from the workers' logs and lease-table snapshots."""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from kinesio._models import ExtendedSequenceNumber, Lease
from kinesio.testing.chaos._ledger import (
    Disruption,
    Handled,
    LeaseSnapshot,
    LeaseWrite,
    RecordId,
    WorkerRecords,
)

# -- the consumer verdict --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failover:
    """After ``disruption`` (kill -9 or SIGSTOP of a worker): the leases it held and how long
    until another worker had taken each (None: never taken)."""

    disruption: Disruption
    shards: tuple[str, ...]
    seconds: tuple[float | None, ...]

    @property
    def worst(self) -> float | None:
        if not self.seconds or any(s is None for s in self.seconds):
            return None
        return max(s for s in self.seconds if s is not None)


@dataclass
class ConsumerVerdict:
    """What a consumer-group run proved (see the module docstring)."""

    produced: int = 0
    producer_failed: int = 0
    handled: int = 0
    handler_calls: int = 0
    lost: list[RecordId] = field(default_factory=list)
    order_violations: list[str] = field(default_factory=list)
    duplicates_explained: int = 0
    duplicates_resent: int = 0
    duplicates_unexplained: list[str] = field(default_factory=list)
    checkpoint_regressions: list[str] = field(default_factory=list)
    checkpoints_checked: int = 0
    failovers: list[Failover] = field(default_factory=list)
    disruptions: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.order_violations
            or self.duplicates_unexplained
            or self.checkpoint_regressions
            or any(s is None for f in self.failovers for s in f.seconds)  # a stuck lease
        )

    def rows(self) -> list[tuple[str, str, str]]:
        """``(check, value, verdict)`` rows of the result table."""

        def verdict(bad: object) -> str:
            return "FAIL" if bad else "ok"

        taken = [f.worst for f in self.failovers if f.shards]
        timed = [s for s in taken if s is not None]
        failover_text = (
            f"{len(taken)} ({min(timed):.1f}–{max(timed):.1f} s)" if timed else f"{len(taken)}"
        )
        if len(timed) < len(taken):
            failover_text += f", {len(taken) - len(timed)} never taken over"
        return [
            ("produced and acknowledged", str(self.produced), ""),
            ("failed at the producer (reported)", str(self.producer_failed), ""),
            ("handled (distinct / handler calls)", f"{self.handled} / {self.handler_calls}", ""),
            ("lost", str(len(self.lost)), verdict(self.lost)),
            ("order violations", str(len(self.order_violations)), verdict(self.order_violations)),
            (
                "duplicates after a kill/steal (allowed)",
                str(self.duplicates_explained),
                "ok",
            ),
            ("duplicates re-sent by the producer (allowed)", str(self.duplicates_resent), "ok"),
            (
                "duplicates unexplained",
                str(len(self.duplicates_unexplained)),
                verdict(self.duplicates_unexplained),
            ),
            (
                f"checkpoint regressions (of {self.checkpoints_checked} lease writes)",
                str(len(self.checkpoint_regressions)),
                verdict(self.checkpoint_regressions),
            ),
            (
                "failovers (time until every lease was taken)",
                failover_text,
                verdict(timed != taken),
            ),
            (
                "faults injected",
                ", ".join(f"{k} {v}" for k, v in sorted(self.disruptions.items())) or "none",
                "",
            ),
        ]

    def problems(self, limit: int = 5) -> list[str]:
        """A few examples of each violation, for the report under the table."""
        out = [f"lost: {k}:{n}" for k, n in self.lost[:limit]]
        out += self.order_violations[:limit]
        out += self.duplicates_unexplained[:limit]
        out += self.checkpoint_regressions[:limit]
        return out


def _merged(logs: Iterable[WorkerRecords]) -> Iterator[Handled]:
    """Every handled record of every worker by time (each worker's own order kept)."""
    return heapq.merge(*(log.handled for log in logs), key=lambda h: h.t)


def consumer_verdict(
    acknowledged: Iterable[RecordId],
    logs: Sequence[WorkerRecords],
    *,
    producer_failed: int = 0,
    disruptions: Sequence[Disruption] = (),
    snapshots: Sequence[LeaseSnapshot] = (),
    resends_possible: bool = False,
) -> ConsumerVerdict:
    """Judge a consumer-group run (see the module docstring).

    ``acknowledged``: the records whose put succeeded. ``resends_possible``: the producer may
    have written a record twice (an answer was lost after the write took effect); a second
    copy at another stream position is then allowed.
    """
    v = ConsumerVerdict(producer_failed=producer_failed)
    acked = set(acknowledged)
    v.produced = len(acked)
    for d in disruptions:
        v.disruptions[d.kind] += 1

    takes: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for log in logs:
        for w in log.writes:
            if w.kind == "take":
                takes[w.shard].append((w.t, w.worker))
    for acquisitions in takes.values():
        acquisitions.sort()

    def holder_at(shard: str, t: float) -> str | None:
        last = None
        for at, worker in takes.get(shard, ()):
            if at > t:
                break
            last = worker
        return last

    def taken_between(shard: str, start: float, end: float) -> bool:
        return any(start < at <= end for at, _ in takes.get(shard, ()))

    first: dict[RecordId, Handled] = {}
    # the last handling of each copy of a record (a re-sent record has two stream positions)
    last: dict[tuple[RecordId, str, ExtendedSequenceNumber], Handled] = {}
    highest: dict[str, int] = {}
    for h in _merged(logs):
        v.handler_calls += 1
        rid = (h.key, h.n)
        copy = (rid, h.shard, h.position)
        seen = first.get(rid)
        previous = last.get(copy)
        last[copy] = h
        if seen is None:
            first[rid] = h
            top = highest.get(h.key, -1)
            if h.n < top:
                v.order_violations.append(
                    f"order: {h.worker} handled {h.key}:{h.n} (new) at {h.t:.3f} after "
                    f"{h.key}:{top} had been handled"
                )
            highest[h.key] = max(top, h.n)
            continue
        if previous is None:
            if resends_possible:
                v.duplicates_resent += 1
            else:
                v.duplicates_unexplained.append(
                    f"duplicate: {h.key}:{h.n} is in the stream twice ({seen.shard} "
                    f"{seen.position.sequence_number} and {h.shard} {h.position.sequence_number})"
                    " and the producer lost no answer"
                )
        elif (
            taken_between(h.shard, previous.t, h.t)
            or holder_at(h.shard, h.t) != h.worker
            or holder_at(h.shard, previous.t) != previous.worker
        ):
            v.duplicates_explained += 1
        else:
            v.duplicates_unexplained.append(
                f"duplicate: {h.worker} handled {h.key}:{h.n} of {h.shard} again at {h.t:.3f} "
                f"(before by {previous.worker} at {previous.t:.3f}) with no lease change between"
            )
    v.handled = len(first)
    v.lost = sorted(acked - first.keys())
    _check_lease_writes(v, logs)
    _check_snapshots(v, snapshots)
    v.failovers = _failovers(logs, disruptions)
    return v


def _check_lease_writes(v: ConsumerVerdict, logs: Sequence[WorkerRecords]) -> None:
    """Fencing, from the writes the workers made: one write per counter value; a checkpoint is
    written by the worker whose take is the latest before it; checkpoints never go back."""
    by_shard: dict[str, list[LeaseWrite]] = defaultdict(list)
    for log in logs:
        for w in log.writes:
            by_shard[w.shard].append(w)
    for shard, writes in by_shard.items():
        writes.sort(key=lambda w: (w.counter, w.t))
        v.checkpoints_checked += len(writes)
        holder: str | None = None
        position: ExtendedSequenceNumber | None = None
        for prev, w in zip([None, *writes], writes, strict=False):
            if prev is not None and prev.counter == w.counter:
                v.checkpoint_regressions.append(
                    f"fencing: {shard} counter {w.counter} written twice ({prev.worker} "
                    f"{prev.kind}, {w.worker} {w.kind})"
                )
            if w.kind == "take":
                holder = w.worker
            elif w.kind == "checkpoint":
                if holder is not None and holder != w.worker:
                    v.checkpoint_regressions.append(
                        f"zombie checkpoint: {w.worker} wrote {shard} checkpoint at counter "
                        f"{w.counter} after {holder} had taken the lease"
                    )
                assert w.position is not None
                if position is not None and w.position < position:
                    v.checkpoint_regressions.append(
                        f"backwards: {shard} checkpoint {w.position.sequence_number} by "
                        f"{w.worker} (counter {w.counter}) is before {position.sequence_number}"
                    )
                position = w.position if position is None else max(position, w.position)


def _check_snapshots(v: ConsumerVerdict, snapshots: Sequence[LeaseSnapshot]) -> None:
    """From polls of the table: a lease's counter never goes down, its checkpoint never back."""
    last: dict[str, Lease] = {}
    for snap in sorted(snapshots, key=lambda s: s.t):
        lease = snap.lease
        prev = last.get(lease.lease_key)
        last[lease.lease_key] = lease
        if prev is None:
            continue
        if lease.lease_counter < prev.lease_counter:
            v.checkpoint_regressions.append(
                f"table: {lease.lease_key} counter went from {prev.lease_counter} to "
                f"{lease.lease_counter} at {snap.t:.3f}"
            )
        elif lease.checkpoint < prev.checkpoint:
            v.checkpoint_regressions.append(
                f"table: {lease.lease_key} checkpoint went back from "
                f"{prev.checkpoint.sequence_number} to {lease.checkpoint.sequence_number} "
                f"(counter {lease.lease_counter}, owner {lease.lease_owner}) at {snap.t:.3f}"
            )


def _failovers(logs: Sequence[WorkerRecords], disruptions: Sequence[Disruption]) -> list[Failover]:
    events: list[tuple[float, str, str, str]] = []  # t, worker, shard, "+" / "-"
    for log in logs:
        events += [(w.t, w.worker, w.shard, "+") for w in log.writes if w.kind == "take"]
        events += [(e.t, e.worker, e.shard, "-") for e in log.left]
    events.sort()
    out: list[Failover] = []
    for d in disruptions:
        if d.worker is None or d.kind not in ("kill -9", "SIGSTOP"):
            continue
        # held: the worker's take is the shard's latest before the fault, and it did not leave
        # it since (a lease stolen just before the fault is not the faulted worker's any more)
        holder: dict[str, str | None] = {}
        for t, worker, shard, sign in events:
            if t > d.t:
                break
            if sign == "+":
                holder[shard] = worker
            elif holder.get(shard) == worker:
                holder[shard] = None
        held = {shard for shard, worker in holder.items() if worker == d.worker}
        held -= {
            w.shard  # it ended (SHARD_END written) before the fault: nothing left to take over
            for log in logs
            for w in log.writes
            if w.kind == "checkpoint"
            and w.t <= d.t
            and w.position is not None
            and w.position.sequence_number == "SHARD_END"
            and w.shard in held
        }
        seconds: list[float | None] = []
        for shard in sorted(held):
            taken = next(
                (t for t, w, s, sign in events if t > d.t and s == shard and sign == "+"), None
            )
            seconds.append(None if taken is None else taken - d.t)
        out.append(Failover(d, tuple(sorted(held)), tuple(seconds)))
    return out


def format_table(title: str, rows: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table (readable in a terminal, pasteable into RESULTS.md)."""
    lines = [f"**{title}**", "", "| check | value | verdict |", "|---|---:|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)
