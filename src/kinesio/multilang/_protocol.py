"""The multilang protocol with one child process: JSON lines on its stdin and stdout, its stderr
to kinesio's log (``kinesio.multilang``, with the shard id).

Messages and fields are the Java MultiLangDaemon's (``initialize``, ``processRecords``,
``leaseLost``, ``shardEnded``, ``shutdownRequested``; the child answers each with ``status`` and
may send ``checkpoint`` requests meanwhile, each answered with a ``checkpoint`` message that
names the error, if any, by the KCL exception's simple name).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kinesio._errors import KinesioError
from kinesio._models import ExtendedSequenceNumber, Record

logger = logging.getLogger("kinesio.multilang")

#: ``checkpoint(sequence_number, sub_sequence_number)`` as the child asked for it (None: at
#: the last record delivered); returns the KCL error name to report, or None on success.
CheckpointCallback = Callable[[str | None, int | None], Awaitable[str | None]]

#: A line the child writes may be this long (a checkpoint request is a few hundred bytes).
MAX_LINE = 16 * 1024 * 1024


class ChildProcessError(KinesioError):
    """The child process broke the protocol: it died, answered something that is not a
    multilang message, answered for the wrong action, or did not answer in time."""


def record_message(record: Record) -> dict[str, Any]:
    """A record as the daemon hands it over (``JsonFriendlyRecord``): base64 data, partition
    key, sequence and sub-sequence numbers, arrival time in epoch milliseconds."""
    stamp = record.approximate_arrival_timestamp
    return {
        "action": "record",
        "data": base64.b64encode(record.data).decode("ascii"),
        "partitionKey": record.partition_key,
        "sequenceNumber": record.sequence_number,
        "subSequenceNumber": record.sub_sequence_number,
        "approximateArrivalTimestamp": None if stamp is None else int(stamp.timestamp() * 1000),
    }


class Child:
    """One child process speaking the multilang protocol for one shard."""

    def __init__(
        self, command: Sequence[str], shard_id: str, *, timeout: float | None = None
    ) -> None:
        self.command = list(command)
        self.shard_id = shard_id
        self.timeout = timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the child. Raises :class:`ChildProcessError` if it cannot be started."""
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=MAX_LINE,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except OSError as exc:
            raise ChildProcessError(
                f"cannot start {self.command[0]!r} for {self.shard_id}: {exc.strerror or exc}"
            ) from exc
        self._stderr = asyncio.create_task(self._forward_stderr())

    async def _forward_stderr(self) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        async for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                logger.info("[%s] %s", self.shard_id, line)

    async def _write(self, message: dict[str, Any]) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ChildProcessError(
                f"the child of {self.shard_id} closed its input while sent {message['action']!r}"
                f"{self._exit_note()}"
            ) from exc

    def _exit_note(self) -> str:
        code = None if self._proc is None else self._proc.returncode
        return "" if code is None else f" (it exited with status {code})"

    async def _read(self, waiting_for: str) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        while True:
            try:
                raw = await asyncio.wait_for(proc.stdout.readline(), self.timeout)
            except TimeoutError:
                raise ChildProcessError(
                    f"the child of {self.shard_id} did not answer {waiting_for!r} within "
                    f"{self.timeout:g} s (timeoutInSeconds)"
                ) from None
            except ValueError as exc:  # a line over MAX_LINE
                raise ChildProcessError(f"the child of {self.shard_id}: {exc}") from exc
            if not raw:
                await proc.wait()
                raise ChildProcessError(
                    f"the child of {self.shard_id} ended while {waiting_for!r} was unanswered"
                    f"{self._exit_note()}"
                )
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue  # amazon_kclpy surrounds each message with blank lines
            try:
                message = json.loads(line)
            except ValueError:
                # the daemon skips what is not a message: user code may print to stdout
                logger.warning(
                    "[%s] not a multilang message on stdout: %.200s", self.shard_id, line
                )
                continue
            if not isinstance(message, dict) or not isinstance(message.get("action"), str):
                logger.warning(
                    "[%s] not a multilang message on stdout: %.200s", self.shard_id, line
                )
                continue
            return message

    async def call(
        self, message: dict[str, Any], checkpoint: CheckpointCallback | None = None
    ) -> None:
        """Send one message and wait for the child's ``status`` for it, answering every
        ``checkpoint`` request on the way with ``checkpoint`` (None: this message allows no
        checkpoint; the child is told ``InvalidStateException``). Raises
        :class:`ChildProcessError` when the child dies, times out or answers wrongly."""
        action = message["action"]
        await self._write(message)
        while True:
            reply = await self._read(action)
            kind = reply["action"]
            if kind == "status":
                if reply.get("responseFor") != action:
                    raise ChildProcessError(
                        f"the child of {self.shard_id} answered status for "
                        f"{reply.get('responseFor')!r} while {action!r} was unanswered"
                    )
                return
            if kind != "checkpoint":
                raise ChildProcessError(
                    f"the child of {self.shard_id} sent {kind!r}; expected 'status' or "
                    f"'checkpoint' while {action!r} was unanswered"
                )
            sequence = reply.get("sequenceNumber")
            sub = reply.get("subSequenceNumber")
            if (sequence is not None and not isinstance(sequence, str)) or (
                sub is not None and (not isinstance(sub, int) or isinstance(sub, bool))
            ):
                error: str | None = "IllegalArgumentException"
                logger.error(
                    "[%s] malformed checkpoint request %r: nothing written", self.shard_id, reply
                )
            elif checkpoint is None:
                error = "InvalidStateException"
            else:
                error = await checkpoint(sequence, sub)
            await self._write(
                {
                    "action": "checkpoint",
                    "sequenceNumber": sequence,
                    "subSequenceNumber": sub,
                    "error": error,
                }
            )

    async def close(self, grace: float = 5.0) -> int | None:
        """Close the child's stdin (it then exits, as under the daemon), wait ``grace``
        seconds, then kill it. Returns its exit status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            logger.warning(
                "[%s] the child did not exit within %.0f s; killing it", self.shard_id, grace
            )
            proc.kill()
            await proc.wait()
        if self._stderr is not None:
            await self._stderr
        return proc.returncode


def initialize_message(shard_id: str, checkpoint: ExtendedSequenceNumber) -> dict[str, Any]:
    return {
        "action": "initialize",
        "shardId": shard_id,
        "sequenceNumber": checkpoint.sequence_number,
        "subSequenceNumber": checkpoint.sub_sequence_number,
    }
