"""The record processor the Java KCL's MultiLangDaemon runs, one process per shard it leases.

It speaks the multilang protocol through ``amazon_kclpy`` (the Python modules shipped inside
the same wheel as the daemon's jars; the harness puts them on PYTHONPATH). Every record is
appended to ``$INTEROP_LOG_DIR/<worker>.<shard>.<pid>.jsonl`` as one JSON line before the batch
is checkpointed at its last record, so what the log holds is what this worker handled, in the
order it handled it. Lease loss, shard end and shutdown requests are logged as events too.
A checkpoint the KCL refuses (lease lost, shutting down) is logged, never hidden: the harness
reads these files to check that nothing was lost and the order held per shard.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any

from amazon_kclpy import kcl  # type: ignore[import-not-found]
from amazon_kclpy.v3 import processor  # type: ignore[import-not-found]


class Processor(processor.RecordProcessorBase):  # type: ignore[misc]
    def __init__(self) -> None:
        self.worker = os.environ["INTEROP_WORKER"]
        self.log_dir = os.environ["INTEROP_LOG_DIR"]
        self.out: IO[str] | None = None

    def _write(self, entry: dict[str, Any]) -> None:
        assert self.out is not None
        self.out.write(json.dumps(entry) + "\n")
        self.out.flush()

    def _checkpoint(
        self, checkpointer: Any, seq: str | None = None, sub: int | None = None
    ) -> None:
        try:
            checkpointer.checkpoint(seq, sub)
            self._write({"event": "checkpoint", "seq": seq, "sub": sub})
        except kcl.CheckpointError as exc:
            self._write({"event": "checkpoint-refused", "seq": seq, "sub": sub, "error": exc.value})

    def initialize(self, initialize_input: Any) -> None:
        shard = initialize_input.shard_id
        name = f"{self.worker}.{shard}.{os.getpid()}.jsonl"
        self.out = open(os.path.join(self.log_dir, name), "a", encoding="utf-8")  # noqa: SIM115
        start = [initialize_input.sequence_number, initialize_input.sub_sequence_number]
        self._write({"event": "initialize", "shard": shard, "from": start})

    def process_records(self, process_records_input: Any) -> None:
        last: tuple[str, int] | None = None
        for record in process_records_input.records:
            seq, sub = record.sequence_number, int(record.sub_sequence_number or 0)
            data = record.binary_data.decode()
            self._write({"seq": seq, "sub": sub, "data": data, "t": time.time()})
            last = (seq, sub)
        if last is not None:
            self._checkpoint(process_records_input.checkpointer, *last)

    def lease_lost(self, lease_lost_input: Any) -> None:
        self._write({"event": "lease-lost"})

    def shard_ended(self, shard_ended_input: Any) -> None:
        self._write({"event": "shard-ended"})
        self._checkpoint(shard_ended_input.checkpointer)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        self._write({"event": "shutdown-requested"})


if __name__ == "__main__":
    kcl.KCLProcess(Processor()).run()
    sys.exit(0)
