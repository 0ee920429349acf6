"""PutRecords requests and answers written and read as JSON by kinesio, past botocore's walk.

For every PutRecords call botocore validates the parameters and serialises them by walking
the operation's input shape field by field and record by record, then parses the answer the
same way: on a 500-record call that is about 9 µs per record, most of what an unaggregated
record costs the producer (see benchmarks/RESULTS.md). The records have a fixed shape
(SPEC §1), so for kinesio's own Kinesis clients:

* the request: botocore still builds the request (headers, target, host prefix, anything a
  newer botocore adds) from the call's parameters with the records replaced by one
  placeholder record, after every ``before-parameter-build`` hook (fault injection included)
  has run; kinesio then writes the body itself, from the real records, with one
  ``json.dumps``. Records of any other shape, or out of the service's bounds, go the whole
  way through botocore, which validates (and rejects) them as before;
* the answer: a ``before-parse`` hook decodes a successful answer with one ``json.loads`` and
  hands botocore the parsed document; its ``Records`` are the very dicts botocore would have
  built (every member is a string). Anything else is left for botocore to parse or reject.
"""

from __future__ import annotations

import binascii
import json
from typing import Any

from kinesio._records_json import register_before_parse, successful_answer

__all__ = ["install_put_records_json"]

_BEFORE_PARSE = "before-parse.kinesis.PutRecords"
_HOOK_ID = "kinesio.put-records.json"
_PLACEHOLDER = [{"Data": b"", "PartitionKey": "-"}]
_RECORD_KEYS = frozenset(("Data", "PartitionKey", "ExplicitHashKey"))
_MAX_RECORDS = 500  # SPEC §1, and botocore's model
_MAX_DATA = 1024 * 1024
_MAX_KEY = 256
_b2a_base64 = binascii.b2a_base64
_dumps = json.dumps


def _body(parameters: dict[str, Any]) -> bytes | None:
    """The JSON body botocore would send, or None if any field is not of the usual shape."""
    records = parameters.get("Records")
    if type(records) is not list or not 0 < len(records) <= _MAX_RECORDS:
        return None
    out: list[dict[str, str]] = []
    append = out.append
    for r in records:
        if type(r) is not dict:
            return None
        data, key = r.get("Data"), r.get("PartitionKey")
        if type(data) is not bytes or type(key) is not str or len(data) > _MAX_DATA:
            return None
        if not 0 < len(key) <= _MAX_KEY:
            return None
        entry = {"Data": _b2a_base64(data, newline=False).decode("ascii"), "PartitionKey": key}
        if len(r) > 2:
            ehk = r.get("ExplicitHashKey")
            if type(ehk) is not str or not r.keys() <= _RECORD_KEYS:
                return None
            entry["ExplicitHashKey"] = ehk
        append(entry)
    doc: dict[str, Any] = {"Records": out}
    for name in ("StreamName", "StreamARN"):
        value = parameters.get(name)
        if value is not None:
            if type(value) is not str:
                return None
            doc[name] = value
    if len(doc) != len(parameters):
        return None  # a parameter this fast path does not know: botocore serialises it
    return _dumps(doc).encode()


class _PutRecordsSerializer:
    """Wraps a client's serializer (and its validator): PutRecords bodies written as above."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def serialize_to_request(self, parameters: Any, operation_model: Any) -> Any:
        if operation_model.name == "PutRecords" and isinstance(parameters, dict):
            body = _body(parameters)
            if body is not None:
                template = dict(parameters, Records=_PLACEHOLDER)
                request = self._inner.serialize_to_request(template, operation_model)
                request["body"] = body
                return request
        return self._inner.serialize_to_request(parameters, operation_model)


def parse_put_records(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """The ``before-parse`` hook: a successful answer parsed in one ``json.loads``."""
    doc = successful_answer(response_dict)
    if not isinstance(doc, dict) or type(doc.get("FailedRecordCount")) is not int:
        return
    records = doc.get("Records")
    if type(records) is not list:
        return
    for r in records:
        if type(r) is not dict or not all(type(v) is str for v in r.values()):
            return
    for name, value in doc.items():
        if name not in ("FailedRecordCount", "Records") and type(value) is not str:
            return
    response_dict["body"] = b"{}"
    customized_response_dict.update(doc)


def install_put_records_json(client: Any) -> None:
    """Install both halves on one aiobotocore Kinesis ``client`` (idempotent). A client of a
    botocore without the attributes used here keeps botocore's own path."""
    serializer = getattr(client, "_serializer", None)
    if serializer is not None and not isinstance(serializer, _PutRecordsSerializer):
        client._serializer = _PutRecordsSerializer(serializer)
    register_before_parse(client, _BEFORE_PARSE, parse_put_records, _HOOK_ID)
