"""The embedded emulator: moto on 127.0.0.1 with Kinesis' resharding and numbering semantics."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from kinesio import local
from kinesio.local import LocalEndpoint

pytestmark = pytest.mark.integration


@pytest.fixture
def client(moto_endpoint: LocalEndpoint) -> Iterator[Any]:
    c: Any = boto3.client("kinesis", endpoint_url=moto_endpoint.endpoint_url)
    c.create_stream(StreamName="local-test", ShardCount=1)
    yield c
    c.delete_stream(StreamName="local-test")


def records(client: Any, shard_id: str) -> list[bytes]:
    it = client.get_shard_iterator(
        StreamName="local-test", ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return [r["Data"] for r in client.get_records(ShardIterator=it)["Records"]]


def test_the_server_listens_on_loopback_only(moto_endpoint: LocalEndpoint) -> None:
    assert moto_endpoint.endpoint_url.startswith("http://127.0.0.1:")


def test_after_a_split_the_parent_keeps_its_records_and_writes_go_to_the_children(
    client: Any,
) -> None:
    client.put_record(StreamName="local-test", Data=b"before", PartitionKey="k")
    parent = client.list_shards(StreamName="local-test")["Shards"][0]
    client.split_shard(
        StreamName="local-test", ShardToSplit=parent["ShardId"], NewStartingHashKey=str(2**127)
    )
    put = client.put_record(StreamName="local-test", Data=b"after", PartitionKey="k")
    assert put["ShardId"] != parent["ShardId"]
    assert records(client, parent["ShardId"]) == [b"before"]
    assert records(client, put["ShardId"]) == [b"after"]
    # an explicit hash key equal to a shard's ending key is that shard's (inclusive range)
    children = [
        s
        for s in client.list_shards(StreamName="local-test")["Shards"]
        if s.get("ParentShardId") == parent["ShardId"]
    ]
    first = min(children, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    put = client.put_record(
        StreamName="local-test",
        Data=b"edge",
        PartitionKey="k",
        ExplicitHashKey=first["HashKeyRange"]["EndingHashKey"],
    )
    assert put["ShardId"] == first["ShardId"]


def test_a_merge_child_starts_empty(client: Any) -> None:
    client.update_shard_count(
        StreamName="local-test", TargetShardCount=2, ScalingType="UNIFORM_SCALING"
    )
    a, b = [
        s["ShardId"]
        for s in client.list_shards(StreamName="local-test")["Shards"]
        if "EndingSequenceNumber" not in s["SequenceNumberRange"]
    ]
    client.put_record(StreamName="local-test", Data=b"in-a", PartitionKey="k", ExplicitHashKey="0")
    client.merge_shards(StreamName="local-test", ShardToMerge=a, AdjacentShardToMerge=b)
    child = next(
        s
        for s in client.list_shards(StreamName="local-test")["Shards"]
        if s.get("AdjacentParentShardId")
    )
    assert records(client, child["ShardId"]) == []
    assert records(client, a) == [b"in-a"]


def test_concurrent_writes_to_one_shard_lose_nothing(client: Any) -> None:
    def put(i: int) -> str:
        return str(
            client.put_record(StreamName="local-test", Data=b"%d" % i, PartitionKey="k")[
                "SequenceNumber"
            ]
        )

    with ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(put, range(200)))
    assert len(set(seqs)) == 200
    shard = client.list_shards(StreamName="local-test")["Shards"][0]["ShardId"]
    assert len(records(client, shard)) == 200


def test_reads_while_writing_to_one_shard_never_fail(
    client: Any, moto_endpoint: LocalEndpoint
) -> None:
    # moto's GetRecords iterates the shard's records while writes append to them
    once = Config(retries={"total_max_attempts": 1})  # a 500 must surface, not be retried
    reader: Any = boto3.client("kinesis", endpoint_url=moto_endpoint.endpoint_url, config=once)
    shard = client.list_shards(StreamName="local-test")["Shards"][0]["ShardId"]
    done = threading.Event()

    def write(w: int) -> None:
        for i in range(25):
            entries = [{"Data": b"%d-%d-%d" % (w, i, j), "PartitionKey": "k"} for j in range(10)]
            client.put_records(StreamName="local-test", Records=entries)

    def read(_: int) -> int:
        reads = 0
        while not done.is_set() or reads == 0:
            it = reader.get_shard_iterator(
                StreamName="local-test", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            reader.get_records(ShardIterator=it, Limit=10_000)
            reads += 1
        return reads

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: inside moto's loops too
    try:
        with ThreadPoolExecutor(8) as pool:
            readers = [pool.submit(read, r) for r in range(4)]
            list(pool.map(write, range(4)))
            done.set()
            assert all(f.result() > 0 for f in readers)  # any 500 re-raises here
    finally:
        sys.setswitchinterval(interval)
    assert len(records(client, shard)) == 1000


# -- finding kinesis-mock ------------------------------------------------------------------


def fake_package(root: Path, name: str = "kinesis-local") -> Path:
    package = root / "node_modules" / name
    package.mkdir(parents=True)
    (package / "package.json").write_text("{}")
    return package


@pytest.mark.parametrize("given", ["package", "node_modules", "parent"])
def test_a_package_is_found_in_the_path_given(tmp_path: Path, given: str) -> None:
    package = fake_package(tmp_path)
    path = {"package": package, "node_modules": package.parent, "parent": tmp_path}[given]
    assert local.find_node_package("kinesis-local", path) == package.resolve()


def test_a_package_is_found_in_the_local_node_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = fake_package(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))
    assert local.find_node_package("kinesis-local") == package.resolve()


def test_a_missing_package_names_where_it_looked_and_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(local.EmulatorError, match="kinesis-local not found") as info:
        local.find_node_package("kinesis-local", tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "npm install kinesis-local" in info.value.hint


def test_a_package_without_main_js_is_refused(tmp_path: Path) -> None:
    fake_package(tmp_path)
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: the integration tests need Node.js")
    with (
        pytest.raises(local.EmulatorError, match=r"main\.js"),
        local.kinesis_mock(tmp_path),
    ):
        pass
