"""Multi-stream lease items, laid out as the Java KCL's multi-stream mode writes them.

One lease table serves several streams when every lease key names its stream. The KCL's
``MultiStreamLease`` uses the key ``<accountId>:<streamName>:<creationEpoch>:<shardId>``, where
the first three parts are a serialised ``StreamIdentifier``, and its
``DynamoDBMultiStreamLeaseSerializer`` adds two string attributes to the single-stream item:

    streamName   S   the serialised stream identifier (the name is the KCL's, kept for legacy
                     reasons: it holds ``account:stream:epoch``, not the bare stream name)
    shardId      S   the shard id alone

Single-stream lease keys (a bare shard id) never contain ``:``, so the two kinds of item
cannot be mistaken for each other. The two attributes are carried in ``Lease.extra`` and so
survive every write kinesio makes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from kinesio._errors import ConfigurationError, MalformedLeaseError
from kinesio._models import Lease

STREAM_ID = "streamName"
SHARD_ID = "shardId"

# The KCL's StreamIdentifier pattern: digits, a name without ':', digits.
_SERIALISED = re.compile(r"(?P<account>[0-9]+):(?P<stream>[^:]+):(?P<epoch>[0-9]+)")
_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")


@dataclass(frozen=True, slots=True)
class StreamIdentifier:
    """One stream of a multi-stream application: the KCL's ``StreamIdentifier``.

    ``account_id`` is the 12-digit AWS account that owns the stream, ``stream_name`` its name,
    ``creation_epoch`` its creation time in whole seconds since the Unix epoch (from
    DescribeStreamSummary's ``StreamCreationTimestamp``); the epoch tells a stream from a
    deleted and re-created stream of the same name. Raises :class:`kinesio.ConfigurationError`
    on a value the KCL could not parse back.
    """

    account_id: str
    stream_name: str
    creation_epoch: int

    def __post_init__(self) -> None:
        if not (self.account_id.isascii() and self.account_id.isdigit()):
            raise ConfigurationError(
                f"account_id must be the AWS account's digits, not {self.account_id!r}"
            )
        if not _STREAM_NAME.fullmatch(self.stream_name):
            raise ConfigurationError(
                f"invalid stream name {self.stream_name!r}: 1-128 characters among "
                "a-z A-Z 0-9 _ . -"
            )
        if self.creation_epoch < 0:
            raise ConfigurationError(
                f"creation_epoch must be >= 0 seconds, not {self.creation_epoch}"
            )

    def serialize(self) -> str:
        """``account:streamName:creationEpoch``, as the KCL's ``serialize()`` writes it."""
        return f"{self.account_id}:{self.stream_name}:{self.creation_epoch}"

    @classmethod
    def parse(cls, text: str) -> StreamIdentifier:
        """The identifier serialised in ``text``; :class:`kinesio.ConfigurationError` if it
        is not ``account:streamName:creationEpoch``."""
        match = _SERIALISED.fullmatch(text)
        if match is None:
            raise ConfigurationError(
                f"{text!r} is not a serialised stream identifier "
                "(expected <accountId>:<streamName>:<creationEpoch>)"
            )
        return cls(match["account"], match["stream"], int(match["epoch"]))

    def lease_key(self, shard_id: str) -> str:
        """The multi-stream lease key of ``shard_id`` of this stream."""
        if not shard_id or ":" in shard_id:
            raise ConfigurationError(f"invalid shard id {shard_id!r} for a lease key")
        return f"{self.serialize()}:{shard_id}"


def is_multi_stream_key(lease_key: str) -> bool:
    """True if ``lease_key`` is in the multi-stream format (a bare shard id has no ``:``)."""
    return ":" in lease_key


def split_lease_key(lease_key: str) -> tuple[StreamIdentifier, str]:
    """The stream and the shard id of a multi-stream lease key.

    Raises :class:`kinesio.MalformedLeaseError` if the key is not
    ``account:streamName:creationEpoch:shardId``.
    """
    stream_part, sep, shard_id = lease_key.rpartition(":")
    try:
        if not sep or not shard_id:
            raise ConfigurationError("no shard id")
        return StreamIdentifier.parse(stream_part), shard_id
    except ConfigurationError as exc:
        raise MalformedLeaseError(
            f"lease key {lease_key!r} is not a multi-stream lease key "
            f"(<accountId>:<streamName>:<creationEpoch>:<shardId>): {exc}",
            lease_key=lease_key,
            attribute="leaseKey",
        ) from None


def new_multi_stream_lease(stream: StreamIdentifier, lease: Lease) -> Lease:
    """``lease`` (keyed by its bare shard id) re-keyed for ``stream``, with the two attributes
    the KCL's multi-stream serializer writes; its other fields are unchanged."""
    shard_id = lease.lease_key
    extra = dict(lease.extra)
    extra[STREAM_ID] = {"S": stream.serialize()}
    extra[SHARD_ID] = {"S": shard_id}
    return replace(lease, lease_key=stream.lease_key(shard_id), extra=extra)


def lease_stream(lease: Lease) -> tuple[StreamIdentifier, str]:
    """The stream and shard id of a multi-stream lease, read the way the KCL reads them.

    The ``streamName`` and ``shardId`` attributes decide (the KCL's serializer reads them,
    not the key); they must agree with the key. Raises :class:`kinesio.MalformedLeaseError`
    if either is missing, mistyped, or disagrees with ``leaseKey``.
    """
    from_key = split_lease_key(lease.lease_key)
    stream_text = _string(lease, STREAM_ID)
    shard_id = _string(lease, SHARD_ID)
    if (stream_text, shard_id) != (from_key[0].serialize(), from_key[1]):
        raise MalformedLeaseError(
            f"lease {lease.lease_key!r}: {STREAM_ID}={stream_text!r} and {SHARD_ID}="
            f"{shard_id!r} disagree with its key",
            lease_key=lease.lease_key,
            attribute=STREAM_ID,
        )
    return from_key


def _string(lease: Lease, attribute: str) -> str:
    value: Any = lease.extra.get(attribute)
    if not isinstance(value, Mapping) or not isinstance(value.get("S"), str):
        raise MalformedLeaseError(
            f"multi-stream lease {lease.lease_key!r} has no string attribute {attribute!r}",
            lease_key=lease.lease_key,
            attribute=attribute,
        )
    return str(value["S"])
