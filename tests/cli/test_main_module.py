"""``python -m kinesio`` is the ``kinesio`` command."""

from __future__ import annotations

import subprocess
import sys


def test_python_dash_m_kinesio_runs_the_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kinesio", "stream", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage: kinesio stream" in proc.stdout
    # the stream group's own subcommands: the registered command tree, not a bare package
    for command in ("create", "describe", "delete", "split", "merge", "scale"):
        assert command in proc.stdout


def test_python_dash_m_kinesio_exits_like_the_command_on_bad_usage() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kinesio", "no-such-command"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "No such command" in proc.stderr
