"""The ``kinesio`` command."""

from kinesio.cli._app import app, main

__all__ = ["app", "main"]
