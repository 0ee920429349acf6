"""The command modules import no app: each imports on its own, and the app registers them all."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from kinesio.cli import app

COMMAND_MODULES = [
    "kinesio.cli._common",
    "kinesio.cli._leases",
    "kinesio.cli._multilang",
    "kinesio.cli._playground",
    "kinesio.cli._playground_board",
    "kinesio.cli._put",
    "kinesio.cli._stream",
    "kinesio.cli._tail",
]

#: ``kinesio --help``'s commands, in its order.
COMMAND_NAMES = ["leases", "multilang", "playground", "put", "tail", "stream"]


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_a_command_module_imports_on_its_own_without_the_app(module: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        "assert 'kinesio.cli._app' not in sys.modules, 'imported the app'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_app_lists_the_same_commands_in_the_same_order() -> None:
    command = typer.main.get_command(app)
    assert list(command.commands) == COMMAND_NAMES  # type: ignore[attr-defined]


def test_kinesio_help_lists_every_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kinesio", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "100"},
    )
    assert proc.returncode == 0, proc.stderr
    # a command's name starts right after the box's left edge; wrapped help lines are indented
    listed = [
        line[2:].split()[0]
        for line in proc.stdout.splitlines()
        if line.startswith("│ ") and line[2:3].isalpha()
    ]
    assert listed == COMMAND_NAMES
