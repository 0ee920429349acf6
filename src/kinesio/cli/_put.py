"""``kinesio put``: lines from files or stdin into a stream, through kinesio's producer."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn

from kinesio._aws import AWSConfig
from kinesio._config import ProducerSettings
from kinesio._errors import ValidationError
from kinesio._models import PutResult
from kinesio.cli._common import aws_config, console, execute, fail
from kinesio.producer import AsyncProducer

#: How many failed lines are shown one by one in the summary.
SHOW_FAILURES = 5


@dataclass
class _Tally:
    read: int = 0
    put: int = 0
    failed: int = 0
    skipped: int = 0
    bytes_put: int = 0
    shards: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def fail(self, where: str, reason: str) -> None:
        self.failed += 1
        self.reasons[reason] += 1
        if len(self.examples) < SHOW_FAILURES:
            self.examples.append(f"{where}: {reason}")


@dataclass(frozen=True)
class _Source:
    name: str
    path: Path | None  # None: stdin

    def size(self) -> int | None:
        if self.path is None:
            return None
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None


def _sources(files: list[Path] | None) -> list[_Source]:
    if not files:
        return [_Source("<stdin>", None)]
    sources = []
    for path in files:
        if str(path) == "-":
            sources.append(_Source("<stdin>", None))
            continue
        if not path.exists():
            raise fail(f"no such file: {path}", hint="pass - (or no FILE) to read stdin")
        if path.is_dir():
            raise fail(f"{path} is a directory, not a file of records")
        if not os.access(path, os.R_OK):
            raise fail(f"cannot read {path}: permission denied")
        sources.append(_Source(str(path), path))
    return sources


async def _lines(handle: IO[bytes], regular: bool) -> AsyncIterator[bytes]:
    if regular:
        for line in handle:
            yield line
        return
    # A pipe or terminal may block for a long time between lines: read it off the event loop
    # so the producer keeps sending meanwhile.
    while line := await asyncio.to_thread(handle.readline):
        yield line


def _key_from_json(line: bytes, key_field: str | None) -> tuple[str | None, str | None]:
    """(partition key or None for the default, failure reason or None)."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return None, f"not valid JSON ({exc.__class__.__name__}: {exc})"
    if not isinstance(obj, dict):
        return None, f"not a JSON object (a {type(obj).__name__})"
    if key_field is None:
        return None, None
    if key_field not in obj:
        return None, f"no field {key_field!r} for the partition key"
    value = obj[key_field]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, f"field {key_field!r} is a {type(value).__name__}, not a string or number"
    key = str(value)
    if not key:
        return None, f"field {key_field!r} is empty (a partition key has 1-256 characters)"
    return key, None


async def _put_all(
    stream: str,
    sources: list[_Source],
    settings: ProducerSettings,
    key: str | None,
    as_json: bool,
    key_field: str | None,
    tally: _Tally,
    aws: AWSConfig,
) -> float:
    sizes = [s.size() for s in sources]
    total = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        *([BarColumn()] if total is not None else []),
        TextColumn("{task.fields[status]}"),
    ]
    progress = Progress(*columns, console=console, disable=not console.is_terminal)
    started = time.monotonic()

    def status() -> str:
        rate = tally.put / max(time.monotonic() - started, 1e-6)
        return f"{tally.read} read, {tally.put} put, {tally.failed} failed, {rate:,.0f} records/s"

    async with AsyncProducer(stream, settings=settings, aws=aws) as producer:
        with progress:
            task: TaskID = progress.add_task(f"put → {stream}", total=total, status=status())
            for source in sources:
                handle: IO[bytes]
                if source.path is None:
                    handle = sys.stdin.buffer
                    regular = False
                else:
                    handle = source.path.open("rb")
                    regular = True
                try:
                    lineno = 0
                    async for raw in _lines(handle, regular):
                        lineno += 1
                        progress.advance(task, len(raw))
                        data = raw.rstrip(b"\n").rstrip(b"\r")
                        if not data:
                            tally.skipped += 1
                            continue
                        tally.read += 1
                        where = f"{source.name}:{lineno}"
                        partition_key = key
                        if as_json or key_field is not None:
                            from_json, reason = _key_from_json(data, key_field)
                            if reason is not None:
                                tally.fail(where, reason)
                                continue
                            partition_key = partition_key or from_json
                        if partition_key is None:
                            partition_key = uuid.uuid4().hex
                        try:
                            future = await producer.put(data, partition_key)
                        except ValidationError as exc:
                            tally.fail(where, str(exc))
                            continue
                        future.add_done_callback(_on_done(tally, where, len(data)))
                        if lineno % 100 == 0:
                            progress.update(task, status=status())
                            # a file reads without ever waiting: let the sender run meanwhile
                            await asyncio.sleep(0)
                finally:
                    if source.path is not None:
                        handle.close()
            progress.update(task, description=f"flushing → {stream}", status=status())
            await producer.flush()
            progress.update(task, status=status())
    return time.monotonic() - started


