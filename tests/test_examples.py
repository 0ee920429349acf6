"""Every script in examples/ runs as a user would run it, on the embedded emulator (--local)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
COUNT = 12
SHARDS = 2
PAYLOADS = Counter(f"record {i}" for i in range(COUNT))
STREAM = "examples-test"  # through $KINESIS_STREAM, as a deployment would pass it


def check_producer(lines: list[str]) -> None:
    assert f"produced {COUNT} records to '{STREAM}'" in lines
    per_shard = [re.fullmatch(r"shardId-\d+: (\d+) records", line) for line in lines]
    counts = [int(m.group(1)) for m in per_shard if m]
    assert sum(counts) == COUNT, lines
    assert len(counts) == SHARDS, lines  # ten partition keys reach both shards
    assert any(
        re.fullmatch(rf"{COUNT} user records sent as \d+ Kinesis records .*", line)
        for line in lines
    ), lines


def check_consumer(lines: list[str]) -> None:
    assert f"put {COUNT} records into '{STREAM}'" in lines
    assert lines[-1] == f"consumed {COUNT} records from '{STREAM}'"
    # every record put is printed once, with its shard, as it was read
    seen = Counter(m.group(1) for line in lines if (m := re.search(r" (record \d+)$", line)))
    assert seen == PAYLOADS, lines


def check_record_processor(lines: list[str]) -> None:
    check_consumer(lines)
    for shard in (f"shardId-{i:012d}" for i in range(SHARDS)):
        assert f"{shard}: start after TRIM_HORIZON" in lines
        assert f"{shard}: shutting down, checkpointed" in lines
    processed = [
        re.fullmatch(r"shardId-\d+: processed (\d+) records, checkpointed", line) for line in lines
    ]
    assert sum(int(m.group(1)) for m in processed if m) == COUNT, lines


CHECKS: dict[str, Callable[[list[str]], None]] = {
    "produce_async.py": check_producer,
    "produce_blocking.py": check_producer,
    "consume_async.py": check_consumer,
    "consume_blocking.py": check_consumer,
    "record_processor.py": check_record_processor,
}


def test_every_example_is_checked() -> None:
    # _setup.py holds the options and --local set-up they share; it is no example itself
    assert sorted(p.name for p in EXAMPLES.glob("[!_]*.py")) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_docstring_says_what_it_shows_and_how_to_run_it(name: str) -> None:
    doc = ast.get_docstring(ast.parse((EXAMPLES / name).read_text()))
    assert doc is not None
    assert f"python examples/{name} --local" in doc
    assert "--endpoint-url" in doc


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_example_runs_on_the_embedded_emulator(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--local", f"--count={COUNT}", f"--shards={SHARDS}"],
        capture_output=True,
        text=True,
        timeout=45,  # a consumer that misses a record waits for it: fail, not hang
        stdin=subprocess.DEVNULL,
        env={**os.environ, "KINESIS_STREAM": STREAM},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("embedded emulator at http://127.0.0.1:"), lines
    CHECKS[name](lines)
