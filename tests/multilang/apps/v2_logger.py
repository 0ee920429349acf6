"""An amazon_kclpy v2 record processor (initialize / process_records / shutdown with a reason):
logs every record to $RECORD_LOG and checkpoints after every batch and on TERMINATE."""

import base64
import os

from amazon_kclpy import kcl
from amazon_kclpy.v2 import processor


class LoggingProcessor(processor.RecordProcessorBase):
    def __init__(self) -> None:
        self.shard = ""
        self.out = open(os.environ["RECORD_LOG"], "a", buffering=1)

    def initialize(self, initialize_input):
        self.shard = initialize_input.shard_id
        self.out.write(f"init {self.shard} {initialize_input.sequence_number}\n")

    def process_records(self, process_records_input):
        for record in process_records_input.records:
            data = base64.b64decode(record.data).decode()
            self.out.write(
                f"record {self.shard} {record.sequence_number} {record.sub_sequence_number} "
                f"{record.partition_key} {data}\n"
            )
        process_records_input.checkpointer.checkpoint()

    def shutdown(self, shutdown_input):
        self.out.write(f"shutdown-{shutdown_input.reason} {self.shard}\n")
        if shutdown_input.reason == "TERMINATE":
            shutdown_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        self.out.write(f"shutdown {self.shard}\n")
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(LoggingProcessor()).run()
