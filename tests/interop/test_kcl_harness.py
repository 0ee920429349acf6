"""The interop harness itself: it says loudly when it cannot run, and points the KCL only at
the loopback emulators."""

from __future__ import annotations

from pathlib import Path

import pytest

from interop import _kcl


def test_without_java_the_suite_says_it_did_not_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(_kcl.JavaMissing, match="did not run: no `java` on PATH"):
        _kcl.java()


@pytest.mark.parametrize("version", sorted(_kcl.WHEELS))
def test_daemon_properties_name_only_loopback_endpoints(version: str, tmp_path: Path) -> None:
    endpoints = _kcl.Endpoints(kinesis="http://127.0.0.1:1", dynamodb="http://127.0.0.1:2")
    dist = _kcl.KclDist(version, tmp_path)
    worker = _kcl.JavaWorker(dist, "java-1", "s", "app", endpoints, tmp_path)
    props = dict(
        line.split(" = ", 1) for line in worker.properties_text().splitlines() if " = " in line
    )
    assert props["kinesisEndpoint"] == "http://127.0.0.1:1"
    assert props["dynamoDBEndpoint"] == "http://127.0.0.1:2"
    assert props["metricsLevel"] == "NONE"
    assert int(props["shutdownGraceMillis"]) > 0  # the daemon's default 0 is not graceful
    credentials = "AWSCredentialsProvider" if version.startswith("2.") else "AwsCredentialsProvider"
    assert credentials in props
