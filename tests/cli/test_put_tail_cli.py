"""``kinesio put`` and ``kinesio tail`` against moto's server."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _create(cli: Any, name: str, shards: int) -> None:
    result = cli("stream", "create", name, "--shards", str(shards))
    assert result.exit_code == 0, result.output


def _tail_json(cli: Any, name: str, *args: str) -> list[dict[str, Any]]:
    result = cli("tail", name, "--from", "trim-horizon", "--no-follow", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_put_json_with_key_field_then_tail(cli: Any, name: str, tmp_path: Path) -> None:
    _create(cli, name, 3)
    lines = [json.dumps({"user": f"u{i % 7}", "n": i}) for i in range(200)]
    lines[10] = json.dumps({"n": 10})  # no "user": fails with a reason
    lines[20] = "{not json"
    lines[30] = ""  # blank: skipped
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")

    result = cli("put", name, str(path), "--key-field", "user")
    assert result.exit_code == 1, result.output  # two lines failed
    summary = " ".join(result.stderr.split())
    assert "197 record(s) put, 2 failed, 1 blank line(s) skipped" in summary
    assert "shard(s)" in summary
    assert "records/s" in summary
    assert f"{path}:11: no field 'user' for the partition key" in summary
    assert f"{path}:21: not valid JSON" in summary

    records = _tail_json(cli, name)
    assert len(records) == 197
    by_n = {json.loads(r["data"])["n"]: r for r in records}
    assert set(by_n) == set(range(200)) - {10, 20, 30}
    for n, r in by_n.items():
        assert r["partition_key"] == f"u{n % 7}"
        assert r["data_encoding"] == "utf-8"
        assert r["arrival"] is not None
        assert r["shard_id"].startswith("shardId-")
    # aggregated by default: some user records share a Kinesis record
    assert any(r["sub_sequence_number"] > 0 for r in records)
    # per key, tail prints records in the order they were put
    for key in {r["partition_key"] for r in records}:
        ns = [json.loads(r["data"])["n"] for r in records if r["partition_key"] == key]
        assert ns == sorted(ns)


def test_put_stdin_fixed_key_no_aggregate_and_tail_raw(cli: Any, name: str) -> None:
    _create(cli, name, 2)
    lines = [f"line {i} ✓" for i in range(50)]
    result = cli("put", name, "--key", "k", "--no-aggregate", input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    assert "50 record(s) put, 0 failed; 1 shard(s)" in " ".join(result.stderr.split())

    result = cli("tail", name, "--from", "trim-horizon", "--no-follow")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == lines
    records = _tail_json(cli, name)
    assert {r["sub_sequence_number"] for r in records} == {0}

    result = cli("tail", name, "--from", "trim-horizon", "--limit", "3")  # follows: --limit ends it
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == lines[:3]


def test_tail_binary_data_is_base64(cli: Any, name: str, kinesis: Any) -> None:
    _create(cli, name, 1)
    kinesis.put_record(StreamName=name, Data=b"\xff\x00\xfe", PartitionKey="b")
    [record] = _tail_json(cli, name)
    assert record["data_encoding"] == "base64"
    assert record["data"] == "/wD+"


def test_tail_follows_a_split_parents_first(cli: Any, name: str) -> None:
    _create(cli, name, 1)
    before = [f"before {i}" for i in range(20)]
    after = [f"after {i}" for i in range(20)]
    assert cli("put", name, input="\n".join(before)).exit_code == 0
    assert cli("stream", "split", name, "0").exit_code == 0
    assert cli("put", name, input="\n".join(after)).exit_code == 0

    records = _tail_json(cli, name)
    shards = {r["shard_id"] for r in records}
    assert len(shards) == 3  # the parent and both children
    data = [r["data"] for r in records]
    assert sorted(data) == sorted(before + after)
    # every record of the parent comes before any record of its children
    assert data[: len(before)] == before
    assert {r["shard_id"] for r in records[: len(before)]} == {"shardId-000000000000"}

    # one shard only
    only = _tail_json(cli, name, "--shard", "0")
    assert [r["data"] for r in only] == before


def test_tail_from_a_time(cli: Any, name: str, kinesis: Any) -> None:
    _create(cli, name, 1)
    kinesis.put_record(StreamName=name, Data=b"old", PartitionKey="k")
    time.sleep(0.3)
    cut = dt.datetime.now(dt.UTC)
    time.sleep(0.3)
    kinesis.put_record(StreamName=name, Data=b"new", PartitionKey="k")
    result = cli("tail", name, "--from", cut.isoformat(), "--no-follow")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["new"]


def test_errors_are_one_line(cli: Any, name: str, one_error: Any, tmp_path: Path) -> None:
    one_error(cli("put", name, input="x\n"), name)
    one_error(cli("tail", name, "--no-follow"), name)
    one_error(cli("put", name, str(tmp_path / "missing.txt")), "no such file")
    one_error(cli("tail", name, "--from", "yesterday"), "neither trim-horizon")


@pytest.mark.parametrize(("command", "needle"), [("put", "--key-field"), ("tail", "--no-follow")])
def test_help_teaches(cli: Any, command: str, needle: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert f"Example: kinesio {command}" in text
    assert needle in text


def test_tail_follows_a_split_while_it_runs(
    cli: Any, name: str, kinesis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kinesio.cli import _tail

    monkeypatch.setattr(_tail, "LIST_SHARDS_INTERVAL", 0.2)
    monkeypatch.setattr(_tail, "IDLE_INTERVAL", 0.1)
    _create(cli, name, 1)

    def write() -> None:
        time.sleep(0.3)
        for i in range(5):
            kinesis.put_record(StreamName=name, Data=f"before {i}".encode(), PartitionKey=f"{i}")
        kinesis.split_shard(
            StreamName=name, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127)
        )
        for i in range(5):
            kinesis.put_record(StreamName=name, Data=f"after {i}".encode(), PartitionKey=f"{i}")

    thread = threading.Thread(target=write)
    thread.start()
    try:
        result = cli("tail", name, "--from", "trim-horizon", "--limit", "10", "--format", "json")
    finally:
        thread.join()
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["data"] for r in records[:5]] == [f"before {i}" for i in range(5)]
    assert sorted(r["data"] for r in records[5:]) == [f"after {i}" for i in range(5)]
    assert {r["shard_id"] for r in records[5:]} <= {"shardId-000000000001", "shardId-000000000002"}
