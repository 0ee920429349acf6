"""``kinesio multilang``: the MultiLangDaemon without Java."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from kinesio._errors import KinesioError
from kinesio.cli._common import aws_config, execute, fail


def multilang(
    ctx: typer.Context,
    properties: Annotated[
        Path,
        typer.Argument(
            help="The MultiLangDaemon properties file (executableName, streamName, "
            "applicationName, ...), unchanged.",
            show_default=False,
        ),
    ],
    log_level: Annotated[
        str,
        typer.Option(help="Level of kinesio's log on stderr, the children's stderr included."),
    ] = "INFO",
) -> None:
    """Run an amazon_kclpy (or Node, Ruby) multilang application without a JVM.

    Reads the same properties file as the Java MultiLangDaemon, starts executableName once per
    leased shard and speaks the multilang protocol with it (initialize, processRecords,
    leaseLost, shardEnded, shutdownRequested, checkpoint), on kinesio's KCL-compatible lease
    table: kinesio and Java daemon workers can share one application. SIGTERM / SIGINT shut
    down gracefully (each child gets shutdownRequested and may checkpoint). A child that dies
    or breaks the protocol is replaced: its lease is released and the shard starts again at
    its last checkpoint with a new child; three failures in a row on one shard stop the worker
    with exit status 1, as the Java daemon stops. Nothing is lost either way.

    Example: kinesio multilang sample.properties

    kinesisEndpoint, dynamoDBEndpoint and regionName in the file say where to connect (the
    global --endpoint-url and --region apply where the file leaves them out). Keys kinesio does
    not use are warned about, not fatal.
    """
    from kinesio.multilang import load_config, run

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if not properties.is_file():
        raise fail(f"no properties file at {properties}", hint="pass the daemon's .properties file")
    try:
        config = load_config(properties)
    except KinesioError as exc:
        raise fail(str(exc)) from None
    aws = aws_config(ctx)
    config = replace(
        config,
        region_name=config.region_name or aws.region_name,
        kinesis_endpoint=config.kinesis_endpoint or aws.endpoint_url,
        dynamodb_endpoint=config.dynamodb_endpoint or aws.endpoint_url,
    )
    execute(run(config))
