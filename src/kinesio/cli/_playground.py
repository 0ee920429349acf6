"""``kinesio playground``: kinesio end to end on an embedded emulator, no AWS account needed."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from kinesio import aggregation
from kinesio._aws import AioKinesis
from kinesio._config import ProducerSettings
from kinesio._kinesis import StartingPosition
from kinesio._models import ProducerRecord, PutResult
from kinesio.cli._app import app, console, fail, run_async
from kinesio.producer import AsyncProducer


@dataclass
class _Board:
    """What the dashboard shows; updated by the producer loop."""

    stream: str
    started: float = field(default_factory=time.monotonic)
    per_shard: Counter[str] = field(default_factory=Counter)
    last_per_shard: Counter[str] = field(default_factory=Counter)
    rates: dict[str, float] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    produced: int = 0
    acknowledged: int = 0
    failed: int = 0

    def tick(self, dt: float) -> None:
        for shard, n in self.per_shard.items():
            self.rates[shard] = (n - self.last_per_shard.get(shard, 0)) / dt
        self.last_per_shard = Counter(self.per_shard)


def _render(board: _Board, producer: AsyncProducer) -> Table:
    m = producer.metrics()
    table = Table(
        title=f"kinesio playground — stream {board.stream!r} — "
        f"{time.monotonic() - board.started:5.1f} s",
        expand=False,
    )
    table.add_column("shard")
    table.add_column("state")
    table.add_column("records put", justify="right")
    table.add_column("records/s", justify="right")
    open_ids = {s.shard_id for s in producer.shard_map.open_shards}
    for shard in sorted(set(board.per_shard) | open_ids):
        table.add_row(
            shard,
            "open" if shard in open_ids else "closed (split)",
            str(board.per_shard.get(shard, 0)),
            f"{board.rates.get(shard, 0.0):.0f}",
        )
    table.caption = (
        f"producer: {board.produced} put, {board.acknowledged} acknowledged, "
        f"{board.failed} failed | {m.kinesis_records_put} Kinesis records in "
        f"{m.put_records_calls} PutRecords | throttled {m.throttled} | retries {m.retries} | "
        f"latency p50 {m.latency_percentile(50):.0f} ms p99 {m.latency_percentile(99):.0f} ms"
        + ("".join(f"\n{e}" for e in board.events[-4:]))
    )
    return table


async def _read_all(kinesis: AioKinesis, stream: str) -> list[ProducerRecord]:
    """Every user record in the stream, deaggregated (a plain reader; no leases)."""
    out: list[ProducerRecord] = []
    for shard in await kinesis.list_shards(stream):
        it: str | None = await kinesis.get_shard_iterator(
            stream, shard.shard_id, StartingPosition("TRIM_HORIZON")
        )
        while it:
            page = await kinesis.get_records(it)
            for r in page.records:
                if aggregation.is_aggregate(r.data):
                    out.extend(
                        u
                        for u in aggregation.decode(r.data)
                        if shard.contains(
                            aggregation.hash_key(u.partition_key, u.explicit_hash_key)
                        )
                    )
                else:
                    out.append(ProducerRecord(r.data, r.partition_key))
            if not page.records:
                break
            it = page.next_shard_iterator
    return out


async def _run(shards: int, rate: int, duration: float, keys: int, chaos: bool, live: bool) -> int:
    from kinesio.local import moto_server

    stream = "playground"
    with moto_server() as endpoint:
        console.print(f"[dim]embedded emulator (moto) listening on {endpoint.endpoint_url}[/]")
        aws = endpoint.aws_config()
        kinesis = await AioKinesis.create(aws)
        try:
            await kinesis.create_stream(stream, shards)
            await kinesis.wait_for_active(stream)
            board = _Board(stream)
            sent: list[bytes] = []

            def on_done(fut: asyncio.Future[PutResult]) -> None:
                if fut.exception() is None:
                    board.acknowledged += 1
                    board.per_shard[fut.result().shard_id] += 1
                else:
                    board.failed += 1

            settings = ProducerSettings(linger=0.05)
            async with AsyncProducer(stream, aws=aws, settings=settings) as producer:
                interval = 1.0 / rate
                split_at = duration / 2 if chaos else None
                start = time.monotonic()
                next_tick = start
                with (
                    Live(
                        _render(board, producer),
                        console=console,
                        refresh_per_second=4,
                        transient=False,
                    )
                    if live
                    else _NoLive() as view
                ):
                    last_render = start
                    while (now := time.monotonic()) - start < duration:
                        batch = max(1, int((now - next_tick) / interval) + 1)
                        for _ in range(batch):
                            n = board.produced
                            data = json.dumps({"key": n % keys, "n": n}).encode()
                            fut = await producer.put(data, partition_key=f"key-{n % keys}")
                            fut.add_done_callback(on_done)
                            sent.append(data)
                            board.produced += 1
                        next_tick += batch * interval
                        if split_at is not None and now - start >= split_at:
                            split_at = None
                            parent = producer.shard_map.open_shards[0]
                            middle = (parent.starting_hash_key + parent.ending_hash_key) // 2
                            await kinesis.split_shard(stream, parent.shard_id, middle)
                            board.events.append(
                                f"chaos: split {parent.shard_id} while records flow"
                            )
                        if now - last_render >= 0.25:
                            board.tick(now - last_render)
                            last_render = now
                            view.update(_render(board, producer))
                        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
                    await producer.flush()
                    view.update(_render(board, producer))
            stored = await _read_all(kinesis, stream)
        finally:
            await kinesis.aclose()
    seen = Counter(r.data for r in stored)
    lost = sum(1 for d in sent if d not in seen)
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    verdict = "[bold green]OK[/]" if lost == 0 and board.failed == 0 else "[bold red]FAILED[/]"
    console.print(
        f"{verdict} produced {len(sent)}, consumed {len(stored)}, lost {lost}, "
        f"duplicates {duplicates}, failed {board.failed}"
    )
    return 0 if lost == 0 and board.failed == 0 else 1


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, renderable: object) -> None:
        return None


@app.command()
def playground(
    shards: Annotated[int, typer.Option(min=1, max=50, help="Shards of the demo stream.")] = 4,
    rate: Annotated[
        int, typer.Option(min=1, max=50_000, help="Records per second the producer writes.")
    ] = 2000,
    duration: Annotated[
        float, typer.Option(min=1.0, help="Seconds of producing before the verdict.")
    ] = 20.0,
    keys: Annotated[int, typer.Option(min=1, help="Distinct partition keys.")] = 1000,
    no_chaos: Annotated[
        bool, typer.Option("--no-chaos", help="Do not split a shard mid-run.")
    ] = False,
    live: Annotated[
        bool, typer.Option(help="Show the live dashboard (off: only the verdict line).")
    ] = True,
) -> None:
    """Run kinesio end to end on an embedded emulator (moto, in-process; no AWS account).

    Creates a stream, produces RATE records/s for DURATION seconds with per-shard aggregation
    and rate limiting while a live table shows every shard, splits a shard half-way (unless
    --no-chaos), then reads the whole stream back and prints the verdict: produced, consumed,
    lost (must be 0), duplicates. Exits 1 if anything was lost or failed.
    """
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise fail(
            "the playground needs the embedded emulator", hint="pip install 'kinesio[local]'"
        ) from None
    code = run_async(_run(shards, rate, duration, keys, not no_chaos, live))
    raise typer.Exit(int(code))  # type: ignore[call-overload]
