"""``python -m kinesio.cli`` runs the ``kinesio`` command."""

from kinesio.cli import main

main()
