"""Checking "nothing lost, order kept" after a run under fire: the ledger and its verdicts.

Two checks, shared by ``benchmarks/chaos.py`` (the chaos harness), ``kinesio playground`` and
the test suite:

* **Consumer group** (:func:`consumer_verdict`): records are ``(key, n)`` pairs, ``n`` counting
  up per partition key. Consumer workers log every record they handle and every lease write
  they make (:class:`WorkerLog` writes, :func:`read_worker_log` reads the lines); a poller may
  add snapshots of the lease table. The verdict counts records produced and acknowledged but
  never handled (**lost**), records of a key handled for the first time after a later record of
  that key was already handled (**order violations**), records handled more than once
  (**duplicates**: *explained* when the lease of their shard changed hands between the two
  handlings, or one of the two handlers no longer held the lease — a zombie; *re-sent* when the
  stream holds two copies because the producer repeated a write whose answer was lost;
  *unexplained* otherwise), lease writes that break the fencing rules (**checkpoint
  regressions**: a checkpoint moving backwards, two writes claiming one counter, a checkpoint
  by a worker that no longer held the lease) and the **failovers** after each disruption.
* **Producer** (:func:`producer_under_fire`): every record put is delivered (in per-key order
  with ``ordered=True``) or failed through its future *and* the error hook; none vanishes.

Each verdict's ``ok`` is False on any violation, and ``rows()`` gives the table printed by the
harness. Times are wall-clock seconds (``time.time()``); the processes of one run share a host,
so their clocks agree.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from kinesio._errors import KinesioError, ProducerClosedError
from kinesio._models import ExtendedSequenceNumber, Lease, ProducerRecord, PutResult
from kinesio.events import (
    CheckpointWritten,
    DiagnosticEvent,
    LeaseAcquired,
    LeaseLostEvent,
    LeaseReleased,
    LeaseRenewed,
    ShardEnded,
)
from kinesio.producer import AsyncProducer
from kinesio.producer._producer import ErrorHook

__all__ = [
    "ConsumerVerdict",
    "Disruption",
    "Failover",
    "Handled",
    "LogTail",
    "LeaseSnapshot",
    "LeaseWrite",
    "ProducerVerdict",
    "WorkerLog",
    "consumer_verdict",
    "format_table",
    "parse_payload",
    "payload",
    "producer_under_fire",
    "read_worker_log",
]

#: A record key and its per-key counter: what the harness writes and checks.
RecordId = tuple[str, int]


def payload(key: str, n: int, size: int = 0) -> bytes:
    """The data of record ``n`` of ``key`` (``key:n``, padded with dots to ``size`` bytes)."""
    data = f"{key}:{n}".encode()
    return data + b"." * (size - len(data)) if size > len(data) else data


def parse_payload(data: bytes) -> RecordId:
    """``(key, n)`` from :func:`payload` data; ``ValueError`` for anything else."""
    key, _, rest = data.decode().partition(":")
    return key, int(rest.rstrip("."))


# -- what the workers log ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Handled:
    """One handler call: ``worker`` handled record ``(key, n)`` of ``shard`` at ``t``."""

    t: float
    worker: str
    shard: str
    position: ExtendedSequenceNumber
    key: str
    n: int


@dataclass(frozen=True, slots=True)
class LeaseWrite:
    """A lease write a worker made: a take, a renewal or a checkpoint, with the counter it set."""

    t: float
    worker: str
    shard: str
    counter: int
    kind: Literal["take", "renew", "checkpoint"]
    position: ExtendedSequenceNumber | None = None


@dataclass(frozen=True, slots=True)
class LeaseLeft:
    """A worker stopped holding a lease: lost, released or its shard ended."""

    t: float
    worker: str
    shard: str
    why: str


@dataclass(frozen=True, slots=True)
class LeaseSnapshot:
    """One lease as a poll of the lease table saw it at ``t``."""

    t: float
    lease: Lease


@dataclass(frozen=True, slots=True)
class Disruption:
    """A fault the harness injected at ``t``: ``kind`` (``kill -9``, ``SIGSTOP``, ``split``...)
    and the worker it hit, if any."""

    t: float
    kind: str
    worker: str | None = None
    detail: str = ""


class WorkerLog:
    """Writes one worker's log: a line per handled record and per lease event, flushed.

    ``handled(record)`` is called from the record handler, ``event`` is the consumer's
    ``on_event`` hook. Lines are space separated; :func:`read_worker_log` reads them back.
    """

    def __init__(self, out: IO[str], worker: str) -> None:
        self._out = out
        self.worker = worker

    def handled(self, shard: str, position: ExtendedSequenceNumber, data: bytes) -> None:
        key, n = parse_payload(data)
        self._write(
            f"R {time.time():.6f} {shard} {position.sequence_number} "
            f"{position.sub_sequence_number} {key} {n}"
        )

    def event(self, event: DiagnosticEvent) -> None:
        t = f"{time.time():.6f}"
        if isinstance(event, LeaseAcquired):
            self._write(f"A {t} {event.lease_key} {event.lease_counter}")
        elif isinstance(event, LeaseRenewed):
            self._write(f"N {t} {event.lease_key} {event.lease_counter}")
        elif isinstance(event, CheckpointWritten):
            self._write(
                f"C {t} {event.shard_id} {event.lease_counter} {event.sequence_number} "
                f"{event.sub_sequence_number}"
            )
        elif isinstance(event, LeaseLostEvent):
            self._write(f"L {t} {event.lease_key} lost")
        elif isinstance(event, LeaseReleased):
            self._write(f"L {t} {event.lease_key} released")
        elif isinstance(event, ShardEnded):
            self._write(f"L {t} {event.shard_id} ended")

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()


class LogTail:
    """Follows a :class:`WorkerLog` file while it grows: :meth:`handled` returns the
    ``(shard, key, n)`` of the records logged since the last call (complete lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def handled(self) -> list[tuple[str, str, int]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        out: list[tuple[str, str, int]] = []
        for line in chunk[:end].split(b"\n"):
            if line.startswith(b"R "):
                parts = line.decode().split(" ")  # R time shard seq sub key n
                out.append((parts[2], parts[5], int(parts[6])))
        return out


@dataclass
class WorkerRecords:
    """Everything one worker's log says."""

    handled: list[Handled] = field(default_factory=list)
    writes: list[LeaseWrite] = field(default_factory=list)
    left: list[LeaseLeft] = field(default_factory=list)


def read_worker_log(path: Path, worker: str) -> WorkerRecords:
    """Parse a log written by :class:`WorkerLog`. A last line cut short by ``kill -9`` is
    skipped; any other malformed line raises ``ValueError``."""
    out = WorkerRecords()
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines[:-1], 1):  # the text after the last newline is cut
        parts = line.split(" ")
        try:
            kind, t = parts[0], float(parts[1])
            if kind == "R":
                shard, seq, sub, key, n = parts[2:]
                position = ExtendedSequenceNumber(seq, int(sub))
                out.handled.append(Handled(t, worker, shard, position, key, int(n)))
            elif kind in ("A", "N"):
                shard, counter = parts[2:]
                what: Literal["take", "renew"] = "take" if kind == "A" else "renew"
                out.writes.append(LeaseWrite(t, worker, shard, int(counter), what))
            elif kind == "C":
                shard, counter, seq, sub = parts[2:]
                position = ExtendedSequenceNumber(seq, int(sub))
                out.writes.append(
                    LeaseWrite(t, worker, shard, int(counter), "checkpoint", position)
                )
            elif kind == "L":
                shard, why = parts[2:]
                out.left.append(LeaseLeft(t, worker, shard, why))
            else:
                raise ValueError(kind)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: malformed line {line!r}") from exc
    return out


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


# -- the producer under fire -------------------------------------------------------------------


@dataclass
class ProducerVerdict:
    """What a producer run under fire proved: every record put was delivered or reported."""

    produced: int = 0
    delivered: int = 0
    reported_failed: int = 0
    vanished: list[str] = field(default_factory=list)
    order_violations: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    #: The records whose future says delivered: compare with what the stream holds.
    delivered_records: set[RecordId] = field(default_factory=set)
    closed_mid_stream: bool = False
    ordered: bool = False

    @property
    def ok(self) -> bool:
        return not self.vanished and not self.order_violations

    def rows(self) -> list[tuple[str, str, str]]:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "-"
        return [
            ("records put (accepted)", str(self.produced), ""),
            ("delivered", str(self.delivered), ""),
            (f"reported failed (future + on_error): {failed}", str(self.reported_failed), ""),
            ("vanished", str(len(self.vanished)), "FAIL" if self.vanished else "ok"),
            (
                "order violations" + ("" if self.ordered else " (not ordered: not checked)"),
                str(len(self.order_violations)),
                "FAIL" if self.order_violations else "ok",
            ),
        ]


async def producer_under_fire(
    start_producer: Callable[[ErrorHook], Awaitable[AsyncProducer]],
    *,
    records: int,
    keys: int,
    ordered: bool,
    close_after: int | None = None,
    close_timeout: float = 0.5,
    during: Callable[[int], object] | None = None,
    size: int = 0,
    seed: int = 0,
) -> ProducerVerdict:
    """Put ``records`` records over ``keys`` keys (``(key, n)`` payloads) and check that each is
    delivered (in put order per key when ``ordered``) or failed through its future and
    reported once to the error hook.

    ``start_producer(on_error)`` returns (awaitably) a started :class:`kinesio.AsyncProducer`
    that passes failures to ``on_error``. ``during(i)`` is called before the
    i-th put (to inject faults, reset connections...; it may return an awaitable). With
    ``close_after``, the producer is closed (``aclose(close_timeout)``) concurrently with the
    puts once that many records were put; puts refused because it closed are not counted as
    produced. Otherwise it is closed after the last put, without a timeout.
    """
    v = ProducerVerdict(ordered=ordered, closed_mid_stream=close_after is not None)
    reported: Counter[bytes] = Counter()

    def on_error(record: ProducerRecord, _error: KinesioError) -> None:
        reported[record.data] += 1

    producer = await start_producer(on_error)
    rng = random.Random(seed)
    counters = [0] * keys
    futures: list[tuple[RecordId, asyncio.Future[PutResult]]] = []
    closing: asyncio.Task[None] | None = None
    for i in range(records):
        if during is not None:
            result = during(i)
            if asyncio.iscoroutine(result):
                await result
        if close_after is not None and i == close_after:
            closing = asyncio.create_task(producer.aclose(timeout=close_timeout))
            await asyncio.sleep(0)  # let it start closing while puts go on
        k = rng.randrange(keys)
        key, n = f"k{k}", counters[k]
        try:
            fut = await producer.put(payload(key, n, size), partition_key=key)
        except ProducerClosedError:
            if closing is None:
                raise
            continue
        counters[k] += 1
        futures.append(((key, n), fut))
        if i % 64 == 0:
            await asyncio.sleep(0)
    if closing is not None:
        await closing
    await producer.aclose()
    v.produced = len(futures)
    delivered: dict[str, list[tuple[int, PutResult]]] = defaultdict(list)
    for (key, n), fut in futures:
        data = payload(key, n, size)
        if not fut.done():
            v.vanished.append(f"{key}:{n}: its future is still pending after close")
        elif fut.cancelled():
            v.vanished.append(f"{key}:{n}: its future was cancelled")
        elif fut.exception() is not None:
            v.reported_failed += 1
            v.failures[type(fut.exception()).__name__] += 1
            if reported[data] != 1:
                v.vanished.append(
                    f"{key}:{n}: failed ({fut.exception()!r}) but reported to on_error "
                    f"{reported[data]} times"
                )
        else:
            v.delivered += 1
            v.delivered_records.add((key, n))
            delivered[key].append((n, fut.result()))
            if reported[data]:
                v.vanished.append(f"{key}:{n}: delivered but also reported to on_error")
    if ordered:
        for key, results in delivered.items():
            results.sort(key=lambda x: x[0])
            for (n0, r0), (n1, r1) in itertools.pairwise(results):
                p0 = ExtendedSequenceNumber(r0.sequence_number, r0.sub_sequence_number)
                p1 = ExtendedSequenceNumber(r1.sequence_number, r1.sub_sequence_number)
                if r0.shard_id == r1.shard_id and not p0 < p1:
                    v.order_violations.append(
                        f"{key}:{n1} was written at {r1.sequence_number}/"
                        f"{r1.sub_sequence_number}, not after {key}:{n0}"
                    )
    return v
