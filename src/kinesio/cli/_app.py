"""The ``kinesio`` command line (typer + rich): the app, its global options, and the one list
of commands registered on it.

The command modules import only ``kinesio.cli._common`` (shared helpers), never this module;
adding a command is one line in ``COMMANDS`` (or ``GROUPS`` for a sub-typer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from kinesio.cli import _leases, _multilang, _playground, _put, _stream, _tail
from kinesio.cli._common import GlobalOptions, console, fail, run_async

__all__ = ["COMMANDS", "GROUPS", "app", "console", "fail", "main", "run_async"]

app = typer.Typer(
    name="kinesio",
    help=(
        "kinesio: Amazon Kinesis Data Streams from Python.\n\n"
        "Try it with no AWS account: `kinesio playground` runs a producer against an embedded "
        "emulator and shows every shard live. AWS access follows the AWS CLI: --region, "
        "--profile, --endpoint-url, or the AWS_* environment variables."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global(
    ctx: typer.Context,
    region: Annotated[
        str | None, typer.Option(help="AWS region (default: AWS_DEFAULT_REGION / profile).")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Named profile from ~/.aws/config (default: AWS_PROFILE).")
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(help="Endpoint for every AWS service, e.g. an emulator (AWS_ENDPOINT_URL)."),
    ] = None,
) -> None:
    ctx.obj = GlobalOptions(region=region, profile=profile, endpoint_url=endpoint_url)


#: Every top-level command, in the order ``kinesio --help`` lists them.
COMMANDS: list[Callable[..., Any]] = [
    _leases.leases,
    _multilang.multilang,
    _playground.playground,
    _put.put,
    _tail.tail,
]
#: Every command group (a sub-typer with its own subcommands), by name.
GROUPS: list[tuple[str, typer.Typer]] = [
    ("stream", _stream.stream_app),
]

for _command in COMMANDS:
    app.command()(_command)
for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)


def main(prog_name: str | None = None) -> None:
    """Run the ``kinesio`` command on ``sys.argv``; ``prog_name`` is the name its usage shows
    (default: how it was invoked)."""
    app(prog_name=prog_name)
