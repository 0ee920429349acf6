"""kinesio: the native Python client for Amazon Kinesis Data Streams."""

from kinesio import aggregation
from kinesio._aws import AWSConfig
from kinesio._config import Block, Drop, OverflowPolicy, ProducerSettings, Raise
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
    MalformedLeaseError,
    ProducerClosedError,
    RecordExpiredError,
    ResourceInUseError,
    ResourceNotFoundError,
    ServiceError,
    ThrottlingError,
    ValidationError,
)
from kinesio._models import ProducerRecord, PutResult, Shard
from kinesio.metrics import ProducerMetrics
from kinesio.producer import AsyncProducer
from kinesio.sync import Producer

__version__ = "0.1.0"

__all__ = [
    "AWSConfig",
    "AsyncProducer",
    "Block",
    "Drop",
    "OverflowPolicy",
    "Producer",
    "ProducerMetrics",
    "ProducerSettings",
    "Raise",
    "aggregation",
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
    "MalformedLeaseError",
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
