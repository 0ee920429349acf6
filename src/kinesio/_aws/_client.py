"""Sessions and aiobotocore clients: boto3's configuration resolution, botocore's retries off."""

from __future__ import annotations

from contextlib import (
    AsyncExitStack,
)
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from kinesio._aws._error_map import map_aws_errors
from kinesio._records_json import epoch_timestamp


def tuned_session(session: AioSession) -> AioSession:
    """A session kinesio created itself: parse timestamps the fast way (timezone-aware UTC).

    Sessions passed in by users are left as they are.
    """
    factory = session.get_component("response_parser_factory")
    factory.set_parser_defaults(timestamp_parser=epoch_timestamp)
    return session


@dataclass(frozen=True, kw_only=True, slots=True)
class AWSConfig:
    """Where and as whom to call AWS. Every field defaults to boto3's own resolution.

    ``endpoint_url`` applies to every service kinesio calls (Kinesis, DynamoDB, CloudWatch),
    like ``AWS_ENDPOINT_URL``; leave it None to use the per-service environment variables.
    """

    region_name: str | None = None
    endpoint_url: str | None = None
    profile_name: str | None = None
    session: AioSession | None = None

    def new_session(self) -> AioSession:
        if self.session is not None:
            return self.session
        return tuned_session(AioSession(profile=self.profile_name))

    def __repr__(self) -> str:  # never show a session's credentials
        return (
            f"AWSConfig(region_name={self.region_name!r}, endpoint_url={self.endpoint_url!r}, "
            f"profile_name={self.profile_name!r})"
        )


async def create_client(
    service: str,
    aws: AWSConfig,
    stack: AsyncExitStack,
    *,
    max_attempts: int = 1,
    max_pool_connections: int = 10,
    read_timeout: float = 30.0,
    connect_timeout: float = 10.0,
) -> Any:
    """An aiobotocore client whose lifetime is tied to ``stack``.

    ``max_attempts=1`` (the default) turns botocore's own retries off so that every throttle
    reaches kinesio's limiter and retry logic instead of being hidden inside botocore.
    """
    config = AioConfig(
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=max_pool_connections,
        read_timeout=read_timeout,
        connect_timeout=connect_timeout,
    )
    session = aws.new_session()
    with map_aws_errors(f"create {service} client"):
        client = session.create_client(
            service, region_name=aws.region_name, endpoint_url=aws.endpoint_url, config=config
        )
        return await stack.enter_async_context(client)
