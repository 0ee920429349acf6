"""``kinesio stream ...`` against moto's server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from kinesio._models import MAX_HASH_KEY

pytestmark = pytest.mark.integration


def _describe(cli: Callable[..., Any], name: str) -> dict[str, Any]:
    result = cli("stream", "describe", name, "--json")
    assert result.exit_code == 0, result.output
    described: dict[str, Any] = json.loads(result.stdout)
    return described


def _open(described: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in described["shards"] if s["open"]]


def test_create_describe_split_merge_scale_delete(cli: Any, name: str) -> None:
    result = cli("stream", "create", name, "--shards", "2")
    assert result.exit_code == 0, result.output
    assert "ACTIVE" in result.stderr

    described = _describe(cli, name)
    assert described["status"] == "ACTIVE"
    assert described["stream_arn"].endswith(f"/{name}")
    assert described["retention_period_hours"] == 24
    shards = described["shards"]
    assert [s["open"] for s in shards] == [True, True]
    ranges = sorted((int(s["starting_hash_key"]), int(s["ending_hash_key"])) for s in shards)
    assert ranges[0][0] == 0
    assert ranges[-1][1] == MAX_HASH_KEY
    assert ranges[0][1] + 1 == ranges[1][0]

    table = cli("stream", "describe", name)
    assert table.exit_code == 0
    for text in ("ACTIVE", "shardId-000000000000", "shardId-000000000001", "open", "24 hours"):
        assert text in table.stdout

    # split in the middle (default), using the short shard id
    first = shards[0]
    result = cli("stream", "split", name, "0")
    assert result.exit_code == 0, result.output
    middle = (int(first["starting_hash_key"]) + int(first["ending_hash_key"])) // 2 + 1
    assert f"at hash key {middle}" in result.stderr
    described = _describe(cli, name)
    parent = next(s for s in described["shards"] if s["shard_id"] == first["shard_id"])
    assert parent["open"] is False
    children = [s for s in described["shards"] if s["parent_shard_id"] == first["shard_id"]]
    assert sorted(int(c["starting_hash_key"]) for c in children) == [0, middle]
    assert len(_open(described)) == 3

    # merge the two children back
    a, b = sorted(children, key=lambda c: int(c["starting_hash_key"]))
    result = cli("stream", "merge", name, a["shard_id"], b["shard_id"])
    assert result.exit_code == 0, result.output
    described = _describe(cli, name)
    merged = [s for s in _open(described) if s["adjacent_parent_shard_id"]]
    assert len(merged) == 1
    assert {merged[0]["parent_shard_id"], merged[0]["adjacent_parent_shard_id"]} == {
        a["shard_id"],
        b["shard_id"],
    }
    assert len(_open(described)) == 2

    # UpdateShardCount, uniform scaling
    result = cli("stream", "scale", name, "--shards", "4")
    assert result.exit_code == 0, result.output
    assert "4 open shard(s)" in result.stderr
    assert len(_open(_describe(cli, name))) == 4

    # delete asks first: "n" keeps the stream
    result = cli("stream", "delete", name, input="n\n")
    assert result.exit_code == 1
    assert "not deleted" in result.stderr
    assert _describe(cli, name)["status"] == "ACTIVE"
    result = cli("stream", "delete", name, "--yes")
    assert result.exit_code == 0, result.output
    assert "deleted" in result.stderr
    assert cli("stream", "describe", name).exit_code == 1


def test_reshard_refusals_are_one_line(cli: Any, name: str, one_error: Any) -> None:
    assert cli("stream", "create", name, "--shards", "3", "--no-wait").exit_code == 0
    one_error(cli("stream", "split", name, "0", "--at", "0"), "outside the shard's range")
    one_error(cli("stream", "split", name, "shardId-000000000042"), "no shard")
    one_error(cli("stream", "merge", name, "0", "2"), "not adjacent")
    one_error(cli("stream", "create", name, "--shards", "1"), "ResourceInUse")


def test_missing_stream_is_one_line(cli: Any, name: str, one_error: Any) -> None:
    for args in (
        ("stream", "describe", name),
        ("stream", "delete", name, "--yes"),
        ("stream", "split", name, "0"),
        ("stream", "scale", name, "--shards", "2"),
    ):
        one_error(cli(*args), name)


def test_unreachable_endpoint_is_one_line(one_error: Any) -> None:
    from typer.testing import CliRunner

    from kinesio.cli._app import app

    result = CliRunner().invoke(
        app, ["--endpoint-url", "http://127.0.0.1:1", "stream", "describe", "nothing"]
    )
    one_error(result, "could not reach the endpoint", "--endpoint-url")


@pytest.mark.parametrize("command", ["create", "describe", "delete", "split", "merge", "scale"])
def test_help_teaches(cli: Any, command: str) -> None:
    result = cli("stream", command, "--help")
    assert result.exit_code == 0
    assert "Example: kinesio stream " + command in " ".join(result.stdout.split())


def test_the_installed_command_registers_every_command() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "kinesio.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("stream", "put", "tail", "leases", "playground"):
        assert command in proc.stdout
