"""What the commands share: the global options and AWS access, consoles, errors, waiting.

This module imports no command module and not the app: the commands import it, and
``kinesio.cli._app`` imports the commands.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any, TypeVar, cast

import typer
from rich.console import Console
from rich.markup import escape

from kinesio._aws import AioKinesis, AWSConfig, not_active
from kinesio._errors import KinesioError, ResourceNotFoundError
from kinesio._models import StreamSummary

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


#: Seconds a command waits for a stream to become ACTIVE (resharding a large stream on the
#: service takes minutes).
WAIT_TIMEOUT = 900.0


T = TypeVar("T")


def execute(coro: Coroutine[Any, Any, T]) -> T:
    """``run_async`` with its result typed: KinesioError becomes one line and exit code 1."""
    return cast(T, run_async(coro))


def aws_config(ctx: typer.Context) -> AWSConfig:
    """The AWS configuration from the global --region/--profile/--endpoint-url options."""
    options = ctx.find_object(GlobalOptions)
    return (options or GlobalOptions()).aws()


def out_console() -> Console:
    """A console on stdout, for a command's result (tables). Piped output is not cut at 80
    columns: hash keys and sequence numbers are long."""
    stdout = sys.stdout
    wide = not stdout.isatty()
    return Console(file=stdout, width=220 if wide else None, soft_wrap=False)


def binary_stdout() -> IO[bytes]:
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        return buffer  # type: ignore[no-any-return]
    raise RuntimeError("stdout has no binary buffer")  # pragma: no cover


@asynccontextmanager
async def kinesis_client(aws: AWSConfig) -> AsyncIterator[AioKinesis]:
    kinesis = await AioKinesis.create(aws, max_pool_connections=10)
    try:
        yield kinesis
    finally:
        await kinesis.aclose()


async def wait_until_active(
    kinesis: AioKinesis, stream: str, *, what: str, timeout: float = WAIT_TIMEOUT
) -> StreamSummary:
    """Poll DescribeStreamSummary (0.2 s growing to 2 s) until ACTIVE, with a spinner."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    started = time.monotonic()
    with console.status(f"{what}: waiting for stream {stream!r} to become ACTIVE") as status:
        while True:
            summary = await kinesis.describe_stream_summary(stream)
            if summary.status == "ACTIVE":
                return summary
            if time.monotonic() > deadline:
                raise not_active(stream, summary.status, timeout)
            status.update(
                f"{what}: stream {stream!r} is {summary.status} "
                f"({time.monotonic() - started:.0f} s)"
            )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 2.0)


async def wait_until_gone(
    kinesis: AioKinesis, stream: str, *, timeout: float = WAIT_TIMEOUT
) -> None:
    """Poll DescribeStreamSummary until the stream no longer exists."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    with console.status(f"waiting for stream {stream!r} to be deleted"):
        while True:
            try:
                summary = await kinesis.describe_stream_summary(stream)
            except ResourceNotFoundError:
                return
            if time.monotonic() > deadline:
                raise not_active(stream, summary.status, timeout)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 2.0)
