"""``kinesio stream ...``: create, describe, reshard and delete a stream."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Annotated, Any

import typer
from rich.table import Table

from kinesio._aws import AWSConfig, create_client, map_aws_errors
from kinesio._errors import ResourceInUseError
from kinesio._models import MAX_HASH_KEY, Shard, StreamSummary
from kinesio.cli._common import (
    aws_config,
    console,
    execute,
    fail,
    kinesis_client,
    out_console,
    wait_until_active,
    wait_until_gone,
)

stream_app = typer.Typer(
    name="stream",
    help=(
        "Create, describe, reshard and delete a Kinesis stream. Every change waits until the "
        "stream is ACTIVE again (a spinner on stderr) unless --no-wait."
    ),
    no_args_is_help=True,
)

NoWait = Annotated[
    bool, typer.Option("--no-wait", help="Return at once instead of waiting for ACTIVE.")
]
StreamName = Annotated[str, typer.Argument(help="The stream's name.", show_default=False)]


def shard_id_arg(value: str) -> str:
    """Accept ``shardId-000000000003`` as it is, and ``3`` as short for it."""
    return f"shardId-{int(value):012d}" if value.isdigit() else value


def _find_shard(shards: list[Shard], shard_id: str, stream: str) -> Shard:
    for shard in shards:
        if shard.shard_id == shard_id:
            return shard
    listed = ", ".join(s.shard_id for s in shards if s.is_open) or "none"
    raise fail(
        f"stream {stream!r} has no shard {shard_id!r}",
        hint=f"open shards: {listed} (`kinesio stream describe {stream}` lists them all)",
    )


def _require_open(shard: Shard, stream: str) -> None:
    if not shard.is_open:
        raise fail(
            f"shard {shard.shard_id!r} is closed (resharded already); only open shards change",
            hint=f"`kinesio stream describe {stream}` shows which shards are open",
        )


def _share(shard: Shard) -> float:
    return 100.0 * (shard.ending_hash_key - shard.starting_hash_key + 1) / (MAX_HASH_KEY + 1)


def _shard_json(shard: Shard) -> dict[str, Any]:
    return {
        "shard_id": shard.shard_id,
        "open": shard.is_open,
        # strings, as AWS writes them: 128-bit integers do not survive most JSON readers
        "starting_hash_key": str(shard.starting_hash_key),
        "ending_hash_key": str(shard.ending_hash_key),
        "key_space_percent": round(_share(shard), 6),
        "parent_shard_id": shard.parent_shard_id,
        "adjacent_parent_shard_id": shard.adjacent_parent_shard_id,
        "starting_sequence_number": shard.starting_sequence_number,
        "ending_sequence_number": shard.ending_sequence_number,
    }


def _summary_json(summary: StreamSummary, shards: list[Shard]) -> dict[str, Any]:
    return {
        "stream_name": summary.stream_name,
        "stream_arn": summary.stream_arn,
        "status": summary.status,
        "retention_period_hours": summary.retention_period_hours,
        "open_shard_count": sum(1 for s in shards if s.is_open),
        "consumer_count": summary.consumer_count,
        "shards": [_shard_json(s) for s in shards],
    }


def _shards_table(title: str, shards: list[Shard]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("shard", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("starting hash key", justify="right", no_wrap=True)
    table.add_column("ending hash key", justify="right", no_wrap=True)
    table.add_column("key space", justify="right", no_wrap=True)
    table.add_column("parents", no_wrap=True)
    for shard in shards:
        table.add_row(
            shard.shard_id,
            "[green]open[/]" if shard.is_open else "[dim]closed[/]",
            str(shard.starting_hash_key),
            str(shard.ending_hash_key),
            f"{_share(shard):.2f} %",
            ", ".join(shard.parent_shard_ids) or "-",
        )
    return table


# -- create --------------------------------------------------------------------------------


@stream_app.command()
def create(
    ctx: typer.Context,
    name: StreamName,
    shards: Annotated[
        int, typer.Option(min=1, help="Number of shards (each: 1 MiB/s or 1000 records/s in).")
    ] = 1,
    no_wait: NoWait = False,
) -> None:
    """Create a provisioned stream with SHARDS shards and wait until it is ACTIVE.

    Each shard takes 1 MiB/s or 1000 records/s of writes and serves 2 MiB/s of reads; the hash
    key space is split evenly between them.

    Example: kinesio stream create orders --shards 4
    """
    aws = aws_config(ctx)

    async def run() -> None:
        async with kinesis_client(aws) as kinesis:
            try:
                await kinesis.create_stream(name, shards)
            except ResourceInUseError as exc:
                raise fail(
                    f"stream {name!r} already exists (or is being deleted): {exc}",
                    hint=f"`kinesio stream describe {name}` shows it; pick another name",
                ) from None
            console.print(f"creating stream {name!r} with {shards} shard(s)")
            if not no_wait:
                summary = await wait_until_active(kinesis, name, what="create")
                console.print(f"stream {name!r} is ACTIVE: {summary.stream_arn}")

    execute(run())


# -- describe ------------------------------------------------------------------------------


@stream_app.command()
def describe(
    ctx: typer.Context,
    name: StreamName,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (hash keys as decimal strings).")
    ] = False,
) -> None:
    """Show a stream: status, ARN, retention (hours) and every shard with its hash key range,
    share of the key space, parents and whether it is open or closed.

    Closed shards are the parents of a split or merge; they keep their records until the
    retention period ends. Hash keys are the decimal 128-bit MD5 range a shard owns.

    Example: kinesio stream describe orders --json
    """
    aws = aws_config(ctx)

    async def run() -> tuple[StreamSummary, list[Shard]]:
        async with kinesis_client(aws) as kinesis:
            summary = await kinesis.describe_stream_summary(name)
            return summary, await kinesis.list_shards(name)

    summary, shards = execute(run())
    out = out_console()
    if as_json:
        typer.echo(json.dumps(_summary_json(summary, shards), indent=2))
        return
    closed = sum(1 for s in shards if not s.is_open)
    out.print(f"[bold]{summary.stream_name}[/]  {summary.status}")
    out.print(f"ARN        {summary.stream_arn}")
    out.print(f"retention  {summary.retention_period_hours} hours")
    out.print(f"shards     {len(shards) - closed} open, {closed} closed")
    out.print(f"consumers  {summary.consumer_count} (enhanced fan-out)")
    out.print(_shards_table("shards", shards))


# -- delete --------------------------------------------------------------------------------


@stream_app.command()
def delete(
    ctx: typer.Context,
    name: StreamName,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return at once instead of waiting until gone.")
    ] = False,
) -> None:
    """Delete a stream and every record in it (asks first unless --yes).

    Registered enhanced fan-out consumers are deleted with it. Waits until the stream is
    gone unless --no-wait.

    Example: kinesio stream delete orders --yes
    """
    aws = aws_config(ctx)

    async def check() -> StreamSummary:
        async with kinesis_client(aws) as kinesis:
            return await kinesis.describe_stream_summary(name)

    summary: StreamSummary = execute(check())
    if not yes:
        try:
            confirmed = typer.confirm(
                f"Delete stream {name!r} ({summary.open_shard_count} open shards) and all its "
                "records?",
                err=True,
            )
        except typer.Abort:
            confirmed = False
        if not confirmed:
            raise fail(f"stream {name!r} not deleted", hint="pass --yes to delete without asking")

    async def run() -> None:
        async with kinesis_client(aws) as kinesis:
            await kinesis.delete_stream(name)
            if not no_wait:
                await wait_until_gone(kinesis, name)
        console.print(f"deleted stream {name!r}" if not no_wait else f"deleting stream {name!r}")

    execute(run())


# -- split / merge / scale ------------------------------------------------------------------


@stream_app.command()
def split(
    ctx: typer.Context,
    name: StreamName,
    shard: Annotated[
        str,
        typer.Argument(
            help="The open shard to split (shardId-000000000001, or just 1).", show_default=False
        ),
    ],
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Decimal hash key where the second child starts (default: the range's middle).",
            show_default=False,
        ),
    ] = None,
    no_wait: NoWait = False,
) -> None:
    """Split an open shard in two at a hash key; the shard closes and its two children open.

    The first child owns [start, AT-1], the second [AT, end]. Consumers read the closed parent
    to its end before its children (kinesio and the KCL both do).

    Example: kinesio stream split orders shardId-000000000000
    """
    aws = aws_config(ctx)
    shard_id = shard_id_arg(shard)

    async def run() -> None:
        async with kinesis_client(aws) as kinesis:
            shards = await kinesis.list_shards(name)
            parent = _find_shard(shards, shard_id, name)
            _require_open(parent, name)
            if at is None:
                key = (parent.starting_hash_key + parent.ending_hash_key) // 2 + 1
            else:
                try:
                    key = int(at)
                except ValueError:
                    raise fail(f"--at {at!r} is not a decimal hash key") from None
            if not parent.starting_hash_key < key <= parent.ending_hash_key:
                raise fail(
                    f"--at {key} is outside the shard's range: it must be above "
                    f"{parent.starting_hash_key} and at most {parent.ending_hash_key}",
                    hint="leave --at out to split in the middle",
                )
            await kinesis.split_shard(name, shard_id, key)
            console.print(f"split {shard_id} at hash key {key}")
            if not no_wait:
                await wait_until_active(kinesis, name, what="split")
                children = [
                    s for s in await kinesis.list_shards(name) if shard_id in s.parent_shard_ids
                ]
                console.print(
                    f"stream {name!r} is ACTIVE; children: "
                    + (", ".join(c.shard_id for c in children) or "not listed yet")
                )

    execute(run())


@stream_app.command()
def merge(
    ctx: typer.Context,
    name: StreamName,
    shard: Annotated[str, typer.Argument(help="An open shard.", show_default=False)],
    adjacent: Annotated[
        str,
        typer.Argument(
            help="The open shard whose hash key range touches SHARD's.", show_default=False
        ),
    ],
    no_wait: NoWait = False,
) -> None:
    """Merge two open shards with adjacent hash key ranges into one; both close.

    The child owns both ranges and names both as parents; consumers read both parents to their
    end before it.

    Example: kinesio stream merge orders shardId-000000000001 shardId-000000000002
    """
    aws = aws_config(ctx)
    first_id, second_id = shard_id_arg(shard), shard_id_arg(adjacent)

    async def run() -> None:
        async with kinesis_client(aws) as kinesis:
            shards = await kinesis.list_shards(name)
            first = _find_shard(shards, first_id, name)
            second = _find_shard(shards, second_id, name)
            _require_open(first, name)
            _require_open(second, name)
            low, high = sorted((first, second), key=lambda s: s.starting_hash_key)
            if low.ending_hash_key + 1 != high.starting_hash_key:
                raise fail(
                    f"{first_id} and {second_id} are not adjacent: their hash key ranges do not "
                    "touch",
                    hint=f"`kinesio stream describe {name}` shows each open shard's range",
                )
            await kinesis.merge_shards(name, first_id, second_id)
            console.print(f"merging {first_id} and {second_id}")
            if not no_wait:
                await wait_until_active(kinesis, name, what="merge")
                children = [
                    s.shard_id
                    for s in await kinesis.list_shards(name)
                    if first_id in s.parent_shard_ids
                ]
                console.print(
                    f"stream {name!r} is ACTIVE; child: "
                    + (", ".join(children) or "not listed yet")
                )

    execute(run())


async def update_shard_count(aws: AWSConfig, stream: str, target: int) -> None:
    """UpdateShardCount with UNIFORM_SCALING (AioKinesis does not wrap it)."""
    async with AsyncExitStack() as stack:
        client = await create_client("kinesis", aws, stack)
        with map_aws_errors("UpdateShardCount"):
            await client.update_shard_count(
                StreamName=stream, TargetShardCount=target, ScalingType="UNIFORM_SCALING"
            )


@stream_app.command()
def scale(
    ctx: typer.Context,
    name: StreamName,
    shards: Annotated[
        int, typer.Option(min=1, help="The open shard count to reach.", show_default=False)
    ],
    no_wait: NoWait = False,
) -> None:
    """Change the number of open shards with UpdateShardCount (UNIFORM_SCALING).

    Kinesis splits and merges shards so that the new ones share the key space evenly. The
    service allows at most doubling or halving per call, and a limited number of calls per
    day; it can take minutes on a large stream.

    Example: kinesio stream scale orders --shards 8
    """
    aws = aws_config(ctx)

    async def run() -> None:
        await update_shard_count(aws, name, shards)
        console.print(f"scaling stream {name!r} to {shards} open shard(s)")
        if not no_wait:
            async with kinesis_client(aws) as kinesis:
                await wait_until_active(kinesis, name, what="scale")
                listed = await kinesis.list_shards(name)
            opened = sum(1 for s in listed if s.is_open)
            console.print(f"stream {name!r} is ACTIVE with {opened} open shard(s)")

    execute(run())
