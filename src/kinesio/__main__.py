"""``python -m kinesio ARGS`` runs the ``kinesio`` command with ARGS."""

from kinesio.cli import main

# Usage and help say `kinesio`, the command this is, rather than `python -m kinesio`.
main(prog_name="kinesio")
