"""SubscribeToShard: an event stream that may lack its initial-response event.

botocore parses an event-stream response by first reading one ``initial-response`` event
(the operation's non-streamed output) and fails with "First event was not of type
initial-response" otherwise, after consuming that first event. The real service sends one;
kinesis-mock does not. Rather than patch botocore's parser for every client in the process,
a ``before-parse`` hook on this client alone hands the parser a view of the raw body that
starts with a synthesized, empty initial-response and leaves out the server's own one if it
sends it: the parser then sees the same events either way, and no event is lost.
"""

from __future__ import annotations

import binascii
from collections.abc import AsyncIterator
from typing import Any

from botocore.eventstream import EventStreamBuffer, ParserError

_SUBSCRIBE_BEFORE_PARSE = "before-parse.kinesis.SubscribeToShard"
_SHIM_ID = "kinesio.subscribe-to-shard.initial-response"
_EVENT_PRELUDE = 12  # total length, headers length, prelude CRC: 3 big-endian uint32


def _event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message (``application/vnd.amazon.eventstream``) with string headers."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        # name length (1 byte), name, type 7 (string), value length (2 bytes), value
        encoded += bytes((len(raw_name),)) + raw_name + b"\x07"
        encoded += len(raw_value).to_bytes(2, "big") + raw_value
    total = _EVENT_PRELUDE + len(encoded) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    prelude += binascii.crc32(prelude).to_bytes(4, "big")
    message = prelude + encoded + payload
    return message + binascii.crc32(message).to_bytes(4, "big")


_INITIAL_RESPONSE = _event_message(
    {
        ":message-type": "event",
        ":event-type": "initial-response",
        ":content-type": "application/x-amz-json-1.1",
    },
    b"{}",
)


class _InitialResponseFirst:
    """The raw body of a SubscribeToShard response, seen through aiohttp's ``content``
    interface, beginning with exactly one initial-response event whatever the server sent."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.content = self

    async def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        yield _INITIAL_RESPONSE, True
        head: bytes | None = b""
        async for chunk, end_of_chunk in self._raw.content.iter_chunks():
            if head is None:
                yield chunk, end_of_chunk
                continue
            head += chunk
            first = _first_message_length(head)
            if first is None:
                continue  # the server's first message is not complete yet
            if _is_initial_response(head[:first]):
                head = head[first:]
            if head:
                yield head, end_of_chunk
            head = None
        if head:
            yield head, True  # a truncated first message: let the parser report it

    def close(self) -> None:
        self._raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _first_message_length(data: bytes) -> int | None:
    if len(data) < _EVENT_PRELUDE:
        return None
    total = int.from_bytes(data[:4], "big")
    return total if len(data) >= total else None


def _is_initial_response(message: bytes) -> bool:
    buffer = EventStreamBuffer()
    buffer.add_data(message)
    try:
        parsed = next(buffer)
    except (ParserError, StopIteration):  # malformed: botocore's parser will reject it
        return False
    return bool(parsed.headers.get(":event-type") == "initial-response")


def _wrap_subscribe_body(response_dict: dict[str, Any], **_: Any) -> None:
    if int(response_dict.get("status_code", 0)) >= 300:
        return  # an error response: a JSON body, read already
    body = response_dict.get("body")
    if hasattr(getattr(body, "content", None), "iter_chunks"):
        response_dict["body"] = _InitialResponseFirst(body)


def tolerate_missing_initial_response(client: Any) -> None:
    """Install :func:`_wrap_subscribe_body` on ``client`` (once; later calls do nothing)."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is not None:
        events.register(_SUBSCRIBE_BEFORE_PARSE, _wrap_subscribe_body, unique_id=_SHIM_ID)
