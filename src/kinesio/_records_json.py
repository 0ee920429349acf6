"""GetRecords answers read straight from their JSON, past botocore's generic parser.

botocore turns a response into Python by walking the operation's output shape, field by field
and record by record; on a 10 000-record GetRecords answer that walk is about half of the
consumer's CPU per record (see benchmarks/RESULTS.md). The records of a successful answer
have a fixed shape (SPEC §1), so a ``before-parse`` hook on kinesio's own Kinesis clients
decodes them in one ``json.loads`` and one pass, straight into :class:`KinesisRecord`, and
leaves botocore the small remainder (iterator, MillisBehindLatest, ChildShards). Anything it
does not expect (an error status, a body that is not bytes, a record of another shape) is
left untouched for botocore to parse, or reject, as before.
"""

from __future__ import annotations

import binascii
import datetime as dt
import json
from typing import Any

from botocore.utils import parse_timestamp as _default_timestamp_parser

from kinesio._models import KinesisRecord

__all__ = ["PARSED_RECORDS", "epoch_timestamp", "install_get_records_parser"]

#: The key under which the hook hands its records to AioKinesis.get_records; botocore's own
#: ``Records`` key is absent from the parsed response then.
PARSED_RECORDS = "kinesio:Records"

_BEFORE_PARSE = "before-parse.kinesis.GetRecords"
_HOOK_ID = "kinesio.get-records.json"
_UTC = dt.UTC
_fromtimestamp = dt.datetime.fromtimestamp
_a2b_base64 = binascii.a2b_base64


def epoch_timestamp(value: Any) -> dt.datetime:
    """A timestamp Kinesis sent: epoch seconds, or any form botocore understands (UTC-aware).

    botocore's default parser goes through dateutil to a local-time datetime, ~12 µs of a
    GetRecords record's ~35 µs client cost.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _fromtimestamp(value, _UTC)
    return _default_timestamp_parser(value)  # type: ignore[no-any-return]


# KinesisRecord is a frozen, slotted dataclass; setting its slots through their descriptors
# builds the same object in about half the time of its __init__ (see consumer/_deaggregate.py).
_NEW = object.__new__
_SET_SEQ = vars(KinesisRecord)["sequence_number"].__set__
_SET_DATA = vars(KinesisRecord)["data"].__set__
_SET_PK = vars(KinesisRecord)["partition_key"].__set__
_SET_TS = vars(KinesisRecord)["approximate_arrival_timestamp"].__set__


def _records(items: list[dict[str, Any]]) -> list[KinesisRecord]:
    out: list[KinesisRecord] = []
    append = out.append
    # Records written together share their arrival time (milliseconds): one datetime each,
    # shared, as datetimes are immutable.
    stamps: dict[Any, dt.datetime] = {}
    for r in items:
        seq, key, ts = r["SequenceNumber"], r["PartitionKey"], r.get("ApproximateArrivalTimestamp")
        if type(seq) is not str or type(key) is not str:
            raise TypeError("SequenceNumber and PartitionKey must be strings")
        if ts is not None:
            stamp = stamps.get(ts)
            if stamp is None:
                stamp = stamps[ts] = epoch_timestamp(ts)
        else:
            stamp = None
        record: KinesisRecord = _NEW(KinesisRecord)
        _SET_SEQ(record, seq)
        # non-strict like botocore's b64decode, but a str is all it accepts here
        _SET_DATA(record, _a2b_base64(r["Data"]))
        _SET_PK(record, key)
        _SET_TS(record, stamp)
        append(record)
    return out


def parse_get_records(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """The ``before-parse`` hook: decode a successful answer's records (see the module)."""
    doc = successful_answer(response_dict)
    if doc is None:
        return
    try:
        items = doc.pop("Records", None) if isinstance(doc, dict) else None
        if not isinstance(items, list):
            return
        records = _records(items)
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        # ValueError covers bad JSON, bad base64 (binascii.Error) and out-of-range timestamps
        return  # botocore parses the untouched body and reports what is wrong with it
    response_dict["body"] = json.dumps(doc).encode()
    customized_response_dict[PARSED_RECORDS] = records


def successful_answer(response_dict: dict[str, Any]) -> Any:
    """The JSON document of a successful answer (HTTP status below 300, a body of bytes), or
    None for anything else (an error, a stream, a body that is not JSON): botocore parses
    those itself."""
    if int(response_dict.get("status_code", 0)) >= 300:
        return None
    body = response_dict.get("body")
    if not isinstance(body, bytes):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None  # botocore parses the untouched body and reports what is wrong with it


def register_before_parse(client: Any, event: str, hook: Any, unique_id: str) -> None:
    """Register ``hook`` for ``event`` on one aiobotocore ``client`` alone (idempotent, by
    ``unique_id``); a client without an event system is left as it is."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is not None:
        events.register(event, hook, unique_id=unique_id)


def install_get_records_parser(client: Any) -> None:
    """Register :func:`parse_get_records` on one aiobotocore Kinesis ``client`` (idempotent)."""
    register_before_parse(client, _BEFORE_PARSE, parse_get_records, _HOOK_ID)
