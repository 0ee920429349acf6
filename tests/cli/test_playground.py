"""The README's main job, end to end: `kinesio playground` with chaos, short."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_playground_loses_nothing_through_a_kill_and_a_split() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kinesio.cli",
            "playground",
            "--duration",
            "8",
            "--rate",
            "250",
            "--shards",
            "3",
            "--workers",
            "3",
            "--no-live",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    verdict = re.search(r"OK produced (\d+), consumed (\d+), lost (\d+)", out.replace("\n", " "))
    assert verdict is not None, out
    produced, consumed, lost = (int(g) for g in verdict.groups())
    assert produced == 2000
    assert consumed == produced
    assert lost == 0
    assert "chaos: kill -9 w1" in out
    assert "chaos: split" in out


def test_playground_help_teaches() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kinesio.cli", "playground", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    for option in ("--shards", "--workers", "--rate", "--duration", "--no-chaos"):
        assert option in proc.stdout
    assert "blocked on parent" in proc.stdout
