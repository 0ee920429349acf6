"""``kinesio tail``: print a stream's records as they arrive, following resharding.

No lease and no checkpoint: every shard is read with GetRecords by this process alone, parents
before children. A shard ends when GetRecords returns no next iterator (the service's signal);
for emulators that never give it (moto), a shard that ListShards reports closed ends at its
first empty, caught-up read.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Annotated, Any

import typer

from kinesio._aws import AioKinesis
from kinesio._errors import ExpiredIteratorError, KinesioError
from kinesio._kinesis import StartingPosition
from kinesio._models import ChildShard, Record, Shard
from kinesio.cli._common import aws_config, binary_stdout, console, execute, fail, kinesis_client
from kinesio.cli._stream import shard_id_arg
from kinesio.consumer._deaggregate import deaggregate

#: Seconds between GetRecords calls on a shard that is caught up (the service allows 5 calls/s
#: per shard, shared by every reader of the stream) and on one that is behind.
IDLE_INTERVAL = 1.0
BEHIND_INTERVAL = 0.2
#: Seconds between ListShards calls while following (finds closed shards on emulators that
#: never signal a shard's end).
LIST_SHARDS_INTERVAL = 5.0
MAX_RECORDS = 10_000


class OutputFormat(StrEnum):
    raw = "raw"
    json = "json"


def parse_start(value: str) -> StartingPosition:
    """``trim-horizon``, ``latest`` or an ISO-8601 time (UTC when it has no offset)."""
    word = value.strip().lower().replace("_", "-")
    if word == "trim-horizon":
        return StartingPosition("TRIM_HORIZON")
    if word == "latest":
        return StartingPosition("LATEST")
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise fail(
            f"--from {value!r} is neither trim-horizon, latest nor an ISO-8601 time",
            hint="e.g. --from 2024-05-01T12:00:00Z",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return StartingPosition("AT_TIMESTAMP", timestamp=when)


def record_json(record: Record) -> dict[str, Any]:
    try:
        data, encoding = record.data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        data, encoding = base64.b64encode(record.data).decode("ascii"), "base64"
    arrival = record.approximate_arrival_timestamp
    return {
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "sub_sequence_number": record.sub_sequence_number,
        "partition_key": record.partition_key,
        "arrival": arrival.isoformat() if arrival is not None else None,
        "data": data,
        "data_encoding": encoding,
    }


def _from_child(child: ChildShard) -> Shard:
    parents = child.parent_shards
    return Shard(
        shard_id=child.shard_id,
        starting_hash_key=child.starting_hash_key,
        ending_hash_key=child.ending_hash_key,
        parent_shard_id=parents[0] if parents else None,
        adjacent_parent_shard_id=parents[1] if len(parents) > 1 else None,
    )


class _Stop(Exception):
    """Enough records printed, or stdout closed."""


@dataclass
class _Reader:
    shard: Shard
    position: StartingPosition
    task: asyncio.Task[None] | None = None
    caught_up: bool = False
    ended: bool = False
    children: tuple[ChildShard, ...] = ()


class _Tail:
    def __init__(
        self,
        kinesis: AioKinesis,
        stream: str,
        out: IO[bytes],
        *,
        start: StartingPosition,
        fmt: OutputFormat,
        limit: int | None,
        follow: bool,
        only_shard: str | None,
    ) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.out = out
        self.start = start
        self.fmt = fmt
        self.limit = limit
        self.follow = follow
        self.only_shard = only_shard
        self.printed = 0
        self.shards: dict[str, Shard] = {}
        self.closed: set[str] = set()
        self.readers: dict[str, _Reader] = {}
        self.changed = asyncio.Event()
        self.stopped = False

    # -- shards --------------------------------------------------------------------------

    async def refresh(self) -> None:
        for shard in await self.kinesis.list_shards(self.stream):
            self.shards[shard.shard_id] = shard
            if not shard.is_open:
                self.closed.add(shard.shard_id)

    def child_position(self) -> StartingPosition:
        # A child holds only records written after its parents closed: read it all, except
        # that with a time given, what precedes that time is skipped.
        return self.start if self.start.type == "AT_TIMESTAMP" else StartingPosition("TRIM_HORIZON")

    def initial_shards(self) -> list[Shard]:
        if self.only_shard is not None:
            shard = self.shards.get(self.only_shard)
            if shard is None:
                listed = ", ".join(sorted(self.shards)) or "none"
                raise fail(
                    f"stream {self.stream!r} has no shard {self.only_shard!r}",
                    hint=f"its shards: {listed}",
                )
            return [shard]
        if self.start.type == "LATEST":
            return [s for s in self.shards.values() if s.is_open]
        # From the oldest data: the shards with no listed parent; the others follow their ends.
        return [
            s for s in self.shards.values() if not any(p in self.shards for p in s.parent_shard_ids)
        ]

    def start_reader(self, shard: Shard, position: StartingPosition) -> None:
        reader = _Reader(shard, position)
        self.readers[shard.shard_id] = reader
        reader.task = asyncio.create_task(self.read(reader), name=f"tail-{shard.shard_id}")

    def start_ready_children(self) -> None:
        """Start every known child whose parents (those this tail reads) have all ended."""
        if self.only_shard is not None:
            return
        candidates: dict[str, Shard] = {}
        for reader in self.readers.values():
            if not reader.ended:
                continue
            for child in reader.children:
                candidates.setdefault(child.shard_id, _from_child(child))
            for shard in self.shards.values():
                if reader.shard.shard_id in shard.parent_shard_ids:
                    candidates[shard.shard_id] = shard
        for shard_id, shard in sorted(candidates.items()):
            if shard_id in self.readers:
                continue
            parents = [self.readers.get(p) for p in shard.parent_shard_ids]
            if all(p is None or p.ended for p in parents):
                self.start_reader(self.shards.get(shard_id, shard), self.child_position())

    # -- reading -------------------------------------------------------------------------

    async def read(self, reader: _Reader) -> None:
        shard_id = reader.shard.shard_id
        last_seq: str | None = None
        iterator: str | None = None
        backoff = 0.5
        while True:
            try:
                if iterator is None:
                    position = (
                        StartingPosition("AFTER_SEQUENCE_NUMBER", sequence_number=last_seq)
                        if last_seq is not None
                        else reader.position
                    )
                    iterator = await self.kinesis.get_shard_iterator(
                        self.stream, shard_id, position
                    )
                known_closed = shard_id in self.closed
                out = await self.kinesis.get_records(iterator, limit=MAX_RECORDS)
            except ExpiredIteratorError:
                iterator = None
                continue
            except KinesioError as exc:
                if not exc.retriable:
                    raise
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            for kinesis_record in out.records:
                self.emit(deaggregate(kinesis_record, reader.shard))
                last_seq = kinesis_record.sequence_number
            if out.records:
                self.flush()
            behind = out.millis_behind_latest
            if out.next_shard_iterator is None or (known_closed and not out.records and not behind):
                reader.children = tuple(out.child_shards)
                reader.ended = True
                self.changed.set()
                return
            iterator = out.next_shard_iterator
            reader.caught_up = (not out.records and not behind) or (
                behind == 0 and len(out.records) < MAX_RECORDS
            )
            self.changed.set()
            if not reader.caught_up:
                await asyncio.sleep(BEHIND_INTERVAL)
            elif known_closed:
                await asyncio.sleep(0.05)  # its end is the next empty read
            else:
                await asyncio.sleep(IDLE_INTERVAL)

    def emit(self, records: list[Record]) -> None:
        for record in records:
            if self.stopped:
                raise _Stop
            if self.fmt is OutputFormat.json:
                line = json.dumps(record_json(record), ensure_ascii=False).encode() + b"\n"
            else:
                line = record.data if record.data.endswith(b"\n") else record.data + b"\n"
            try:
                self.out.write(line)
            except BrokenPipeError:
                self.stopped = True
                raise _Stop from None
            self.printed += 1
            if self.limit is not None and self.printed >= self.limit:
                self.stopped = True
                self.flush()
                self.changed.set()
                raise _Stop

    def flush(self) -> None:
        try:
            self.out.flush()
        except BrokenPipeError:
            self.stopped = True

    # -- supervising ---------------------------------------------------------------------

    def done(self) -> bool:
        if self.stopped:
            return True
        if all(r.ended for r in self.readers.values()):
            return True  # nothing left to read (every shard ended, or the one asked for)
        if self.follow:
            return False
        # A closed shard is not done when caught up: its end starts its children.
        return all(
            r.ended or (r.caught_up and r.shard.shard_id not in self.closed)
            for r in self.readers.values()
        )

    async def run(self) -> None:
        await self.refresh()
        for shard in self.initial_shards():
            self.start_reader(shard, self.start)
        next_refresh = asyncio.get_running_loop().time() + LIST_SHARDS_INTERVAL
        ended_seen = 0
        try:
            while True:
                self.check_failures()
                ended = sum(1 for r in self.readers.values() if r.ended)
                if ended != ended_seen:
                    ended_seen = ended
                    await self.refresh()  # the children, with their hash key ranges
                    self.start_ready_children()
                    continue
                if self.done():
                    break
                now = asyncio.get_running_loop().time()
                if self.follow and now >= next_refresh:
                    next_refresh = now + LIST_SHARDS_INTERVAL
                    await self.refresh()
                    self.start_ready_children()
                self.changed.clear()
                try:
                    async with asyncio.timeout(max(0.05, next_refresh - now)):
                        await self.changed.wait()
                except TimeoutError:
                    pass
        finally:
            await self.stop_readers()
        if self.only_shard is not None and self.readers[self.only_shard].ended:
            reader = self.readers[self.only_shard]
            children = [c.shard_id for c in reader.children] or [
                s.shard_id for s in self.shards.values() if self.only_shard in s.parent_shard_ids
            ]
            console.print(
                f"shard {self.only_shard} has ended; its children: "
                + (", ".join(children) or "none listed yet")
            )

    def check_failures(self) -> None:
        for reader in self.readers.values():
            task = reader.task
            if task is None or not task.done() or task.cancelled():
                continue
            exc = task.exception()
            if exc is not None and not isinstance(exc, _Stop):
                raise exc

    async def stop_readers(self) -> None:
        tasks = [r.task for r in self.readers.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def tail(
    ctx: typer.Context,
    stream: Annotated[str, typer.Argument(help="The stream to read.", show_default=False)],
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="trim-horizon (the oldest record kept), latest (only new records) or an "
            "ISO-8601 time such as 2024-05-01T12:00:00Z (UTC if no offset).",
        ),
    ] = "latest",
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="Read only this shard (shardId-000000000001, or just 1); its children are "
            "named when it ends, not read.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            help="raw: each record's data as a line; json: one object per record with "
            "shard_id, sequence_number, sub_sequence_number, partition_key, arrival, data and "
            "data_encoding (utf-8, or base64 for binary data).",
        ),
    ] = OutputFormat.raw,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many records.", show_default=False),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            help="Keep waiting for new records (--no-follow: stop once every shard is caught up)."
        ),
    ] = True,
) -> None:
    """Print a stream's records as they arrive, from every shard (or one), deaggregated.

    KPL aggregates are unpacked into their user records. Shards are read parents first: when
    a shard ends after a split or merge, its children are read next. Nothing is checkpointed
    and no lease is taken, so this never disturbs a consumer application; it does share each
    shard's read limit (5 GetRecords calls/s; this reads each shard about once per second when
    caught up). Records go to stdout, messages to stderr.

    Example: kinesio tail orders --from trim-horizon --format json --limit 10
    """
    position = parse_start(start)
    aws = aws_config(ctx)
    only = shard_id_arg(shard) if shard is not None else None

    async def run() -> int:
        async with kinesis_client(aws) as kinesis:
            tailer = _Tail(
                kinesis,
                stream,
                binary_stdout(),
                start=position,
                fmt=fmt,
                limit=limit,
                follow=follow,
                only_shard=only,
            )
            await tailer.run()
            return tailer.printed

    execute(run())
