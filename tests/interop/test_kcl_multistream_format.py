"""The Java KCL's DynamoDBMultiStreamLeaseSerializer (2.5.8 and 3.1.3) reads the multi-stream
items kinesio writes, and kinesio reads the ones it writes (MultiStreamItems.java, run with the
JDK's source launcher against the KCL's own jars)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from interop import _kcl
from kinesio._models import ExtendedSequenceNumber, Lease
from kinesio.leases._items import lease_from_item, lease_to_item
from kinesio.leases._multistream import StreamIdentifier, lease_stream, new_multi_stream_lease

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SOURCE = Path(__file__).resolve().parent / "MultiStreamItems.java"
SEQ = "49590338271490256608559692538361571095921575989136588898"


def _lines(item: dict[str, Any]) -> str:
    out = []
    for name, value in item.items():
        ((kind, raw),) = value.items()
        out.append(f"{name}\t{kind}\t{','.join(raw) if kind == 'SS' else raw}")
    return "\n".join(out) + "\n\n"


def _run_java(version: str, stdin: str) -> list[list[str]]:
    try:
        java = _kcl.java()
    except _kcl.JavaMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    jars = _kcl.ensure_kcl(version).jars
    done = subprocess.run(
        [java, "-cp", f"{jars}/*", str(SOURCE)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"the Java serializer check did not run (exit {done.returncode}; the JDK's "
            f"source launcher needs the jdk.compiler module): {done.stderr[-2000:]}",
            pytrace=False,
        )
    return [line.split("\t") for line in done.stdout.splitlines()]


@pytest.mark.parametrize("version", sorted(_kcl.WHEELS))
def test_kcl_multi_stream_serializer_and_kinesio_read_each_others_items(version: str) -> None:
    orders = StreamIdentifier("123456789012", "orders", 1700000000)
    ours = new_multi_stream_lease(
        orders,
        Lease(
            lease_key="shardId-000000000003",
            lease_owner="kinesio-worker",
            lease_counter=9,
            checkpoint=ExtendedSequenceNumber(SEQ, 5),
            parent_shard_ids=frozenset({"shardId-000000000000", "shardId-000000000001"}),
        ),
    )
    rows = _run_java(version, _lines(lease_to_item(ours)))

    read = [row[1:] for row in rows if row[0] == "READ"]
    assert read == [
        [
            "123456789012:orders:1700000000:shardId-000000000003",
            "123456789012:orders:1700000000",
            "shardId-000000000003",
            SEQ,
            "5",
            "9",
            "kinesio-worker",
            "[shardId-000000000000, shardId-000000000001]",
        ]
    ]

    item: dict[str, Any] = {}
    for _, name, kind, value in (row for row in rows if row[0] == "WROTE"):
        item[name] = {kind: value.split(",")} if kind == "SS" else {kind: value}
    theirs = lease_from_item(item)
    assert lease_stream(theirs) == (
        StreamIdentifier("210987654321", "payments", 1600000000),
        "shardId-000000000007",
    )
    assert theirs.lease_owner == "java-worker"
    assert theirs.lease_counter == 4
    assert theirs.checkpoint == ExtendedSequenceNumber(SEQ, 2)
    assert theirs.parent_shard_ids == frozenset({"shardId-000000000001"})
