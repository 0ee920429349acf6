"""kinesio: the native Python client for Amazon Kinesis Data Streams."""

from kinesio._errors import (
    AccessDeniedError,
    AggregationError,
    AWSError,
    BacklogFullError,
    ConfigurationError,
    CredentialsError,
    EndpointConnectionError,
    ExpiredIteratorError,
    InvalidArgumentError,
    KinesioError,
    LeaseLost,
    ProducerClosedError,
    RecordExpiredError,
    ResourceInUseError,
    ResourceNotFoundError,
    ServiceError,
    ThrottlingError,
    ValidationError,
)
from kinesio._models import ProducerRecord, PutResult, Shard

__version__ = "0.1.0"

__all__ = [
    "AWSError",
    "AccessDeniedError",
    "AggregationError",
    "BacklogFullError",
    "ConfigurationError",
    "CredentialsError",
    "EndpointConnectionError",
    "ExpiredIteratorError",
    "InvalidArgumentError",
    "KinesioError",
    "LeaseLost",
    "ProducerClosedError",
    "ProducerRecord",
    "PutResult",
    "RecordExpiredError",
    "ResourceInUseError",
    "ResourceNotFoundError",
    "ServiceError",
    "Shard",
    "ThrottlingError",
    "ValidationError",
    "__version__",
]
