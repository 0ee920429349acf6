"""What a run under fire writes down: the records' payloads, the workers' logs (one line
per handled record and per lease write) and reading them back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from kinesio._models import ExtendedSequenceNumber, Lease
from kinesio.events import (
    CheckpointWritten,
    DiagnosticEvent,
    LeaseAcquired,
    LeaseLostEvent,
    LeaseReleased,
    LeaseRenewed,
    ShardEnded,
)

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
