"""Checkpoints for one shard: stage what was processed, write it fenced by the lease."""

from __future__ import annotations

import re

from kinesio._errors import LeaseLost, ValidationError
from kinesio._models import ExtendedSequenceNumber, Record
from kinesio.consumer._coordinator import LeaseHandle

# Version 2 sequence numbers (the service's current format, 186 bits): the version in bits
# 184-187 and the index of the issuing shard in bits 4-35. The KCL's SequenceNumberValidator
# reads the same two fields; numbers in any other shape (emulators', older formats) carry no
# shard and are not checked.
_V2_BITS = 186
_SHARD_INDEX = re.compile(r"shardId-(\d{1,12})")


def issuing_shard_index(sequence_number: str) -> int | None:
    """The index of the shard that issued ``sequence_number`` (``shardId-000000000006`` -> 6),
    or None when the number is not in the service's version 2 format. Never raises."""
    if not (sequence_number.isascii() and sequence_number.isdigit()):
        return None
    value = int(sequence_number)
    if value.bit_length() != _V2_BITS or (value >> 184) & 0xF != 2:
        return None
    return (value >> 4) & 0xFFFF_FFFF


def check_issued_by(sequence_number: str, shard_id: str) -> None:
    """Raise ``ValidationError`` if ``sequence_number`` encodes a shard other than ``shard_id``
    (the KCL refuses such a checkpoint the same way). Unknown formats pass."""
    issuer = issuing_shard_index(sequence_number)
    match = _SHARD_INDEX.fullmatch(shard_id)
    if issuer is None or match is None or issuer == int(match.group(1)):
        return
    raise ValidationError(
        f"sequence number {sequence_number} was issued by shardId-{issuer:012d}, not by "
        f"{shard_id}: checkpoint only positions of the shard this checkpointer belongs to"
    )


class Checkpointer:
    """Records how far one shard has been processed.

    ``stage(record)`` marks a record processed (no I/O); ``await checkpoint()`` writes the last
    staged position to the lease table. A write succeeds only while this worker holds the
    lease (the write is conditional on the lease counter): otherwise it raises
    :class:`kinesio.LeaseLost` and writes nothing — a worker that lost its lease can never
    overwrite the progress of the worker that now holds it.
    """

    def __init__(self, handle: LeaseHandle, shard_id: str) -> None:
        self._handle = handle
        self.shard_id = shard_id
        self._staged: ExtendedSequenceNumber | None = None
        self._delivered: ExtendedSequenceNumber | None = None
        self._written = handle.lease.checkpoint

    @property
    def last_checkpoint(self) -> ExtendedSequenceNumber:
        """The position last written (or read from the lease when it was taken)."""
        return self._written

    @property
    def pending(self) -> bool:
        """True when staged progress has not been written yet."""
        return self._staged is not None and self._staged != self._written

    def _delivered_up_to(self, position: ExtendedSequenceNumber) -> None:
        self._delivered = position

    def stage(self, record: Record) -> None:
        """Mark ``record`` (and everything before it in this shard) as processed."""
        if record.shard_id and record.shard_id != self.shard_id:
            raise ValidationError(
                f"record of shard {record.shard_id} staged on the checkpointer of {self.shard_id}"
            )
        self._staged = record.position

    @property
    def pending_checkpoint(self) -> ExtendedSequenceNumber | None:
        """The pending (prepared, not committed) checkpoint of the lease: the one this worker
        prepared last, or, right after taking the lease, the one its previous owner prepared
        and did not commit (the KCL hands the same to ``initialize``)."""
        return self._handle.lease.pending_checkpoint

    async def prepare_checkpoint(
        self, record: Record | ExtendedSequenceNumber | None = None
    ) -> PreparedCheckpoint:
        """Durably record ``record``'s position (or the staged one) as the pending checkpoint,
        leaving the checkpoint where it is; ``await prepared.commit()`` makes it the checkpoint.

        The two-phase checkpoint of the KCL (``prepareCheckpoint``): write the pending
        checkpoint, make your side effect, commit. A worker that takes the lease over before
        the commit resumes after the old checkpoint and sees the pending one
        (:attr:`pending_checkpoint`, ``InitializationInput.pending_checkpoint``), so it can tell
        which side effects may already have happened. Stored in the lease item's
        ``pendingCheckpoint`` / ``pendingCheckpointSubSequenceNumber``, as the KCL does; a
        plain :meth:`checkpoint` clears it. Fenced and validated like :meth:`checkpoint`
        (:class:`LeaseLost`, :class:`kinesio.ValidationError`, nothing written).
        """
        if record is None:
            position = self._staged
        elif isinstance(record, Record):
            self.stage(record)
            position = self._staged
        else:
            position = record
        if position is None:
            raise ValidationError(
                f"nothing to prepare on shard {self.shard_id}: pass a record or stage one first"
            )
        self._check(position)
        await self._handle.checkpoint(self._written, pending=position)
        return PreparedCheckpoint(self, position)

    def _check(self, position: ExtendedSequenceNumber) -> None:
        if position.is_sentinel:
            # SHARD_END is written by kinesio itself, after the children's leases exist.
            raise ValidationError(
                f"{position.sequence_number} is not a position to checkpoint; "
                "checkpoint a record or a sequence number"
            )
        check_issued_by(position.sequence_number, self.shard_id)
        if self._delivered is None or position > self._delivered:
            raise ValidationError(
                f"{position.sequence_number}/{position.sub_sequence_number} was not delivered "
                f"from shard {self.shard_id}; checkpoint only records you received"
            )
        if position < self._written:
            raise ValidationError(
                f"checkpoint {position.sequence_number} lies before the current checkpoint "
                f"{self._written.sequence_number} of shard {self.shard_id}"
            )

    async def _commit(self, position: ExtendedSequenceNumber) -> None:
        # written even when the position equals the checkpoint: it clears the pending one
        self._check(position)
        await self._handle.checkpoint(position)
        self._written = position

    async def checkpoint(self, record: Record | ExtendedSequenceNumber | None = None) -> None:
        """Write the staged position (or ``record``'s) as this shard's checkpoint.

        Raises :class:`LeaseLost` if the lease is no longer held (nothing written), and
        :class:`kinesio.ValidationError` (nothing written, the stored checkpoint unchanged) for
        a record of another shard, a sequence number that encodes another shard, a position
        that this shard has not delivered, or one that lies before the current checkpoint.
        AWS errors propagate; retrying is safe.
        """
        if record is None:
            position = self._staged
        elif isinstance(record, Record):
            self.stage(record)
            position = self._staged
        else:
            position = record
        if position is None or position == self._written:
            if not self._handle.writable:
                raise LeaseLost(f"lease {self.shard_id} is no longer held")
            return
        self._check(position)
        await self._handle.checkpoint(position)
        self._written = position


class PreparedCheckpoint:
    """A pending checkpoint written by :meth:`Checkpointer.prepare_checkpoint`."""

    def __init__(self, checkpointer: Checkpointer, position: ExtendedSequenceNumber) -> None:
        self._checkpointer = checkpointer
        self.position = position

    async def commit(self) -> None:
        """Make the pending checkpoint the checkpoint (and clear the pending one); fenced and
        validated like :meth:`Checkpointer.checkpoint` (:class:`LeaseLost`; a
        :class:`kinesio.ValidationError` if the checkpoint has moved past it meanwhile)."""
        await self._checkpointer._commit(self.position)
