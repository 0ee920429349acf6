"""The MultiLangDaemon's properties file: the Java ``.properties`` format, and the keys kinesio
honours, mapped to :class:`kinesio.ConsumerSettings`."""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from kinesio._config import ConsumerSettings, FanOut, InitialPosition, Polling
from kinesio._errors import ConfigurationError

logger = logging.getLogger("kinesio.multilang")

_SEPARATOR = re.compile(r"(?<!\\)[=:\s]")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java ``.properties`` text: ``key = value``, ``key: value`` or ``key value``;
    ``#`` and ``!`` comment lines; a trailing backslash continues a line; ``\\uXXXX`` and
    backslash escapes. A later key replaces an earlier one, as in Java."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    out: dict[str, str] = {}
    for line in logical:
        match = _SEPARATOR.search(line)
        if match is None:
            key, value = line, ""
        else:
            key = line[: match.start()]
            rest = line[match.start() :].lstrip()
            if rest[:1] in ("=", ":"):
                rest = rest[1:].lstrip()
            value = rest
        out[_unescape(key.strip())] = _unescape(value.rstrip())
    return out


#: Keys the daemon reads that kinesio honours, and what they become.
HONOURED = {
    "executableName": "the command started once per leased shard",
    "streamName": "the stream",
    "streamArn": "the stream (its name is taken from the ARN)",
    "applicationName": "the application: the lease table's name",
    "initialPositionInStream": "TRIM_HORIZON, LATEST or AT_TIMESTAMP",
    "initialPositionInStreamExtended": "AT_TIMESTAMP's time, seconds since the epoch",
    "regionName": "the AWS region",
    "failoverTimeMillis": "ConsumerSettings.failover_time",
    "maxRecords": "Polling.max_records",
    "idleTimeBetweenReadsInMillis": "Polling.idle_time",
    "kinesisEndpoint": "the Kinesis endpoint",
    "dynamoDBEndpoint": "the DynamoDB endpoint",
    "workerId": "ConsumerSettings.worker_id",
    "maxLeasesForWorker": "ConsumerSettings.max_leases",
    "maxLeasesToStealAtOneTime": "ConsumerSettings.max_leases_to_steal",
    "shardSyncIntervalMillis": "ConsumerSettings.shard_sync_interval",
    "tableName": "ConsumerSettings.lease_table_name",
    "retrievalMode": "POLLING or FANOUT",
    "consumerName": "FanOut consumer_name (with retrievalMode FANOUT)",
    "timeoutInSeconds": "how long a child may take to answer one message",
    "shutdownGraceMillis": "how long a graceful shutdown waits for the children",
}
#: Keys read and knowingly left alone (kinesio's own behaviour covers them).
ACCEPTED = {
    "processingLanguage",
    "AWSCredentialsProvider",
    "AwsCredentialsProvider",
    "AWSCredentialsProviderDynamoDB",
    "AWSCredentialsProviderCloudWatch",
    "metricsLevel",
    "metricsEnabledDimensions",
    "callProcessRecordsEvenForEmptyRecordList",
    "parentShardPollIntervalMillis",
    "cleanupLeasesUponShardCompletion",
    "taskBackoffTimeMillis",
    "validateSequenceNumberBeforeCheckpointing",
    "maxActiveThreads",
}


@dataclass(frozen=True)
class MultiLangConfig:
    """What a properties file says, ready to run: the child command, the stream and
    application, AWS endpoints and the consumer settings."""

    executable: list[str]
    stream_name: str
    application_name: str
    settings: ConsumerSettings
    region_name: str | None = None
    kinesis_endpoint: str | None = None
    dynamodb_endpoint: str | None = None
    timeout: float | None = None
    shutdown_grace: float = 0.0
    ignored: tuple[str, ...] = ()


def _millis(props: dict[str, str], key: str) -> float | None:
    value = props.get(key)
    if value is None:
        return None
    try:
        return int(value) / 1000
    except ValueError:
        raise ConfigurationError(
            f"{key} must be a whole number of milliseconds, not {value!r}"
        ) from None


def _int(props: dict[str, str], key: str) -> int | None:
    value = props.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{key} must be a whole number, not {value!r}") from None