def _on_done(tally: _Tally, where: str, size: int) -> Callable[[asyncio.Future[PutResult]], None]:
    def done(future: asyncio.Future[PutResult]) -> None:
        if future.cancelled():
            tally.fail(where, "cancelled")
            return
        exc = future.exception()
        if exc is not None:
            tally.fail(where, str(exc) or exc.__class__.__name__)
            return
        tally.put += 1
        tally.bytes_put += size
        tally.shards[future.result().shard_id] += 1

    return done


def put(
    ctx: typer.Context,
    stream: Annotated[str, typer.Argument(help="The stream to write to.", show_default=False)],
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files of records, one per line ('-' or none: stdin).", show_default=False
        ),
    ] = None,
    aggregate: Annotated[
        bool,
        typer.Option(
            help="Pack records bound for one shard into KPL aggregates (readable by the KCL)."
        ),
    ] = True,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="One partition key for every record (they all go to one shard)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Each line must be a JSON object (else it fails).")
    ] = False,
    key_field: Annotated[
        str | None,
        typer.Option(
            "--key-field",
            help="Take each record's partition key from this field of its JSON object "
            "(implies --json; a line without it fails).",
        ),
    ] = None,
    linger: Annotated[
        float, typer.Option(min=0.0, help="Seconds a record may wait to be batched.")
    ] = 0.1,
) -> None:
    """Write lines from files (or stdin) to a stream as records, through kinesio's producer.

    Each non-blank line is one record (without its line ending; blank lines are skipped). The
    partition key is --key, or the --key-field of each JSON line, or else a random one per
    line (records spread evenly over the shards). Records are batched (PutRecords, up to 500
    per request), aggregated per shard unless --no-aggregate, rate-limited to the shard limits
    and retried for up to 30 s. A progress bar shows on a terminal (stderr); the summary gives
    records put and failed, shards used and throughput (records/s, KiB/s). Exit code 1 if any
    record failed.

    Example: kinesio put orders orders.jsonl --json --key-field customer_id
    """
    if key is not None and key_field is not None:
        raise fail("--key and --key-field exclude each other", hint="use one or the other")
    if key is not None and not 1 <= len(key) <= 256:
        raise fail(f"--key must be 1 to 256 characters, not {len(key)}")
    aws = aws_config(ctx)
    sources = _sources(files)
    settings = ProducerSettings(aggregate=aggregate, linger=linger)
    tally = _Tally()
    elapsed = execute(_put_all(stream, sources, settings, key, as_json, key_field, tally, aws))
    rate = tally.put / elapsed if elapsed > 0 else 0.0
    kib = tally.bytes_put / 1024 / elapsed if elapsed > 0 else 0.0
    shards = sorted(tally.shards)
    shard_text = f"{len(shards)} shard(s)"
    if shards and len(shards) <= 8:
        shard_text += " (" + ", ".join(f"{s}: {tally.shards[s]}" for s in shards) + ")"
    colour = "red" if tally.failed else "green"
    console.print(
        f"[bold {colour}]{tally.put} record(s) put[/], {tally.failed} failed"
        + (f", {tally.skipped} blank line(s) skipped" if tally.skipped else "")
        + f"; {shard_text}; {elapsed:.2f} s, {rate:,.0f} records/s, {kib:,.1f} KiB/s"
    )
    if tally.failed:
        for example in tally.examples:
            console.print(f"  failed {example}", markup=False, highlight=False)
        if tally.failed > len(tally.examples):
            by_reason = "; ".join(f"{n} × {r}" for r, n in tally.reasons.most_common(3))
            console.print(f"  failures by reason: {by_reason}", markup=False, highlight=False)
        raise typer.Exit(1)
