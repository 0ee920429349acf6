"""Shared fixtures: fake credentials for every test, and moto's server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import pytest

from _streams import moto_stream as stream_on_moto
from kinesio.local import LocalEndpoint, moto_server


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test can reach a real account: fixed fake credentials, a region, no profile."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_ENDPOINT_URL_DYNAMODB",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[LocalEndpoint]:
    """moto's server (Kinesis, DynamoDB, CloudWatch), in-process, bound to 127.0.0.1."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def dynalite_endpoint() -> Iterator[LocalEndpoint]:
    """dynalite (npm) on 127.0.0.1: a second DynamoDB emulator. Fails if not installed."""
    from _emulators import dynalite

    with dynalite() as url:
        yield LocalEndpoint(endpoint_url=url)


@pytest.fixture(scope="session")
def kinesis_mock_endpoint() -> Iterator[LocalEndpoint]:
    """kinesis-mock (npm kinesis-local) on 127.0.0.1. Fails if not installed."""
    from _emulators import kinesis_mock

    with kinesis_mock() as url:
        yield LocalEndpoint(endpoint_url=url)


@pytest.fixture
def moto_stream(moto_endpoint: LocalEndpoint) -> Iterator[Callable[[str, int], str]]:
    """``moto_stream(prefix, shards)``: a new ACTIVE stream on moto (a unique name starting with
    ``prefix``); every stream made is deleted when the test ends."""
    with contextlib.ExitStack() as made:

        def make(prefix: str, shards: int) -> str:
            name = f"{prefix}-{uuid.uuid4().hex[:10]}"
            return made.enter_context(stream_on_moto(moto_endpoint, name, shards))

        yield make