def load_config(path: Path) -> MultiLangConfig:
    """Read a MultiLangDaemon properties file. Raises :class:`kinesio.ConfigurationError`
    (with the key) for a missing required key or a malformed value; logs a warning for every
    key kinesio does not know (the daemon's other keys are not fatal)."""
    try:
        props = parse_properties(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for required in ("executableName", "applicationName"):
        if not props.get(required):
            raise ConfigurationError(f"{path}: {required} is required")
    stream = props.get("streamName") or ""
    if not stream and props.get("streamArn"):
        stream = props["streamArn"].rsplit("/", 1)[-1]
    if not stream:
        raise ConfigurationError(f"{path}: streamName or streamArn is required")
    ignored = tuple(sorted(k for k in props if k not in HONOURED and k not in ACCEPTED))
    for key in ignored:
        logger.warning("%s: %s is not used by kinesio multilang; ignored", path, key)
    position_name = props.get("initialPositionInStream", "LATEST").upper()
    position: InitialPosition
    if position_name == "TRIM_HORIZON":
        position = InitialPosition.TRIM_HORIZON
    elif position_name == "LATEST":
        position = InitialPosition.LATEST
    elif position_name == "AT_TIMESTAMP":
        import datetime as dt

        stamp = props.get("initialPositionInStreamExtended")
        if stamp is None:
            raise ConfigurationError(
                f"{path}: AT_TIMESTAMP needs initialPositionInStreamExtended (epoch seconds)"
            )
        try:
            position = InitialPosition.at_timestamp(dt.datetime.fromtimestamp(float(stamp), dt.UTC))
        except ValueError:
            raise ConfigurationError(
                f"{path}: initialPositionInStreamExtended must be epoch seconds, not {stamp!r}"
            ) from None
    else:
        raise ConfigurationError(
            f"{path}: initialPositionInStream must be TRIM_HORIZON, LATEST or AT_TIMESTAMP, "
            f"not {position_name!r}"
        )
    mode = props.get("retrievalMode", "POLLING").upper()
    if mode not in ("POLLING", "FANOUT", "DEFAULT"):
        raise ConfigurationError(f"{path}: retrievalMode must be POLLING or FANOUT, not {mode!r}")
    polling_kwargs: dict[str, float | int] = {}
    if (max_records := _int(props, "maxRecords")) is not None:
        polling_kwargs["max_records"] = max_records
    if (idle := _millis(props, "idleTimeBetweenReadsInMillis")) is not None:
        polling_kwargs["idle_time"] = idle
    retrieval: Polling | FanOut
    if mode == "FANOUT":
        retrieval = FanOut(consumer_name=props.get("consumerName") or props["applicationName"])
    else:
        retrieval = Polling(**polling_kwargs)  # type: ignore[arg-type]
    settings_kwargs: dict[str, object] = {"initial_position": position, "retrieval": retrieval}
    if (failover := _millis(props, "failoverTimeMillis")) is not None:
        settings_kwargs["failover_time"] = failover
    if props.get("workerId"):
        settings_kwargs["worker_id"] = props["workerId"]
    if (max_leases := _int(props, "maxLeasesForWorker")) is not None:
        settings_kwargs["max_leases"] = max_leases
    if (steal := _int(props, "maxLeasesToStealAtOneTime")) is not None:
        settings_kwargs["max_leases_to_steal"] = steal
    if (sync := _millis(props, "shardSyncIntervalMillis")) is not None:
        settings_kwargs["shard_sync_interval"] = sync
    if props.get("tableName"):
        settings_kwargs["lease_table_name"] = props["tableName"]
    grace = _millis(props, "shutdownGraceMillis") or 0.0
    if grace:
        settings_kwargs["shutdown_timeout"] = grace
    try:
        settings = ConsumerSettings(**settings_kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    timeout = _int(props, "timeoutInSeconds")
    return MultiLangConfig(
        executable=shlex.split(props["executableName"]),
        stream_name=stream,
        application_name=props["applicationName"],
        settings=settings,
        region_name=props.get("regionName"),
        kinesis_endpoint=props.get("kinesisEndpoint"),
        dynamodb_endpoint=props.get("dynamoDBEndpoint"),
        timeout=float(timeout) if timeout else None,
        shutdown_grace=grace,
        ignored=ignored,
    )
