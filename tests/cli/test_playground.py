"""The README's main job, end to end: `kinesio playground` with chaos, short."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def playground(
    *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``kinesio playground ARGS`` in a child process; its CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "kinesio.cli", "playground", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def verdict(out: str) -> tuple[int, int, int]:
    """(produced, consumed, lost) from the playground's closing ``OK ...`` line."""
    found = re.search(r"OK produced (\d+), consumed (\d+), lost (\d+)", out.replace("\n", " "))
    assert found is not None, out
    produced, consumed, lost = (int(g) for g in found.groups())
    return produced, consumed, lost


def test_playground_loses_nothing_through_a_kill_and_a_split() -> None:
    proc = playground(
        "--duration",
        "8",
        "--rate",
        "250",
        "--shards",
        "3",
        "--workers",
        "3",
        "--no-live",
        timeout=180,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    produced, consumed, lost = verdict(out)
    assert produced == 2000
    assert consumed == produced
    assert lost == 0
    assert "chaos: kill -9 w1" in out
    assert "chaos: split" in out


def test_playground_help_teaches() -> None:
    proc = playground("--help", timeout=60)
    assert proc.returncode == 0
    for option in ("--shards", "--workers", "--rate", "--duration", "--no-chaos"):
        assert option in proc.stdout
    assert "blocked on parent" in proc.stdout


def test_playground_on_kinesis_mock_loses_nothing_through_a_split() -> None:
    """Kinesis on kinesis-mock (closed shards end with ChildShards), leases on moto."""
    from _emulators import NODE_MODULES

    proc = playground(
        "--backend",
        "kinesis-mock",
        "--kinesis-mock-path",
        str(NODE_MODULES),
        "--duration",
        "6",
        "--rate",
        "250",
        "--shards",
        "2",
        "--workers",
        "2",
        "--no-live",
        timeout=110,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    flat = out.replace("\n", " ")
    assert "kinesis-mock at http://127.0.0.1:" in flat
    produced, consumed, lost = verdict(out)
    assert produced >= 1400  # 6 s at 250 records/s, less a last partial tick
    assert consumed == produced
    assert lost == 0
    assert "chaos: split shardId-000000000000" in flat
    per_shard = re.search(r"per shard, produced/consumed: (.*?)(?: lost records|$)", flat)
    assert per_shard is not None, out
    counts = {
        shard: (int(p), int(c))
        for shard, p, c in re.findall(r"(shardId-\d+) (\d+)/(\d+)", per_shard.group(1))
    }
    # the split's two children (ids after the 2 original shards) got records, and handed
    # every one of them to the workers once the parent had ended
    children = {
        s: pc
        for s, pc in counts.items()
        if s not in ("shardId-000000000000", "shardId-000000000001")
    }
    assert len(children) == 2, counts
    assert all(p > 0 and p == c for p, c in children.values()), counts


@pytest.mark.parametrize("missing", ["package", "node"])
def test_playground_on_kinesis_mock_says_what_to_install(missing: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    if missing == "node":
        env["PATH"] = str(tmp_path)  # no node there; python is run by its full path
    proc = playground(
        "--backend", "kinesis-mock", "--kinesis-mock-path", str(tmp_path), timeout=60, env=env
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert ("node" if missing == "node" else "kinesis-local") in errors[0]
    assert "npm install kinesis-local" in proc.stderr
