"""The ``kinesio`` command line (typer + rich)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from kinesio._aws import AWSConfig
from kinesio._errors import KinesioError

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
console = Console(stderr=True)


@dataclass
class GlobalOptions:
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None

    def aws(self) -> AWSConfig:
        return AWSConfig(
            region_name=self.region, profile_name=self.profile, endpoint_url=self.endpoint_url
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


def fail(message: str, hint: str | None = None, code: int = 1) -> typer.Exit:
    """Print one clear error line (and a hint), no traceback; return the Exit to raise.

    ``message`` and ``hint`` are plain text, printed as given: ``pip install 'kinesio[local]'``
    would otherwise lose ``[local]`` to rich's markup parser.
    """
    # soft_wrap: one line, however narrow the (non-terminal) stderr is
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if hint:
        console.print(f"[dim]hint:[/] {escape(hint)}", soft_wrap=True)
    return typer.Exit(code)


def run_async(coro: object) -> object:
    """Run a command's coroutine, turning kinesio errors into one line and exit code 1."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except KinesioError as exc:
        raise fail(str(exc), hint=_hint(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _hint(exc: KinesioError) -> str | None:
    from kinesio import _errors as e

    own = getattr(exc, "hint", "")  # e.g. kinesio.local.EmulatorError says what to install
    if isinstance(own, str) and own:
        return own
    if isinstance(exc, e.CredentialsError):
        return "configure credentials (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID/...)"
    if isinstance(exc, e.EndpointConnectionError):
        return "check --endpoint-url / AWS_ENDPOINT_URL and that the endpoint is running"
    if isinstance(exc, e.ResourceNotFoundError):
        return "check the name and --region; `kinesio stream create NAME` creates a stream"
    if isinstance(exc, e.AccessDeniedError):
        return "the credentials lack an IAM permission for this call"
    if isinstance(exc, e.ConfigurationError):
        return "see `kinesio --help` for the global options"
    return None


def main(prog_name: str | None = None) -> None:
    """Run the ``kinesio`` command on ``sys.argv``; ``prog_name`` is the name its usage shows
    (default: how it was invoked)."""
    from kinesio.cli import _commands  # noqa: F401 - registers every command

    app(prog_name=prog_name)
