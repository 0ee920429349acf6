"""``kinesio leases``: where each shard of a consumer application stands, from its lease table.

Reads the table the Java KCL (2.x, 3.x) and kinesio write alike; items of other entity types
(KCL 3.x ``entityType`` other than ``LEASE``) are skipped, attributes kinesio does not model
are ignored, and an item that cannot be read as a lease is shown as ``malformed`` rather than
stopping the whole listing.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.table import Table

from kinesio._aws import AWSConfig, create_client, map_aws_errors
from kinesio._errors import KinesioError, MalformedLeaseError, ResourceNotFoundError
from kinesio._kinesis import StartingPosition
from kinesio._models import AT_TIMESTAMP, LATEST, SHARD_END, TRIM_HORIZON, Lease, Shard
from kinesio.cli._common import aws_config, console, execute, fail, kinesis_client, out_console
from kinesio.leases._table import scan_items
from kinesio.leases.base import is_lease_item
from kinesio.leases.dynamodb import LEASE_KEY, lease_from_item

PROCESSING = "processing"
FINISHED = "finished"
BLOCKED = "blocked on parent"
UNOWNED = "unowned"
EXPIRED = "expired"
MALFORMED = "malformed"
NO_LEASE = "no lease"

_STYLE = {
    PROCESSING: "green",
    FINISHED: "dim",
    BLOCKED: "yellow",
    UNOWNED: "red",
    EXPIRED: "red",
    MALFORMED: "bold red",
    NO_LEASE: "yellow",
}


@dataclass
class _Row:
    lease_key: str
    lease: Lease | None = None
    problem: str | None = None  # why the item is malformed
    state: str = PROCESSING
    shard_state: str | None = None  # open / closed / not listed (with --stream)
    lag_millis: int | None = None
    lag: str | None = None

    @property
    def shard_id(self) -> str:
        return self.lease_key.rsplit(":", 1)[-1]


def _prefix(lease_key: str) -> str:
    """``account:stream:epoch:`` of a multi-stream lease key, "" for a plain shard id."""
    head, sep, _ = lease_key.rpartition(":")
    return head + sep


def lease_state(lease: Lease, by_key: Mapping[str, Lease], expired: set[str]) -> str:
    """processing / finished / blocked on parent / unowned / expired, as the KCL decides."""
    if lease.checkpoint.sequence_number == SHARD_END:
        return FINISHED
    prefix = _prefix(lease.lease_key)
    for parent in lease.parent_shard_ids:
        parent_lease = by_key.get(prefix + parent) or by_key.get(parent)
        if parent_lease is not None and parent_lease.checkpoint.sequence_number != SHARD_END:
            return BLOCKED
    if lease.lease_owner is None:
        return UNOWNED
    if lease.lease_key in expired:
        return EXPIRED
    return PROCESSING


def human_millis(millis: int) -> str:
    if millis < 1000:
        return f"{millis} ms"
    seconds = millis / 1000
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# -- reading the table ---------------------------------------------------------------------


async def _scan(client: Any, table: str) -> list[_Row]:
    rows: list[_Row] = []
    async for item in scan_items(client, table, ConsistentRead=True):
        if not is_lease_item(item):
            continue
        try:
            lease = lease_from_item(item)
        except MalformedLeaseError as exc:
            key = item.get(LEASE_KEY, {}).get("S", "?") if isinstance(item, dict) else "?"
            rows.append(_Row(str(key), problem=str(exc), state=MALFORMED))
            continue
        rows.append(_Row(lease.lease_key, lease=lease))
    return rows


async def _check_table(client: Any, table: str, application: str) -> None:
    try:
        with map_aws_errors("DescribeTable"):
            resp = await client.describe_table(TableName=table)
    except ResourceNotFoundError:
        raise fail(
            f"lease table {table!r} not found",
            hint=(
                f"the KCL names it after the application ({application!r}); pass --table if "
                "yours differs, and check --region / --endpoint-url"
            ),
        ) from None
    keys = [(k.get("AttributeName"), k.get("KeyType")) for k in resp["Table"].get("KeySchema", [])]
    if keys != [(LEASE_KEY, "HASH")]:
        raise fail(
            f"table {table!r} is not a KCL lease table (its key is {keys}, not leaseKey)",
            hint="pass the lease table with --table",
        )


async def _lag(kinesis: Any, stream: str, row: _Row) -> None:
    """MillisBehindLatest of a one-record read just after the checkpoint."""
    lease = row.lease
    if lease is None or row.shard_state is None or row.shard_state == "not listed":
        return
    seq = lease.checkpoint.sequence_number
    if seq == SHARD_END:
        row.lag = "done"
        return
    if seq in (LATEST, AT_TIMESTAMP):
        row.lag = f"at {seq}"  # where it starts depends on when the worker starts reading
        return
    position = (
        StartingPosition("TRIM_HORIZON")
        if seq == TRIM_HORIZON
        else StartingPosition("AFTER_SEQUENCE_NUMBER", sequence_number=seq)
    )
    try:
        iterator = await kinesis.get_shard_iterator(stream, row.shard_id, position)
        out = await kinesis.get_records(iterator, limit=1)
    except KinesioError as exc:
        row.lag = f"unknown ({getattr(exc, 'code', '') or exc.__class__.__name__})"
        return
    if not out.records:
        row.lag_millis = 0 if out.millis_behind_latest is None else out.millis_behind_latest
        row.lag = "caught up" if not out.millis_behind_latest else human_millis(row.lag_millis)
        return
    row.lag_millis = out.millis_behind_latest
    row.lag = (
        "behind" if out.millis_behind_latest is None else human_millis(out.millis_behind_latest)
    )


async def _collect(
    aws: AWSConfig, application: str, table: str, stream: str | None, watch: float | None
) -> list[_Row]:
    async with AsyncExitStack() as stack:
        client = await create_client("dynamodb", aws, stack, max_attempts=2)
        await _check_table(client, table, application)
        rows = await _scan(client, table)
        expired: set[str] = set()
        if watch is not None:
            with console.status(f"reading the lease table again in {watch:g} s (--watch)"):
                await asyncio.sleep(watch)
            first = {r.lease_key: r.lease for r in rows if r.lease is not None}
            rows = await _scan(client, table)
            for row in rows:
                before = first.get(row.lease_key)
                now = row.lease
                if (
                    before is not None
                    and now is not None
                    and now.lease_owner is not None
                    and now.lease_owner == before.lease_owner
                    and now.lease_counter == before.lease_counter
                ):
                    expired.add(row.lease_key)
    if stream is not None and any(":" in r.lease_key for r in rows):
        # a multi-stream application: keep this stream's leases (account:stream:epoch:shard)
        rows = [r for r in rows if ":" not in r.lease_key or r.lease_key.split(":")[1] == stream]
    by_key = {r.lease_key: r.lease for r in rows if r.lease is not None}
    for row in rows:
        if row.lease is not None:
            row.state = lease_state(row.lease, by_key, expired)
    if stream is not None:
        async with kinesis_client(aws) as kinesis:
            shards: dict[str, Shard] = {s.shard_id: s for s in await kinesis.list_shards(stream)}
            for row in rows:
                shard = shards.get(row.shard_id)
                row.shard_state = (
                    "not listed" if shard is None else "open" if shard.is_open else "closed"
                )
            await asyncio.gather(*(_lag(kinesis, stream, row) for row in rows))
        leased = {r.shard_id for r in rows}
        for shard in shards.values():
            if shard.is_open and shard.shard_id not in leased:
                rows.append(_Row(shard.shard_id, state=NO_LEASE, shard_state="open"))
    rows.sort(key=lambda r: r.lease_key)
    return rows


# -- output --------------------------------------------------------------------------------


def _checkpoint(lease: Lease) -> str:
    text = lease.checkpoint.sequence_number
    if lease.checkpoint.sub_sequence_number:
        text += f" /{lease.checkpoint.sub_sequence_number}"
    return text


def row_json(row: _Row) -> dict[str, Any]:
    lease = row.lease
    out: dict[str, Any] = {"lease_key": row.lease_key, "shard_id": row.shard_id}
    out["state"] = row.state
    if row.problem is not None:
        out["problem"] = row.problem
    if lease is not None:
        out.update(
            owner=lease.lease_owner,
            counter=lease.lease_counter,
            checkpoint=lease.checkpoint.sequence_number,
            checkpoint_sub_sequence_number=lease.checkpoint.sub_sequence_number,
            pending_checkpoint=(
                lease.pending_checkpoint.sequence_number if lease.pending_checkpoint else None
            ),
            owner_switches_since_checkpoint=lease.owner_switches_since_checkpoint,
            parent_shard_ids=sorted(lease.parent_shard_ids),
            child_shard_ids=sorted(lease.child_shard_ids),
        )
    if row.shard_state is not None:
        out.update(shard=row.shard_state, lag_millis=row.lag_millis, lag=row.lag)
    return out


def _table(title: str, rows: list[_Row], with_stream: bool) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("shard", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("owner", overflow="fold")
    table.add_column("counter", justify="right")
    table.add_column("checkpoint (/sub)", overflow="fold")
    table.add_column("parents", overflow="fold")
    table.add_column("children", overflow="fold")
    if with_stream:
        table.add_column("shard is", no_wrap=True)
        table.add_column("lag", no_wrap=True)
    for row in rows:
        lease = row.lease
        state = f"[{_STYLE[row.state]}]{row.state}[/]"
        cells = (
            [
                lease.lease_owner or "-",
                str(lease.lease_counter),
                _checkpoint(lease),
                ", ".join(sorted(lease.parent_shard_ids)) or "-",
                ", ".join(sorted(lease.child_shard_ids)) or "-",
            ]
            if lease is not None
            else [row.problem or "-", "-", "-", "-", "-"]
        )
        extra = [row.shard_state or "-", row.lag or "-"] if with_stream else []
        table.add_row(row.lease_key, state, *cells, *extra)
    return table


def _summary(rows: list[_Row], watched: bool) -> str:
    states = Counter(r.state for r in rows)
    owners = Counter(r.lease.lease_owner for r in rows if r.lease and r.lease.lease_owner)
    parts = [f"{n} {state}" for state, n in sorted(states.items())]
    text = f"{sum(1 for r in rows if r.state != NO_LEASE)} lease(s): " + (", ".join(parts) or "-")
    if owners:
        text += "; owners: " + ", ".join(f"{o} ({n})" for o, n in owners.most_common())
    if not watched:
        text += "; expired leases not judged (use --watch 10)"
    return text


def leases(
    ctx: typer.Context,
    application: Annotated[
        str,
        typer.Argument(
            help="The consumer application (its lease table has the same name by default).",
            show_default=False,
        ),
    ],
    stream: Annotated[
        str | None,
        typer.Option(
            help="The stream it reads: adds each shard's open/closed state and the lag of its "
            "checkpoint, and lists open shards that have no lease.",
            show_default=False,
        ),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(
            help="The lease table, if not named after the application.", show_default=False
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON, one object per lease.")
    ] = False,
    watch: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="Read the table twice this many seconds apart and call a lease whose owner "
            "did not bump its counter meanwhile 'expired' (use at least the application's "
            "failover time: 10 s in the KCL).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show a consumer application's lease table: one row per shard lease.

    Columns: the lease key (the shard), its owner (worker id), lease counter, checkpoint
    (sequence number, with /sub-sequence inside a KPL aggregate), parent and child shards,
    and the state:

      processing         owned, and (with --watch) its counter moved
      finished           checkpointed at SHARD_END (resharded and read to the end)
      blocked on parent  waits for a parent shard's lease to finish first
      unowned            no worker holds it (workers take it within seconds)
      expired            with --watch only: the owner did not renew it during SECONDS;
                         without --watch nothing is called expired (one read cannot tell)

    With --stream: whether each shard is open or closed, and the lag: MillisBehindLatest of
    a one-record GetRecords just after the checkpoint ("caught up" when nothing follows it),
    i.e. how old the oldest unprocessed record is relative to the newest. This costs two
    Kinesis calls per lease. Works on tables written by the Java KCL 2.x/3.x and kinesio.

    Example: kinesio leases billing --stream orders --watch 10
    """
    aws = aws_config(ctx)
    name = table or application
    rows: list[_Row] = execute(_collect(aws, application, name, stream, watch))
    if as_json:
        typer.echo(json.dumps([row_json(r) for r in rows], indent=2))
        return
    out = out_console()
    title = f"lease table {name!r}" + (f", stream {stream!r}" if stream else "")
    out.print(_table(title, rows, with_stream=stream is not None))
    out.print(_summary(rows, watched=watch is not None), highlight=False)
