"""``kinesio leases`` on a lease table seeded in the Java KCL's own format (raw DynamoDB)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _create_table(dynamodb: Any, table: str) -> None:
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def _lease(
    key: str,
    *,
    checkpoint: str,
    counter: int,
    owner: str | None = None,
    sub: int = 0,
    parents: list[str] | None = None,
    children: list[str] | None = None,
) -> dict[str, Any]:
    """An item exactly as the KCL (2.x/3.x) writes it."""
    item: dict[str, Any] = {
        "leaseKey": {"S": key},
        "leaseCounter": {"N": str(counter)},
        "checkpoint": {"S": checkpoint},
        "checkpointSubSequenceNumber": {"N": str(sub)},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "startingHashKey": {"S": "0"},
        "endingHashKey": {"S": "340282366920938463463374607431768211455"},
        "throughputKBps": {"N": "12.5"},  # KCL 3.x
        "pendingCheckpointState": {"B": b"\x00"},
    }
    if owner is not None:
        item["leaseOwner"] = {"S": owner}
        item["checkpointOwner"] = {"S": owner}  # KCL 3.x
    if parents:
        item["parentShardId"] = {"SS": parents}
    if children:
        item["childShardIds"] = {"SS": children}
    return item


SEQ = "49650000000000000000000000000000000000000000000000000042"


def _seed(dynamodb: Any, table: str) -> None:
    _create_table(dynamodb, table)
    items = [
        _lease(
            "shardId-000000000000",
            checkpoint="SHARD_END",
            counter=40,
            owner="worker-a",
            children=["shardId-000000000002", "shardId-000000000003"],
        ),
        _lease("shardId-000000000001", checkpoint=SEQ, sub=3, counter=17, owner="worker-a"),
        _lease(
            "shardId-000000000002",
            checkpoint="TRIM_HORIZON",
            counter=1,
            parents=["shardId-000000000000", "shardId-000000000001"],
        ),
        _lease("shardId-000000000003", checkpoint="TRIM_HORIZON", counter=0),
        _lease("shardId-000000000004", checkpoint=SEQ, counter=5, owner="worker-b"),
        # KCL 3.x stores other entities in the same table: not leases
        {
            "leaseKey": {"S": "worker-a"},
            "entityType": {"S": "WORKER_METRICS_STATS"},
            "lastUpdateTime": {"N": "1700000000"},
        },
    ]
    items[2]["parentShardId"] = {"SS": ["shardId-000000000001"]}  # waits on a live parent
    for item in items:
        dynamodb.put_item(TableName=table, Item=item)


def test_kcl_table_states_and_json(cli: Any, name: str, dynamodb: Any) -> None:
    _seed(dynamodb, name)
    result = cli("leases", name, "--json")
    assert result.exit_code == 0, result.output
    rows = {r["lease_key"]: r for r in json.loads(result.stdout)}
    assert "worker-a" not in rows  # the entityType item is skipped
    assert {k: r["state"] for k, r in rows.items()} == {
        "shardId-000000000000": "finished",
        "shardId-000000000001": "processing",
        "shardId-000000000002": "blocked on parent",
        "shardId-000000000003": "unowned",
        "shardId-000000000004": "processing",
    }
    one = rows["shardId-000000000001"]
    assert one["owner"] == "worker-a"
    assert one["counter"] == 17
    assert one["checkpoint"] == SEQ
    assert one["checkpoint_sub_sequence_number"] == 3
    assert rows["shardId-000000000000"]["child_shard_ids"] == [
        "shardId-000000000002",
        "shardId-000000000003",
    ]
    assert rows["shardId-000000000002"]["parent_shard_ids"] == ["shardId-000000000001"]

    table = cli("leases", name)
    assert table.exit_code == 0, table.output
    text = table.stdout
    for needle in ("blocked on parent", "finished", "unowned", "worker-b", f"{SEQ} /3"):
        assert needle in text
    assert "expired leases not judged" in text


def test_watch_tells_expired_from_renewed(cli: Any, name: str, dynamodb: Any) -> None:
    _seed(dynamodb, name)

    stop = threading.Event()

    def renew() -> None:  # worker-a keeps renewing shard 1 while the command watches
        while not stop.wait(0.1):
            dynamodb.update_item(
                TableName=name,
                Key={"leaseKey": {"S": "shardId-000000000001"}},
                UpdateExpression="SET leaseCounter = leaseCounter + :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

    thread = threading.Thread(target=renew)
    thread.start()
    try:
        result = cli("leases", name, "--json", "--watch", "1")
    finally:
        stop.set()
        thread.join()
    assert result.exit_code == 0, result.output
    states = {r["lease_key"]: r["state"] for r in json.loads(result.stdout)}
    assert states["shardId-000000000001"] == "processing"
    assert states["shardId-000000000004"] == "expired"  # worker-b's counter did not move
    assert states["shardId-000000000003"] == "unowned"


def test_stream_adds_shard_state_and_lag(cli: Any, name: str, dynamodb: Any, kinesis: Any) -> None:
    assert cli("stream", "create", name, "--shards", "3").exit_code == 0
    shard_ids = [s["ShardId"] for s in kinesis.list_shards(StreamName=name)["Shards"]]
    seqs = []
    for i in range(3):
        resp = kinesis.put_record(
            StreamName=name, Data=f"r{i}".encode(), PartitionKey="p", ExplicitHashKey="1"
        )
        seqs.append(resp["SequenceNumber"])
        time.sleep(0.05)
    assert resp["ShardId"] == shard_ids[0]
    _create_table(dynamodb, f"{name}-leases")
    for item in (
        _lease(shard_ids[0], checkpoint=seqs[0], counter=3, owner="w"),  # two records behind
        _lease(shard_ids[1], checkpoint="TRIM_HORIZON", counter=3, owner="w"),  # empty shard
    ):
        dynamodb.put_item(TableName=f"{name}-leases", Item=item)

    result = cli("leases", "app", "--table", f"{name}-leases", "--stream", name, "--json")
    assert result.exit_code == 0, result.output
    rows = {r["lease_key"]: r for r in json.loads(result.stdout)}
    behind = rows[shard_ids[0]]
    assert behind["shard"] == "open"
    assert behind["lag"] != "caught up"
    assert behind["lag_millis"] >= 40
    assert rows[shard_ids[1]]["lag"] == "caught up"
    assert rows[shard_ids[2]]["state"] == "no lease"

    # the lease now checkpointed at the newest record: caught up
    dynamodb.update_item(
        TableName=f"{name}-leases",
        Key={"leaseKey": {"S": shard_ids[0]}},
        UpdateExpression="SET #c = :c",
        ExpressionAttributeNames={"#c": "checkpoint"},
        ExpressionAttributeValues={":c": {"S": seqs[-1]}},
    )
    result = cli("leases", "app", "--table", f"{name}-leases", "--stream", name)
    assert result.exit_code == 0, result.output
    assert "caught up" in result.stdout
    assert "no lease" in result.stdout


def test_missing_table_is_one_line(cli: Any, name: str, one_error: Any) -> None:
    one_error(cli("leases", name), f"lease table '{name}' not found", "--table")


def test_unreachable_endpoint_is_one_line(one_error: Any) -> None:
    from typer.testing import CliRunner

    from kinesio.cli._app import app

    result = CliRunner().invoke(app, ["--endpoint-url", "http://127.0.0.1:1", "leases", "app"])
    one_error(result, "could not reach the endpoint")


def test_help_teaches(cli: Any) -> None:
    result = cli("leases", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for needle in ("blocked on parent", "expired", "--watch", "Example: kinesio leases"):
        assert needle in text
