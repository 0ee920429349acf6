"""Checkpoints for one shard: stage what was processed, write it fenced by the lease."""

from __future__ import annotations

from kinesio._errors import LeaseLost, ValidationError
from kinesio._models import ExtendedSequenceNumber, Record
from kinesio.consumer._coordinator import LeaseHandle


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

    async def checkpoint(self, record: Record | ExtendedSequenceNumber | None = None) -> None:
        """Write the staged position (or ``record``'s) as this shard's checkpoint.

        Raises :class:`LeaseLost` if the lease is no longer held (nothing written), and
        :class:`kinesio.ValidationError` for a position that this shard has not delivered or
        that lies before the current checkpoint. AWS errors propagate; retrying is safe.
        """
        if record is None:
            position = self._staged
        elif isinstance(record, Record):
            self.stage(record)
            position = self._staged
        else:
            position = record
        if position is None or position == self._written:
            if not self._handle.active:
                raise LeaseLost(f"lease {self.shard_id} is no longer held")
            return
        if position.is_sentinel:
            # SHARD_END is written by kinesio itself, after the children's leases exist.
            raise ValidationError(
                f"{position.sequence_number} is not a position to checkpoint; "
                "checkpoint a record or a sequence number"
            )
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
        await self._handle.checkpoint(position)
        self._written = position
