"""The CLI's error and hint lines are plain text: brackets in them are printed, not parsed."""

from __future__ import annotations

import sys

import pytest
import typer
from typer.testing import CliRunner

from kinesio.cli._app import app, fail


def test_playground_without_moto_names_the_extra_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A None entry in sys.modules makes `import moto.server` raise ImportError, as on an
    # install without the [local] extra.
    monkeypatch.setitem(sys.modules, "moto.server", None)
    result = CliRunner().invoke(app, ["playground", "--no-live"], catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines == [
        "error: the playground needs the embedded emulator",
        "hint: pip install 'kinesio[local]'",
    ]


def test_fail_prints_markup_in_message_and_hint_verbatim(
    capsys: pytest.CaptureFixture[str],
) -> None:
    exit_ = fail("stream [bold]x[/bold] is [red]gone", hint="retry with --at [1, 2]")
    assert isinstance(exit_, typer.Exit)
    assert exit_.exit_code == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: stream [bold]x[/bold] is [red]gone",
        "hint: retry with --at [1, 2]",
    ]
