"""The kinesio exception tree.

Every error kinesio raises (or sets on a record's future) derives from :class:`KinesioError`.
``retriable`` says whether trying the same thing again later can succeed::

    KinesioError
    ├── ConfigurationError            settings that contradict each other, no region, ...
    ├── ValidationError               bad input to put(): partition key, size, hash key, type
    ├── AggregationError              bytes that are not a valid KPL aggregate
    ├── ProducerClosedError           put() after close(); records left at a forced close
    ├── BacklogFullError (retriable)  the backlog is full (overflow policy Drop/Raise/Block timeout)
    ├── RecordExpiredError            a record was not delivered within its TTL / max attempts
    ├── LeaseLost                     this worker no longer holds the lease it tried to use
    ├── MalformedLeaseError           a lease table item that cannot be read as a lease
    └── AWSError                      an AWS call failed (``code`` is the AWS error code)
        ├── ThrottlingError (retriable)          ProvisionedThroughputExceeded, LimitExceeded, ...
        ├── ServiceError (retriable)             InternalFailure, 5xx
        ├── EndpointConnectionError (retriable)  endpoint unreachable, connection reset, timeout
        ├── ExpiredIteratorError (retriable)     shard iterator older than 5 minutes
        ├── ResourceNotFoundError                stream, table or consumer does not exist
        ├── ResourceInUseError (retriable)       still CREATING / UPDATING / DELETING
        ├── AccessDeniedError                    the credentials may not do this
        ├── CredentialsError                     no (valid) credentials found
        └── InvalidArgumentError                 AWS rejected an argument
"""

from __future__ import annotations


class KinesioError(Exception):
    """Root of every kinesio error."""

    retriable: bool = False


class ConfigurationError(KinesioError, ValueError):
    """Settings or constructor arguments are invalid or contradict each other."""


class ValidationError(KinesioError, ValueError):
    """Input rejected before anything was sent: nothing was accepted."""


class AggregationError(KinesioError, ValueError):
    """Bytes are not a valid KPL aggregated record (magic, MD5 or protobuf)."""


class ProducerClosedError(KinesioError):
    """The producer is closed (or was closed before this record could be delivered)."""


class BacklogFullError(KinesioError):
    """The producer's backlog is at its limit and the overflow policy rejects new records."""

    retriable = True


class RecordExpiredError(KinesioError):
    """A record could not be delivered within its time to live or maximum attempts.

    ``last_error`` holds the last AWS error code seen for it (e.g.
    ``ProvisionedThroughputExceededException``), ``attempts`` how many times it was sent.
    """

    def __init__(self, message: str, *, last_error: str | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.last_error = last_error
        self.attempts = attempts


class LeaseLost(KinesioError):
    """This worker no longer holds the lease (another worker took it, or it expired)."""


class MalformedLeaseError(KinesioError, ValueError):
    """An item of the lease table cannot be read as a lease.

    ``lease_key`` names the item and ``attribute`` the offending attribute (missing, of the
    wrong DynamoDB type, or with a value that does not parse). Nothing is written back: fix or
    delete the item by hand.
    """

    def __init__(self, message: str, *, lease_key: str, attribute: str) -> None:
        super().__init__(message)
        self.lease_key = lease_key
        self.attribute = attribute


class AWSError(KinesioError):
    """An AWS call failed. ``code`` is the AWS error code, ``operation`` the API name."""

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class ThrottlingError(AWSError):
    """The call was throttled (ProvisionedThroughputExceeded, LimitExceeded, ...)."""

    retriable = True


class ServiceError(AWSError):
    """AWS failed internally (InternalFailure, ServiceUnavailable, HTTP 5xx)."""

    retriable = True


class EndpointConnectionError(AWSError):
    """The endpoint could not be reached, or the connection broke or timed out."""

    retriable = True


class ExpiredIteratorError(AWSError):
    """A shard iterator expired (they live 5 minutes)."""

    retriable = True


class ResourceNotFoundError(AWSError):
    """The stream, table or stream consumer does not exist."""


class ResourceInUseError(AWSError):
    """The resource is busy (CREATING, UPDATING, DELETING) or already exists."""

    retriable = True


class AccessDeniedError(AWSError):
    """The credentials in use are not allowed to make this call."""


class CredentialsError(AWSError):
    """No credentials were found, or AWS rejected them."""


class InvalidArgumentError(AWSError):
    """AWS rejected an argument of the call."""
