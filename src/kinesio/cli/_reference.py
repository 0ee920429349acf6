"""The click command behind the typer app, for the documentation site's CLI reference."""

from __future__ import annotations

import typer.main

from kinesio.cli._app import app

__all__ = ["command"]

command = typer.main.get_command(app)
