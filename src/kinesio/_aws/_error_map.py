"""The one place where botocore and aiohttp failures become kinesio errors (by AWS error code)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import (
    contextmanager,
)

import botocore.exceptions as bexc

from kinesio._errors import (
    AccessDeniedError,
    AWSError,
    ConfigurationError,
    CredentialsError,
    EndpointConnectionError,
    ExpiredIteratorError,
    InvalidArgumentError,
    ResourceInUseError,
    ResourceNotFoundError,
    ServiceError,
    ThrottlingError,
    ValidationError,
)

_CODES: dict[str, type[AWSError]] = {}
for _cls, _codes in (
    (
        ThrottlingError,
        "ProvisionedThroughputExceededException LimitExceededException ThrottlingException "
        "Throttling ThrottledException RequestLimitExceeded KMSThrottlingException "
        "TooManyRequestsException",
    ),
    (
        ServiceError,
        "InternalFailure InternalFailureException InternalServerError ServiceUnavailable "
        "ServiceUnavailableException InternalError",
    ),
    (ExpiredIteratorError, "ExpiredIteratorException ExpiredNextTokenException"),
    (ResourceNotFoundError, "ResourceNotFoundException"),
    (ResourceInUseError, "ResourceInUseException"),
    (
        AccessDeniedError,
        "AccessDeniedException AccessDenied KMSAccessDeniedException UnauthorizedOperation",
    ),
    (
        CredentialsError,
        "UnrecognizedClientException InvalidSignatureException ExpiredTokenException "
        "InvalidClientTokenId MissingAuthenticationToken SignatureDoesNotMatch",
    ),
    (
        InvalidArgumentError,
        "InvalidArgumentException ValidationException SerializationException "
        "InvalidParameterValue InvalidParameterCombination MissingParameter",
    ),
):
    for _code in _codes.split():
        _CODES[_code] = _cls


def error_from_code(code: str, message: str, *, operation: str = "", status: int = 0) -> AWSError:
    """The kinesio error for an AWS error code (also used by the in-memory fakes)."""
    cls = _CODES.get(code)
    if cls is None:
        cls = ServiceError if status >= 500 else AWSError
    text = f"{operation}: {code}: {message}" if operation else f"{code}: {message}"
    return cls(text, code=code, operation=operation)


@contextmanager
def map_aws_errors(operation: str) -> Iterator[None]:
    """Turn botocore / aiohttp failures raised inside the block into kinesio errors."""
    try:
        yield
    except bexc.ClientError as exc:
        err = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        raise error_from_code(
            str(err.get("Code", "Unknown")),
            str(err.get("Message", "")),
            operation=operation,
            status=status,
        ) from exc
    except (bexc.NoCredentialsError, bexc.PartialCredentialsError) as exc:
        raise CredentialsError(
            f"{operation}: no AWS credentials found ({exc}); set AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or pass an aiobotocore session",
            code="NoCredentials",
            operation=operation,
        ) from exc
    except bexc.NoRegionError as exc:
        raise ConfigurationError(
            "no AWS region configured: set AWS_DEFAULT_REGION or pass region_name="
        ) from exc
    except bexc.ParamValidationError as exc:
        raise ValidationError(f"{operation}: {exc}") from exc
    except (TimeoutError, bexc.HTTPClientError, bexc.ConnectionError, OSError) as exc:
        raise EndpointConnectionError(
            f"{operation}: could not reach the endpoint: {exc}",
            code="EndpointConnectionError",
            operation=operation,
        ) from exc
