"""Secrets stay secret: a producer, a consumer and the ``kinesio`` command run against moto's
server with recognisable fake credentials, every logger at DEBUG, and the secret access key and
session token must not show in kinesio's logs, reprs, errors, metrics or command output.

Finding: botocore itself, at DEBUG, logs the session token (its request headers and SigV4
canonical request carry ``X-Amz-Security-Token``); it never logs the secret access key. kinesio
does not log either, configures no logging in the library, and the only log configuration it
ships (the playground worker) is at INFO, where botocore's DEBUG lines are not emitted. So an
application that turns botocore's own loggers to DEBUG exposes the session token — by botocore,
not through kinesio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from kinesio._aws import AioKinesis, AWSConfig
from kinesio._config import ConsumerSettings, InitialPosition, Polling, ProducerSettings
from kinesio._errors import KinesioError
from kinesio._models import Record
from kinesio.cli._app import app
from kinesio.consumer import AsyncConsumer
from kinesio.leases import DynamoDBLeaseStore
from kinesio.local import LocalEndpoint
from kinesio.producer import AsyncProducer

ACCESS_KEY = "AKIDxyzFAKE0123456789"
SECRET = "SECRETxyz0123456789abcdefghijklmnopqrstuv"
TOKEN = "TOKENxyz0123456789abcdefghijklmnopqrstuvwxyzTOKEN"
SECRETS = (SECRET, TOKEN)


class _Everything(logging.Handler):
    """Every record of every logger, formatted with its arguments and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, self.format(record)))


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Everything]:
    handler = _Everything()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch, moto_endpoint: LocalEndpoint) -> str:
    """The recognisable credentials in the environment, and moto as every endpoint."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint.endpoint_url)
    return moto_endpoint.endpoint_url


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows {secret[:9]}...: {text[:2000]}"


async def _produce_and_consume(stream: str, app_name: str) -> list[str]:
    """Everything a user of the library may print: reprs, errors, metrics."""
    shown: list[str] = []
    aws = AWSConfig(region_name="us-east-1")
    session = aws.new_session()
    credentials = await session.get_credentials()
    assert credentials is not None
    assert credentials.secret_key == SECRET  # the fake credentials are really in use
    with_session = AWSConfig(region_name="us-east-1", session=session)
    shown += [repr(aws), str(aws), repr(with_session)]
    kinesis = await AioKinesis.create(aws)
    try:
        await kinesis.create_stream(stream, 1)
        await kinesis.wait_for_active(stream)
        async with AsyncProducer(
            stream, aws=with_session, settings=ProducerSettings(linger=0.01)
        ) as producer:
            for i in range(10):
                await producer.put(b"%d" % i, f"k{i}")
            await producer.flush()
            metrics = producer.metrics()
            shown += [repr(producer), repr(producer.settings), repr(metrics)]
            shown += [repr(metrics.summary()), str(metrics.summary())]
        seen: list[Record] = []
        settings = ConsumerSettings(
            failover_time=3.0,
            take_interval=0.5,
            initial_position=InitialPosition.TRIM_HORIZON,
            retrieval=Polling(idle_time=0.05),
        )
        async with AsyncConsumer(
            stream, application_name=app_name, settings=settings, aws=with_session
        ) as consumer:

            def handle(record: Record) -> None:
                seen.append(record)
                if len(seen) == 10:
                    consumer.request_shutdown()

            async with asyncio.timeout(60):
                await consumer.consume_with(handle)
            shown += [repr(consumer), repr(consumer.settings), repr(seen[0])]
        assert len(seen) == 10
        store = DynamoDBLeaseStore(app_name, aws=with_session)
        try:
            shown += [repr(store), repr(await store.list_leases())]
        finally:
            await store.aclose()
        # errors, as a user would print or log them
        for failing in (
            kinesis.describe_stream_summary(f"{stream}-missing"),
            AsyncProducer(f"{stream}-missing", aws=with_session).start(),
        ):
            try:
                await failing
            except KinesioError as exc:
                shown += [str(exc), repr(exc), repr(exc.__cause__)]
            else:  # pragma: no cover - the stream does not exist
                raise AssertionError("expected an error")
    finally:
        await kinesis.delete_stream(stream)
        await kinesis.aclose()
    return shown


def _cli_outputs(stream: str, app_name: str) -> list[str]:
    runner = CliRunner()
    outputs: list[str] = []
    for args, stdin in (
        (["--help"], None),
        (["stream", "--help"], None),
        (["put", "--help"], None),
        (["stream", "create", stream, "--shards", "1"], None),
        (["stream", "describe", stream], None),
        (["put", stream, "--key", "k"], "one\ntwo\n"),
        (["tail", stream, "--from", "trim-horizon", "--no-follow"], None),
        (["leases", app_name, "--stream", stream], None),
        (["stream", "describe", f"{stream}-missing"], None),  # an error line with a hint
        (["stream", "create"], None),  # a usage error
        (["--region", "us-east-1", "no-such-command"], None),
        (["stream", "delete", stream, "--yes"], None),
    ):
        result = runner.invoke(app, args, input=stdin, catch_exceptions=False)
        if args[0] == "tail":
            assert "two" in result.output  # tail saw what put wrote: the commands really ran
        outputs.append(result.output)
        with contextlib.suppress(ValueError):  # older click: stderr mixed into output
            outputs.append(result.stderr)
    return outputs


@pytest.mark.integration
def test_no_secret_in_logs_reprs_errors_metrics_or_command_output(
    fake_credentials: str, logs: _Everything
) -> None:
    name = f"secrets-{uuid.uuid4().hex[:8]}"
    shown = asyncio.run(_produce_and_consume(name, name))
    for text in shown:
        assert_no_secret(text, "a repr, error or metrics summary")
    for output in _cli_outputs(f"{name}-cli", name):
        assert_no_secret(output, "kinesio's command output")

    ours = [line for logger, line in logs.lines if logger.split(".")[0] == "kinesio"]
    theirs = [line for logger, line in logs.lines if logger.split(".")[0] != "kinesio"]
    assert any("lease" in line for line in ours)  # kinesio did log at DEBUG
    assert any(line.startswith("botocore") for line in theirs)  # and so did botocore
    for line in ours:
        assert_no_secret(line, "a kinesio log line")
    # botocore never logs the secret key; the session token is its own DEBUG output (see the
    # module docstring), never kinesio's.
    for line in theirs:
        assert SECRET not in line, line
    leaking = {line.split()[0] for line in theirs if TOKEN in line}
    assert leaking <= {"botocore.auth", "botocore.endpoint"}, leaking
