"""Importing this module registers every ``kinesio`` command on the typer app."""

from kinesio.cli import _leases, _playground, _put, _stream, _tail

__all__ = ["_leases", "_playground", "_put", "_stream", "_tail"]
