"""An embedded AWS emulator for the playground, examples and integration tests.

``moto_server()`` starts moto's server (Kinesis, DynamoDB, CloudWatch) inside this process,
bound to 127.0.0.1 on a free port, and stops it when the block ends. Needs ``kinesio[local]``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kinesio._aws import AWSConfig
from kinesio._errors import ConfigurationError

#: Credentials the emulators accept; they are not secrets and reach no real account.
LOCAL_ACCESS_KEY = "testing"
LOCAL_SECRET_KEY = "testing"
LOCAL_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """A running emulator: its URL and an :class:`AWSConfig` that talks to it."""

    endpoint_url: str
    region_name: str = LOCAL_REGION

    def aws_config(self) -> AWSConfig:
        from aiobotocore.session import AioSession

        session = AioSession()
        session.set_credentials(LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY)
        return AWSConfig(
            region_name=self.region_name, endpoint_url=self.endpoint_url, session=session
        )


@contextmanager
def moto_server() -> Iterator[LocalEndpoint]:
    """Run moto's server in-process on 127.0.0.1 (free port) for the duration of the block."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "the embedded emulator needs moto: pip install 'kinesio[local]'"
        ) from exc
    # werkzeug logs every request at INFO even with verbose=False: keep the terminal readable
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield LocalEndpoint(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()
