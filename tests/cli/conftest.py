"""Drive the real ``kinesio`` commands in-process against moto's server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner, Result

from kinesio.cli._app import app
from kinesio.local import LocalEndpoint

Invoke = Callable[..., Result]


@pytest.fixture
def cli(moto_endpoint: LocalEndpoint) -> Invoke:
    """``cli("stream", "describe", "x", input=...)`` runs ``kinesio --endpoint-url ... ARGS``."""
    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None) -> Result:
        return runner.invoke(
            app,
            ["--endpoint-url", moto_endpoint.endpoint_url, "--region", "us-east-1", *args],
            input=input,
            catch_exceptions=False,
        )

    return invoke


@pytest.fixture
def name() -> str:
    """A fresh stream / application name (the moto server is shared by the session)."""
    return f"cli-{uuid.uuid4().hex[:10]}"


def boto(service: str, endpoint: LocalEndpoint) -> Any:
    return boto3.client(service, endpoint_url=endpoint.endpoint_url, region_name="us-east-1")


@pytest.fixture
def kinesis(moto_endpoint: LocalEndpoint) -> Iterator[Any]:
    client = boto("kinesis", moto_endpoint)
    yield client
    client.close()


@pytest.fixture
def dynamodb(moto_endpoint: LocalEndpoint) -> Iterator[Any]:
    client = boto("dynamodb", moto_endpoint)
    yield client
    client.close()


def _assert_one_error_line(result: Result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    text = " ".join(result.stderr.split())  # rich wraps long lines on a narrow console
    for needle in needles:
        assert needle in text, result.stderr
    assert "hint:" in result.stderr


@pytest.fixture
def one_error() -> Callable[..., None]:
    """``one_error(result, *needles)``: exit code 1, exactly one ``error:`` line mentioning
    each needle, a hint, and no traceback."""
    return _assert_one_error_line
