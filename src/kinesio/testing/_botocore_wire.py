"""What a fault looks like to botocore: forged AWS answers and the connection errors it raises."""

from __future__ import annotations

import json
import uuid
from typing import Any

import botocore.exceptions as bexc
from aiobotocore.awsrequest import AioAWSResponse

from kinesio.testing._kinesis import CONNECTION_ERROR

#: ``Fault.error_code`` that raises botocore's ``ConnectionClosedError`` (the connection
#: dropped before an answer arrived). Without ``response_lost`` the request is not sent.
CONNECTION_CLOSED = "ConnectionClosedError"
#: ``Fault.error_code`` that raises botocore's ``ReadTimeoutError``.
READ_TIMEOUT = "ReadTimeoutError"

CONNECTION_CODES = frozenset({CONNECTION_ERROR, CONNECTION_CLOSED, READ_TIMEOUT})

#: HTTP status the service answers each error code with (anything else: 400).
_STATUS = {
    "InternalFailure": 500,
    "InternalFailureException": 500,
    "InternalServerError": 500,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "ServiceUnavailableException": 503,
}


class _Body:
    """The ``raw`` of an :class:`AioAWSResponse` made up here instead of read from a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self) -> bytes:
        return self._data


def status_for(code: str) -> int:
    return _STATUS.get(code, 400)


def http_response(url: str, status: int, body: dict[str, Any]) -> tuple[AioAWSResponse, str]:
    request_id = str(uuid.uuid4())
    headers = {
        "x-amzn-RequestId": request_id,
        "Content-Type": "application/x-amz-json-1.1",
    }
    data = json.dumps(body).encode()
    headers["Content-Length"] = str(len(data))
    return AioAWSResponse(url, status, headers, _Body(data)), request_id


def response_metadata(http: AioAWSResponse, request_id: str) -> dict[str, Any]:
    return {
        "RequestId": request_id,
        "HTTPStatusCode": http.status_code,
        "HTTPHeaders": {k.lower(): v for k, v in http.headers.items()},
        "RetryAttempts": 0,
    }


def connection_error(code: str, url: str, *, after_send: bool = False) -> Exception:
    err: Exception
    if code == CONNECTION_ERROR and not after_send:
        err = bexc.EndpointConnectionError(endpoint_url=url)
    elif code == READ_TIMEOUT:
        err = bexc.ReadTimeoutError(endpoint_url=url)
    else:
        err = bexc.ConnectionClosedError(endpoint_url=url)
    return err
