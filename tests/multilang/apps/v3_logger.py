"""An amazon_kclpy v3 record processor: logs every record to $RECORD_LOG and checkpoints after
every batch, at the shard end and when shutdown is requested.

``CRASH_AFTER=N`` exits with status 3 after N records (a child that dies mid-shard); with
``CRASH_ONCE=<path>`` only the first child to get there does (it creates the file).
"""

import base64
import os
import sys

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor


class LoggingProcessor(processor.RecordProcessorBase):
    def __init__(self) -> None:
        self.shard = ""
        self.seen = 0
        self.crash_after = int(os.environ.get("CRASH_AFTER", "0"))
        self.out = open(os.environ["RECORD_LOG"], "a", buffering=1)

    def initialize(self, initialize_input):
        self.shard = initialize_input.shard_id
        self.out.write(f"init {self.shard} {initialize_input.sequence_number}\n")

    def process_records(self, process_records_input):
        last = None
        for record in process_records_input.records:
            data = base64.b64decode(record.data).decode()
            self.out.write(
                f"record {self.shard} {record.sequence_number} {record.sub_sequence_number} "
                f"{record.partition_key} {data}\n"
            )
            self.seen += 1
            last = record
            if self.crash_after and self.seen >= self.crash_after:
                once = os.environ.get("CRASH_ONCE")
                if once is None or not os.path.exists(once):
                    if once is not None:
                        open(once, "w").close()
                    sys.stderr.write("crashing on purpose\n")
                    os._exit(3)
        if last is not None:
            try:
                process_records_input.checkpointer.checkpoint(
                    last.sequence_number, last.sub_sequence_number
                )
            except kcl.CheckpointError as e:
                sys.stderr.write(f"checkpoint failed: {e}\n")

    def lease_lost(self, lease_lost_input):
        self.out.write(f"lost {self.shard}\n")

    def shard_ended(self, shard_ended_input):
        self.out.write(f"ended {self.shard}\n")
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        self.out.write(f"shutdown {self.shard}\n")
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(LoggingProcessor()).run()
