"""The ``kinesio`` command.

``app`` and ``main`` load on first use, so importing one command module (``kinesio.cli._put``)
imports that command and the shared helpers only, not the app and every other command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kinesio.cli._app import app, main

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kinesio.cli import _app

        return getattr(_app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
